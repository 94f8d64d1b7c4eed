import ArgumentParser
import Foundation
import MMCLIP
import MMEval
import MMImage
import MMTokenizer

/// The options every command that uses a trained model shares.
struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Model checkpoint: .safetensors, PyTorch .pt/.bin, TorchScript, or a hub/transformers/run folder.")
    var checkpoint: String

    @Option(help: "Model config (bundled name or .json) for checkpoints that do not record one.")
    var model: String?

    @Option(help: "Vocabulary folder (default: the one the checkpoint names, else CLIP's).")
    var vocab: String?

    /// The model with its preprocessing and tokenizer.
    func embedder() throws -> Embedder {
        let e = try Embedder(checkpoint: URL(fileURLWithPath: checkpoint), config: try model.map { try CLIPConfig(named: $0) }, vocabulary: vocab)
        for note in e.notes { warn("note: \(note)") }
        return e
    }

    /// The model, its preprocessing, and its tokenizer.
    func load() throws -> (model: CLIPModel, preprocessing: Preprocessing, tokenizer: Tokenizer) {
        let e = try embedder()
        return (e.model, e.preprocessing, e.tokenizer)
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
