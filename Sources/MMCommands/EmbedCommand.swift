import ArgumentParser
import Foundation
import MMCLIP
import MMImage
import MMTokenizer

/// `mm embed`: normalised embeddings of images or texts.
struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Print the normalised embeddings of images or texts.",
        discussion: """
            Output is one JSON object per line ({"image": path, "embedding": [...]} or \
            {"text": ..., "embedding": [...]}), or with -o a float32 .npy of [N, embed_dim] plus \
            OUT.txt naming each row. Unreadable images are reported and left out (exit status 1).

              mm embed -c model.safetensors photos/*.jpg > embeddings.jsonl
              mm embed -c model.safetensors --text "a red car" --text "a blue boat" -o texts.npy
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Argument(help: "Image files.")
    var images: [String] = []

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
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() throws {
        let (model, preprocessing, tokenizer) = try modelOptions.load()
        var names: [String] = [], rows: [Tensor] = []
        var failed = 0
        if images.isEmpty {
            var all = text
            if let texts {
                guard let data = FileManager.default.contents(atPath: texts), let s = String(data: data, encoding: .utf8) else {
                    throw CommandError("\(texts): cannot read as UTF-8 text")
                }
                all += s.split(whereSeparator: \.isNewline).map(String.init)
            }
            let context = model.config.text.contextLength
            for start in stride(from: 0, to: all.count, by: batchSize) {
                let chunk = Array(all[start..<min(start + batchSize, all.count)])
                let ids = IntTensor(shape: [chunk.count, context], values: tokenizer.tokenize(chunk, contextLength: context))
                rows.append(withoutGradients { model.encodeText(ids) })
                names += chunk
            }
        } else {
            let loader = ImageBatchLoader(transform: preprocessing.evalTransform)
            for start in stride(from: 0, to: images.count, by: batchSize) {
                let chunk = Array(images[start..<min(start + batchSize, images.count)])
                let batch = loader.load(chunk)
                let bad = Set(batch.failures.map(\.index))
                for f in batch.failures { warn("skipped \(f.error)") }
                failed += bad.count
                let e = withoutGradients { model.encodeImage(batch.pixels) }
                let d = e.shape[1]
                for (i, path) in chunk.enumerated() where !bad.contains(i) {
                    rows.append(Tensor(shape: [1, d], values: Array(UnsafeBufferPointer(start: e.data + i * d, count: d))))
                    names.append(path)
                }
            }
        }
        guard !rows.isEmpty else { throw CommandError("nothing could be embedded") }
        let all = Tensor.concatenate(rows, axis: 0)
        let d = all.shape[1]
        if let output {
            try writeNPY(all.scalars, shape: all.shape, to: output)
            try (names.joined(separator: "\n") + "\n").write(toFile: output + ".txt", atomically: true, encoding: .utf8)
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
