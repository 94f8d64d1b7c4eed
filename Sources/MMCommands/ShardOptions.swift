import ArgumentParser
import Foundation
import MMData
import MMImage
import MMTokenizer
import MMTrain

/// WebDataset shard options shared by `mm train`, `mm embed`, `mm index build` and `mm eval`
/// (open_clip's names). A data argument names shards when it is a brace range, `::`-joined
/// sources or a `.tar` file (see docs/webdataset.md).
struct ShardOptions: ParsableArguments {
    @Option(help: "Shards: samples per epoch over all ranks (default: sizes.json/__len__, img2dataset's *_stats.json, else one counting pass over the tar headers).")
    var trainNumSamples: Int?
    @Flag(help: "Shards: draw shards with replacement each epoch (open_clip's --dataset-resampled).")
    var datasetResampled = false
    @Option(help: "Shards: samples shuffled together in memory (0 or 1: shard order).")
    var shuffleBuffer = ShardOrder.defaultShuffleBuffer
    @Option(help: "Shards: the caption member's extension.")
    var textKey = "txt"
    @Option(help: "Shards: take the caption from this field of the .json member instead.")
    var jsonTextKey: String?
    @Option(help: "Shards: image extensions to look for, ';'-separated, first found wins.")
    var imageExtensions = WebDatasetKeys.defaultImages.joined(separator: ";")
    @Flag(help: "Shards: leave out shards that do not exist instead of stopping.")
    var skipMissing = false

    var keys: WebDatasetKeys {
        WebDatasetKeys(text: textKey, jsonText: jsonTextKey, images: imageExtensions.split(separator: ";").map(String.init))
    }

    /// What a run saves (shards.json) so that `--resume` reads the same shards the same way.
    var settings: ShardSettings {
        ShardSettings(keys: keys, trainNumSamples: trainNumSamples, resampled: datasetResampled,
                      shuffleBuffer: shuffleBuffer, skipMissing: skipMissing)
    }

    func validateShards() throws {
        if let n = trainNumSamples, n < 1 { throw ValidationError("--train-num-samples must be positive") }
        guard shuffleBuffer >= 0 else { throw ValidationError("--shuffle-buffer must be 0 or more") }
        guard !keys.images.isEmpty else { throw ValidationError("--image-extensions names no extension") }
    }

    func open(_ spec: String) throws -> ShardSet { try settings.open(spec) }

    /// `spec` with every local source made absolute, so that `--resume` finds the shards from
    /// any working directory.
    static func absolute(_ spec: String) -> String {
        spec.components(separatedBy: "::").map { source in
            source.isEmpty || source.hasPrefix("/") || source.contains("://") ? source
                : FileManager.default.currentDirectoryPath + "/" + source
        }.joined(separator: "::")
    }
}

struct ShardSettings: Codable {
    var keys: WebDatasetKeys
    var trainNumSamples: Int?
    var resampled: Bool
    var shuffleBuffer: Int
    var skipMissing: Bool

    func open(_ spec: String) throws -> ShardSet {
        let set = try ShardSet(spec, keys: keys, skipMissing: skipMissing)
        for path in set.missing { warn("skipped missing shard \(path)") }
        return set
    }

    static func read(from run: URL) -> ShardSettings? {
        guard let data = try? Data(contentsOf: run.appendingPathComponent("shards.json")) else { return nil }
        return try? JSONDecoder().decode(ShardSettings.self, from: data)
    }

    func write(to run: URL) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try e.encode(self).write(to: run.appendingPathComponent("shards.json"), options: .atomic)
    }
}

/// The training data of `mm train` when it names shards: the shard set, its epoch size (logged
/// with where it came from) and the loader source. `cache` keeps per-shard counts of a counting pass.
func shardTrainingSource(_ spec: String, settings: ShardSettings, batchSize: Int, seed: UInt64, rank: Int, ranks: Int,
                         epochs: Int, threads: Int, transform: ImageTransform, tokenizer: Tokenizer, extraView: Bool,
                         cache: URL, say: @escaping (String) -> Void) throws -> (source: LoaderSource, samples: Int) {
    let set = try settings.open(spec)
    let size = try set.epochSize(given: settings.trainNumSamples, cache: cache) { done, total in
        if done == 1 || done == total || done % 10 == 0 { say("counting samples: \(done)/\(total) shards") }
    }
    say("\(set.shards.count) shards, \(size.count) samples per epoch (from \(size.source.rawValue))")
    let order = try ShardOrder(epochSize: size.count, batchSize: batchSize, seed: seed, rank: rank, worldSize: ranks,
                               shuffleBuffer: settings.shuffleBuffer, resampled: settings.resampled)
    let source = LoaderSource(training: set, order: order, transform: transform, tokenizer: tokenizer, epochs: epochs,
                              threads: threads, extraView: extraView)
    return (source, size.count)
}
