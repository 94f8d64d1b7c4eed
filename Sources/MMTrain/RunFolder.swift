import Foundation
import MMCLIP

/// A training run on disk:
///   options.json            the training options (for --resume)
///   config.json             the model config (open_clip schema)
///   log.jsonl               one JSON object per logged step / validation / skipped sample
///   loss.svg                loss curve, refreshed each epoch
///   checkpoints/epoch_N.safetensors   weights after epoch N (open_clip keys, loadable anywhere)
///   checkpoints/latest.safetensors    weights + optimizer moments + position, for --resume
public struct RunFolder {
    public let url: URL
    public init(_ url: URL) { self.url = url }

    public var checkpoints: URL { url.appendingPathComponent("checkpoints") }
    public var latest: URL { checkpoints.appendingPathComponent("latest.safetensors") }
    public func epochCheckpoint(_ n: Int) -> URL { checkpoints.appendingPathComponent("epoch_\(n).safetensors") }
    var log: URL { url.appendingPathComponent("log.jsonl") }
    var options: URL { url.appendingPathComponent("options.json") }
    var config: URL { url.appendingPathComponent("config.json") }
    var lossCurveURL: URL { url.appendingPathComponent("loss.svg") }

    func create(options: TrainingOptions, config: CLIPConfig) throws {
        try FileManager.default.createDirectory(at: checkpoints, withIntermediateDirectories: true)
        try JSONEncoder.pretty.encode(options).write(to: self.options, options: .atomic)
        try Data(config.jsonString.utf8).write(to: self.config, options: .atomic)
    }

    public func readOptions() throws -> TrainingOptions {
        guard let data = try? Data(contentsOf: options) else {
            throw TrainingError("\(url.path) is not a run folder (no options.json)")
        }
        return try JSONDecoder().decode(TrainingOptions.self, from: data)
    }

    /// Appends one line to log.jsonl.
    public func append(_ record: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        guard let handle = try? FileHandle(forWritingTo: log) else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: data + Data("\n".utf8))
    }
}

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }
}
