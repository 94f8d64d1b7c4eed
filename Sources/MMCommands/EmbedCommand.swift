import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMEval
import MMFoundation

/// `mm embed`: normalised embeddings of images or texts.
struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Print the normalised embeddings of images or texts.",
        discussion: """
            Output is one JSON object per line ({"image": path, "embedding": [...]} or \
            {"text": ..., "embedding": [...]}), or with -o a float32 .npy of [N, embed_dim] plus \
            OUT.txt naming each row (images by absolute path, each file once; a backslash, line \
            break or carriage return in a name is written \\\\, \\n, \\r). Unreadable images are \
            reported and left out (exit status 1); embeddings that are not finite (a broken \
            checkpoint) are an error and nothing is written.

              mm embed -c model.safetensors photos/*.jpg > embeddings.jsonl
              mm embed -c model.safetensors --text "a red car" --text "a blue boat" -o texts.npy
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Argument(help: "Image files, or WebDataset shards (rows named by __key__).")
    var images: [String] = []

    @OptionGroup(title: "WebDataset shards") var shardOptions: ShardOptions

    @Option(name: .long, help: "A text to embed (repeatable).")
    var text: [String] = []

    @Option(name: .long, help: "A file of texts, one per line.")
    var texts: String?

    @Option(name: [.short, .long], help: "Write a .npy (and OUT.txt with the row names) instead of JSON lines.")
    var output: String?

    @Option(help: "Items per forward pass.")
    var batchSize = 32

    func validate() throws {
        let textCount = text.count + (texts == nil ? 0 : 1)
        if images.isEmpty == (textCount == 0) { throw ValidationError("give either image files or --text/--texts") }
        try OptionBounds.check(batchSize, "--batch-size", OptionBounds.batchSize)
    }

    func run() throws {
        let embedder = try modelOptions.embedder()
        let names: [String], all: Tensor
        var failed = 0
        if images.isEmpty {
            var lines = text
            if let file = texts {
                let s: String?
                do { s = try ReadableFile(file, maxSize: 1 << 30).readText() } catch let error as FileError { throw CommandError(error.description) }
                guard let s else { throw CommandError("\(file): not UTF-8 text") }
                lines += Text.lines(s).filter { !$0.isEmpty }.map(String.init)
            }
            names = lines
            all = embedder.embed(texts: lines, batchSize: batchSize)
        } else if images.count == 1 && ShardURLs.looksLikeShards(images[0]) {
            let samples = try embedShards(embedder, try shardOptions.open(images[0]), batchSize: batchSize)
            failed = samples.skipped.count
            names = samples.names
            all = samples.embeddings
        } else {
            let embedded = embedImageFiles(embedder, uniqueFiles(images), batchSize: batchSize)
            failed = embedded.failures.count
            names = embedded.paths
            all = embedded.embeddings
        }
        guard !names.isEmpty else { throw CommandError("nothing could be embedded") }
        try requireFiniteEmbeddings(all, names: names, checkpoint: modelOptions.checkpoint)
        let d = all.shape[1]
        if let output {
            try writeNPY(all.scalars, shape: all.shape, to: output)
            try writeNames(names, to: output + ".txt")
        } else {
            let key = images.isEmpty ? "text" : "image"
            for (i, name) in names.enumerated() {
                let vector = Array(UnsafeBufferPointer(start: all.data + i * d, count: d)).map(Double.init)
                let json = try JSONSerialization.data(withJSONObject: [key: name, "embedding": vector], options: [.sortedKeys])
                print(String(decoding: json, as: UTF8.self))
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
