import Foundation
import MMCLIP

/// Zero-shot class weights kept on disk, so that classifying more images against the same
/// labels costs only the images. An entry is named by a hash of the checkpoint's identity (path,
/// size, modification time), the tokenizer, the classes and the templates; it holds the [C, D]
/// weights and the class names, which are checked on reading.
public struct ClassifierCache {
    public let directory: URL

    /// `$MM_CACHE_DIR/zeroshot`, else `$XDG_CACHE_HOME/mm/zeroshot`, else `~/.cache/mm/zeroshot`.
    public static var defaultDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["MM_CACHE_DIR"], !dir.isEmpty { return URL(fileURLWithPath: dir).appendingPathComponent("zeroshot") }
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return base.appendingPathComponent("mm").appendingPathComponent("zeroshot")
    }

    public init(directory: URL = ClassifierCache.defaultDirectory) { self.directory = directory }

    /// The entry for this checkpoint file, tokenizer description, classes and templates.
    public func entry(checkpoint: String, tokenizer: String, classes: [[String]], templates: [String]) -> URL {
        let url = URL(fileURLWithPath: checkpoint).standardizedFileURL
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        let size = (attributes?[.size] as? NSNumber)?.int64Value ?? -1
        let mtime = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        var key = "mm-zeroshot-v1\u{0}\(url.path)\u{0}\(size)\u{0}\(mtime)\u{0}\(tokenizer)\u{0}"
        for names in classes { key += names.joined(separator: "|") + "\u{1}" }
        key += "\u{0}" + templates.joined(separator: "\u{1}")
        return directory.appendingPathComponent(Self.hash(key) + ".safetensors")
    }

    /// The cached classifier, or nil when absent or unusable (it is then rebuilt).
    public func read(_ entry: URL, classNames: [String]) -> ZeroShotClassifier? {
        guard let file = try? Safetensors(contentsOf: entry), let w = file.tensors["weights"],
              let names = file.metadata["classes"].flatMap({ try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }),
              names == classNames, w.rank == 2, w.shape[0] == names.count else { return nil }
        return ZeroShotClassifier(classNames: names, weights: w)
    }

    /// Writes the entry atomically (a temporary file renamed into place).
    public func write(_ classifier: ZeroShotClassifier, to entry: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let names = String(decoding: try JSONEncoder().encode(classifier.classNames), as: UTF8.self)
        let temporary = directory.appendingPathComponent(".\(entry.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp")
        try Safetensors(tensors: ["weights": classifier.weights], metadata: ["classes": names]).write(to: temporary)
        _ = try? FileManager.default.removeItem(at: entry)
        try FileManager.default.moveItem(at: temporary, to: entry)
    }

    /// 128-bit FNV-1a (two 64-bit lanes with different offsets), as 32 hex digits.
    static func hash(_ text: String) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325, b: UInt64 = 0x6c62_272e_07bb_0142
        for byte in text.utf8 {
            a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = b ^ (b >> 29)
        }
        return String(format: "%016llx%016llx", a, b)
    }
}
