import ArgumentParser
import Foundation
import MMCLIP
import MMImage
import MMTokenizer

/// The options every command that uses a trained model shares.
struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Model checkpoint (.safetensors; open_clip or Hugging Face layout).")
    var checkpoint: String

    @Option(help: "Model config (bundled name or .json) for checkpoints that do not record one.")
    var model: String?

    @Option(help: "Vocabulary folder (default: the one the checkpoint names, else CLIP's).")
    var vocab: String?

    /// The model, its preprocessing, and its tokenizer.
    func load() throws -> (model: CLIPModel, preprocessing: Preprocessing, tokenizer: Tokenizer) {
        let loaded = try CLIPModel.load(from: URL(fileURLWithPath: checkpoint), config: try model.map { try CLIPConfig(named: $0) })
        let named = vocab ?? (loaded.tokenizer == "clip-bpe" ? nil : loaded.tokenizer)
        let vocabulary = try named.map { try Vocabulary.load($0) } ?? Vocabulary.clip()
        guard vocabulary.count <= loaded.model.config.text.vocabSize else {
            throw CommandError("vocabulary \(named ?? "CLIP") has \(vocabulary.count) tokens but the model's text tower has \(loaded.model.config.text.vocabSize)")
        }
        return (loaded.model, loaded.preprocessing, Tokenizer(vocabulary: vocabulary, contextLength: loaded.model.config.text.contextLength))
    }
}

extension Preprocessing {
    /// The image transform for evaluation and embedding (exact decode, as open_clip).
    var evalTransform: ImageTransform {
        .eval(size: imageSize, normalization: Normalization(mean: SIMD3(mean[0], mean[1], mean[2]), std: SIMD3(std[0], std[1], std[2])))
    }
}

/// A failure while running a command (bad files, nothing to do): printed as one line, without
/// the usage text that ArgumentParser adds to `ValidationError`s.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes one line to standard error.
func warn(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
