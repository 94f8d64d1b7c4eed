import ArgumentParser
import Foundation
import MMCLIP
import MMEval

/// `mm index`: embed a gallery of images into an index file for `mm search`.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Build a retrieval index of image embeddings.",
        subcommands: [Build.self]
    )

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "build",
            abstract: "Embed images (files or folders, searched for .jpg/.jpeg/.png) into an index file.",
            discussion: """
                The index records the model's fingerprint (a hash of its weights), so searching it \
                with another model is refused. It is checked on reading (magic, version, checksum).

                  mm index build photos/ -o gallery.mmi -c model.safetensors
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @Argument(help: "Image files or folders.") var paths: [String]
        @Option(name: [.short, .long], help: "Index file to write.") var output: String
        @Option(help: "Images per forward pass.") var batchSize = 32

        func run() throws {
            let (files, missing) = collectImages(paths)
            guard !files.isEmpty else { throw CommandError("no images to index") }
            let (model, preprocessing, _) = try modelOptions.load()
            let (embedded, kept) = embedImageFiles(model, files, transform: preprocessing.evalTransform, batchSize: batchSize)
            guard let embeddings = embedded else { throw CommandError("none of the \(files.count) images could be read") }
            let index = EmbeddingIndex(modelFingerprint: EmbeddingIndex.fingerprint(model), names: kept.map { files[$0] }, embeddings: embeddings)
            do { try index.write(to: URL(fileURLWithPath: output)) } catch {
                throw CommandError("\(output): cannot write the index (\(error.localizedDescription))")
            }
            warn("indexed \(index.count) images → \(output)")
            if missing > 0 || kept.count < files.count { throw ExitCode(1) }
        }
    }
}

/// `mm search`: the gallery images closest to a text or an image.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search an index by text or by image (exact cosine search).",
        discussion: """
              mm search gallery.mmi -c model.safetensors --text "a red circle" -k 5
              mm search gallery.mmi -c model.safetensors --image query.jpg --json
            """
    )

    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "Index file made by `mm index build`.") var index: String
    @Option(help: "Text query.") var text: String?
    @Option(help: "Image query.") var image: String?
    @Option(name: .short, help: "Results to show.") var k = 10
    @Flag(help: "One JSON object: {\"query\", \"results\": [{\"path\", \"score\"}…]}.") var json = false

    func validate() throws {
        if (text == nil) == (image == nil) { throw ValidationError("give either --text or --image") }
        guard k >= 1 else { throw ValidationError("-k must be at least 1") }
    }

    func run() throws {
        let gallery = try EmbeddingIndex(contentsOf: URL(fileURLWithPath: index))
        let (model, preprocessing, tokenizer) = try modelOptions.load()
        guard EmbeddingIndex.fingerprint(model) == gallery.modelFingerprint else {
            throw CommandError("\(index) was built with another model (fingerprint \(gallery.modelFingerprint), \(modelOptions.checkpoint) has \(EmbeddingIndex.fingerprint(model))); rebuild the index with this checkpoint")
        }
        let query: Tensor
        if let text {
            query = embedTexts(model, tokenizer, [text])
        } else {
            let (embedded, _) = embedImageFiles(model, [image!], transform: preprocessing.evalTransform)
            guard let e = embedded else { throw CommandError("\(image!): cannot read the query image") }
            query = e
        }
        let results = gallery.search(query, k: k)[0]
        if json {
            try printJSON(["query": text ?? image!, "results": results.map { ["path": gallery.names[$0.index], "score": Double($0.score)] }])
        } else {
            for r in results { print(String(format: "%.4f  ", r.score) + gallery.names[r.index]) }
        }
    }
}
