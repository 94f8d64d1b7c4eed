import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMEval
import MMImage
import MMTokenizer
import MMTrain

/// WebDataset shard options shared by `mm train`, `mm embed`, `mm index build` and `mm eval`
/// (open_clip's names). A data argument names shards when it is a brace range, `::`-joined
/// sources or a `.tar` file (see docs/webdataset.md).
struct ShardOptions: ParsableArguments {
    @Option(
        help:
            "Shards: samples per epoch over all ranks (default: sizes.json/__len__, img2dataset's *_stats.json, else one counting pass over the tar headers)."
    )
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

    /// What a run saves (in run.json) so that `--resume` reads the same shards the same way.
    func settings(ranks: Int? = nil) -> RunConfiguration.ShardSettings {
        .init(
            keys: keys, trainNumSamples: trainNumSamples, resampled: datasetResampled,
            shuffleBuffer: shuffleBuffer, skipMissing: skipMissing, ranks: ranks)
    }

    func validateShards() throws {
        if let n = trainNumSamples, n < 1 { throw ValidationError("--train-num-samples must be positive") }
        guard shuffleBuffer >= 0 else { throw ValidationError("--shuffle-buffer must be 0 or more") }
        guard !keys.images.isEmpty else { throw ValidationError("--image-extensions names no extension") }
    }

    func open(_ spec: String) throws -> ShardSet {
        let set = try ShardSet(spec, keys: keys, skipMissing: skipMissing)
        for path in set.missing { warn("skipped missing shard \(path)") }
        return set
    }

    /// The default run folder name for shards: the first source's folder (`data/laion/{0..9}.tar` → `laion`).
    static func runName(_ spec: String) -> String {
        let first = spec.components(separatedBy: "::").first { !$0.isEmpty } ?? spec
        let folder = URL(fileURLWithPath: first.hasPrefix("file://") ? String(first.dropFirst(7)) : first).deletingLastPathComponent()
        let name = folder.lastPathComponent
        return name.isEmpty || name == "/" || name.contains("{") ? "shards" : name
    }

    /// `spec` with every local source made absolute, so that `--resume` finds the shards from
    /// any working directory.
    static func absolute(_ spec: String) -> String {
        spec.components(separatedBy: "::").map { source in
            source.isEmpty || source.hasPrefix("/") || source.contains("://")
                ? source
                : FileManager.default.currentDirectoryPath + "/" + source
        }.joined(separator: "::")
    }
}

/// The embeddings of shard samples for `mm embed`, `mm index build` and `mm eval retrieval`:
/// every usable sample of the shards in order (open_clip's eval transform), rows named by
/// `__key__`, with captions; each skipped sample is reported.
func embedShards(_ embedder: Embedder, _ shards: ShardSet, batchSize: Int) throws -> EncodedSamples {
    let loader = try PairLoader(evaluating: shards, batchSize: batchSize, transform: embedder.preprocessing.evalTransform, tokenizer: nil)
    let samples = try embedSamples(embedder, loader)
    guard samples.count > 0 else { throw CommandError("\(shards.spec): no readable samples") }
    return samples
}

extension EvalCommand.Retrieval {
    /// Retrieval over shards: each sample is one image and its caption.
    func runOnShards() throws {
        let embedder = try modelOptions.embedder()
        let samples = try embedShards(embedder, try shardOptions.open(pairs), batchSize: 32)
        let texts = embedder.embed(texts: samples.captions)
        let m = try RetrievalMetrics(images: samples.embeddings, texts: texts, imageOfText: Array(samples.names.indices))
        try report(m, images: samples.count, captions: samples.captions.count, skipped: samples.skipped.count)
        if !samples.skipped.isEmpty { throw ExitCode(1) }
    }

    func report(_ m: RetrievalMetrics, images: Int, captions: Int, skipped: Int) throws {
        if json {
            var out: [String: Any] = ["images": images, "captions": captions, "skipped_images": skipped]
            for (name, d) in [("image_to_text", m.imageToText), ("text_to_image", m.textToImage)] {
                for (k, r) in d.recall { out["\(name)_R@\(k)"] = r }
                out["\(name)_mean_rank"] = d.meanRank
                out["\(name)_median_rank"] = d.medianRank
            }
            try printJSON(out)
        } else {
            print("retrieval on \(images) images, \(captions) captions")
            print("              R@1      R@5     R@10   mean rank   median rank")
            for (name, d) in [("image→text", m.imageToText), ("text→image", m.textToImage)] {
                print(
                    name
                        + String(
                            format: "  %6.2f%%  %6.2f%%  %6.2f%%  %10.2f  %12.0f", d.recall[1]! * 100, d.recall[5]! * 100, d.recall[10]! * 100,
                            d.meanRank, d.medianRank))
            }
        }
    }
}
