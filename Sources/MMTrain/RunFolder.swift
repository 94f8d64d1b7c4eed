import Foundation
import MMCLIP
import MMFoundation

/// A training run on disk:
///   run.json                the run configuration (data, model, training; for --resume)
///   config.json             the model config (open_clip schema)
///   log.jsonl               one `LogRecord` per line: steps, epochs, skipped samples, resumes
///   loss.svg                loss curve, refreshed each epoch
///   checkpoints/epoch_N.safetensors   weights after epoch N (open_clip keys, loadable anywhere)
///   checkpoints/latest.safetensors    weights + optimizer moments + position, for --resume
///   checkpoints/best.safetensors      the epoch with the lowest validation loss (a link to its epoch_N)
/// Folders of earlier versions hold options.json and invocation.json instead of run.json; they
/// are read the same way.
public struct RunFolder {
    public let url: URL
    public init(_ url: URL) { self.url = url }

    public var checkpoints: URL { url.appendingPathComponent("checkpoints") }
    public var latest: URL { checkpoints.appendingPathComponent("latest.safetensors") }
    public func epochCheckpoint(_ n: Int) -> URL { checkpoints.appendingPathComponent("epoch_\(n).safetensors") }
    /// What `-c RUN` loads when it exists (MMCLIP's `CheckpointFolder`).
    public var best: URL { checkpoints.appendingPathComponent("best.safetensors") }

    /// Makes `best` the epoch checkpoint `epoch`: a second name for the same file (a copy where
    /// the file system has no hard links), put in place by a rename, so `best` is always whole.
    func keepBest(_ epoch: URL) throws {
        let temporary = checkpoints.appendingPathComponent(".best.\(getpid()).tmp").path
        unlink(temporary)
        if link(epoch.path, temporary) == 0 && rename(temporary, best.path) == 0 { return }
        unlink(temporary)
        try AtomicFile.write(try ReadableFile(epoch.path).readAll(), to: best.path)
    }

    public var log: URL { url.appendingPathComponent("log.jsonl") }
    public var configuration: URL { url.appendingPathComponent("run.json") }
    var legacyOptions: URL { url.appendingPathComponent("options.json") }
    var legacyInvocation: URL { url.appendingPathComponent("invocation.json") }
    var config: URL { url.appendingPathComponent("config.json") }
    var lossCurveURL: URL { url.appendingPathComponent("loss.svg") }

    /// Whether the folder exists with anything in it.
    public var isOccupied: Bool { !((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).isEmpty }

    func create(configuration: RunConfiguration, config: CLIPConfig) throws {
        try FileManager.default.createDirectory(at: checkpoints, withIntermediateDirectories: true)
        try saveConfiguration(configuration)
        try AtomicFile.write(config.jsonString, to: self.config.path)
    }

    /// Writes run.json.
    func saveConfiguration(_ configuration: RunConfiguration) throws {
        try AtomicFile.write(try JSONEncoder.pretty.encode(configuration), to: self.configuration.path)
    }

    /// Removes what a run writes (and nothing else), for starting over in the same folder.
    func clear() throws {
        for file in [configuration, legacyOptions, legacyInvocation, config, log, lossCurveURL, checkpoints]
        where FileManager.default.fileExists(atPath: file.path) {
            try FileManager.default.removeItem(at: file)
        }
    }

    /// The run's configuration (from run.json, or an older folder's options.json and invocation.json).
    public func readConfiguration() throws -> RunConfiguration {
        if FileManager.default.fileExists(atPath: configuration.path) { return try Self.decode(RunConfiguration.self, configuration) }
        guard FileManager.default.fileExists(atPath: legacyOptions.path), FileManager.default.fileExists(atPath: legacyInvocation.path) else {
            throw TrainingError.notARunFolder(path: url.path)
        }
        return RunConfiguration(
            data: try Self.decode(RunConfiguration.DataSettings.self, legacyInvocation),
            model: try Self.decode(RunConfiguration.ModelSettings.self, legacyInvocation),
            training: try Self.decode(TrainingOptions.self, legacyOptions))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ file: URL) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(try ReadableFile(file.path, maxSize: 64 << 20).readAll()))
        } catch let error as DecodingError {
            throw TrainingError.unreadableFile(path: file.path, reason: Self.explain(error))
        } catch let error as FileError {
            throw TrainingError.unreadableFile(path: file.path, reason: error.reason)
        }
    }

    static func explain(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            c.codingPath.isEmpty ? "" : " at \(c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: "."))"
        }
        switch error {
        case let .keyNotFound(key, c): return "missing key \(key.stringValue)\(path(c))"
        case let .typeMismatch(_, c), let .valueNotFound(_, c): return "wrong type\(path(c)): \(c.debugDescription)"
        case let .dataCorrupted(c): return "not valid JSON\(path(c)): \(c.underlyingError.map { "\($0)" } ?? c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// Appends one line to log.jsonl.
    public func append(_ record: LogRecord) {
        let line = Data((record.jsonLine + "\n").utf8)
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        guard let handle = try? FileHandle(forWritingTo: log) else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: line)
    }

    /// The records of log.jsonl (lines that do not decode are left out).
    public func readLog() -> [LogRecord] {
        guard let text = try? ReadableFile(log.path).readText() else { return [] }
        return Text.lines(text).compactMap { try? JSONDecoder().decode(LogRecord.self, from: Data($0.utf8)) }
    }

    /// Drops the log lines written after `position` (by a run killed after its last checkpoint),
    /// so that a resumed run's log has each step once.
    func truncateLog(to position: TrainingPosition) throws {
        guard FileManager.default.fileExists(atPath: log.path) else { return }
        // Never a FIFO (reading, then appending to it, would block) or /dev/zero.
        let read: String?
        do { read = try ReadableFile(log.path).readText() } catch let error as FileError {
            throw TrainingError.unreadableFile(path: log.path, reason: error.reason)
        }
        guard let text = read else { return }
        let lines = Text.lines(text).filter { !$0.isEmpty }
        let kept = lines.filter { line in
            guard let record = try? JSONDecoder().decode(LogRecord.self, from: Data(line.utf8)) else { return true }
            switch record {
            case .epoch(let e): return e.epoch <= position.epoch && e.step <= position.step
            default: return (record.step ?? 0) <= position.step
            }
        }
        guard kept.count < lines.count else { return }
        try AtomicFile.write(kept.map { $0 + "\n" }.joined(), to: log.path)
    }

    /// Deletes temporary files left by a killed run (the atomic writer's hidden `.…tmp`).
    func removeStaleTemporaries() {
        for folder in [url, checkpoints] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            for name in names where name.hasPrefix(".") && name.hasSuffix(".tmp") {
                try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
            }
        }
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
