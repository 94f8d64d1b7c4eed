import ArgumentParser
import Foundation
import MMCLIP

/// `mm convert`: any checkpoint mm reads → safetensors in open_clip's or Hugging Face's layout.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a checkpoint (safetensors, PyTorch .pt/.bin, TorchScript, hub folder) to safetensors.",
        discussion: """
            The input is recognised from its bytes and keys: safetensors, torch.save files (open_clip \
            training checkpoints, plain state dicts, pytorch_model.bin), TorchScript archives (OpenAI's \
            ViT-B-32.pt), or a folder (open_clip hub, transformers, mm run). Nothing in a PyTorch file \
            is executed. --to open_clip writes one .safetensors with open_clip's keys \
            (load_state_dict(strict=True) in open_clip), carrying the model config, activation and \
            preprocessing in its metadata; --to hf writes OUT/model.safetensors and OUT/config.json. \
            --dtype f16 or bf16 halves the file; every mm command loads it (widened to float32).

              mm convert logs/run1/checkpoints/epoch_32.pt model.safetensors
              mm convert ViT-B-32.pt vit-b-32-f16.safetensors --dtype f16
              mm convert runs/shapes/checkpoints/epoch_5.safetensors hf-model/ --to hf
            """
    )

    @Argument(help: "Input checkpoint file or folder.") var input: String
    @Argument(help: "Output: a .safetensors file (open_clip) or a folder (hf).") var output: String
    @Option(help: "Target layout: open_clip or hf.") var to = "open_clip"
    @Option(help: "Stored float type: f32, f16 or bf16.") var dtype = "f32"
    @Option(help: "Model config for inputs that do not record one.") var model: String?

    func run() throws {
        guard let layout = CheckpointLayout(rawValue: to) else { throw ValidationError("--to must be open_clip or hf, got \(to)") }
        guard let floats = SafetensorsFloat(rawValue: dtype.uppercased()) else {
            throw ValidationError("--dtype must be f32, f16 or bf16, got \(dtype)")
        }
        let loaded = try CLIPModel.load(from: URL(fileURLWithPath: input), config: try model.map { try CLIPConfig(named: $0) })
        for note in loaded.notes { warn("note: \(note)") }
        var target = URL(fileURLWithPath: output)
        if layout == .huggingFace {
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            target.appendPathComponent("model.safetensors")
        }
        // Checkpoints name their vocabulary relative to their own folder (or the bundled one).
        var tokenizer = "clip-bpe"
        if let vocabulary = try loaded.vocabularyFolder() {
            let folder = target.deletingLastPathComponent().resolvingSymlinksInPath().path + "/"
            guard vocabulary.hasPrefix(folder) else {
                throw CommandError(
                    "\(input) uses the vocabulary \(vocabulary), which is not inside the output's folder \(folder); copy it there first")
            }
            tokenizer = String(vocabulary.dropFirst(folder.count))
        }
        try loaded.model.save(to: target, preprocessing: loaded.preprocessing, tokenizer: tokenizer, layout: layout, floats: floats)
        warn("wrote \(target.path) (\(layout.rawValue) layout, \(floats.rawValue), \(loaded.model.parameterCount.formatted()) parameters)")
    }
}
