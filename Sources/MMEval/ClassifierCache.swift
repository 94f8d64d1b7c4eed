import Foundation
import MMCLIP
import MMFoundation

/// Zero-shot class weights kept on disk, so that classifying more images against the same
/// labels costs only the images. An entry is named by a hash of the model's weight
/// fingerprint (`EmbeddingIndex.fingerprint`: the weights' bits, not the file's name, size or
/// time), the tokenizer, the classes and the templates. It holds the [C, D] weights, the class
/// names and the fingerprint, all checked on reading: an entry that does not match exactly is
/// rebuilt, never trusted.
public struct ClassifierCache {
    public let directory: URL

    /// `$MM_CACHE_DIR/zeroshot`, else `$XDG_CACHE_HOME/mm/zeroshot`, else `~/.cache/mm/zeroshot`.
    public static var defaultDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["MM_CACHE_DIR"], !dir.isEmpty { return URL(fileURLWithPath: dir).appendingPathComponent("zeroshot") }
        let base =
            env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return base.appendingPathComponent("mm").appendingPathComponent("zeroshot")
    }

    public init(directory: URL = ClassifierCache.defaultDirectory) { self.directory = directory }

    /// The entry for this model (its weight fingerprint), tokenizer description, classes and templates.
    public func entry(modelFingerprint: String, tokenizer: String, classes: [[String]], templates: [String]) -> URL {
        var key = "mm-zeroshot-v2\u{0}\(modelFingerprint)\u{0}\(tokenizer)\u{0}"
        for names in classes { key += names.joined(separator: "|") + "\u{1}" }
        key += "\u{0}" + templates.joined(separator: "\u{1}")
        return directory.appendingPathComponent(FNV1a.hex128(key) + ".safetensors")
    }

    /// The cached classifier, or nil when absent or not exactly what was asked for: other class
    /// names, another model, not `dimension` columns, or a row that is not a finite unit vector.
    public func read(_ entry: URL, classNames: [String], modelFingerprint: String, dimension: Int) -> ZeroShotClassifier? {
        guard let file = try? Safetensors(contentsOf: entry), let w = file.tensors["weights"],
            file.metadata["model"] == modelFingerprint,
            let names = file.metadata["classes"].flatMap({ try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }),
            names == classNames, w.rank == 2, w.shape[0] == names.count, w.shape[1] == dimension
        else { return nil }
        for c in 0..<w.shape[0] {
            var norm: Float = 0
            for j in 0..<dimension {
                let v = w.data[c * dimension + j]
                guard v.isFinite else { return nil }
                norm += v * v
            }
            guard abs(norm - 1) < 1e-3 else { return nil }
        }
        return ZeroShotClassifier(classNames: names, weights: w)
    }

    /// Writes the entry atomically (`Safetensors.write` goes through `AtomicFile`).
    public func write(_ classifier: ZeroShotClassifier, modelFingerprint: String, to entry: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let names = String(decoding: try JSONEncoder().encode(classifier.classNames), as: UTF8.self)
        try Safetensors(tensors: ["weights": classifier.weights], metadata: ["classes": names, "model": modelFingerprint]).write(to: entry)
    }
}
