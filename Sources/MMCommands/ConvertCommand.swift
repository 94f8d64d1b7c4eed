import ArgumentParser
import Foundation
import MMCLIP

/// `mm convert`: move a checkpoint between open_clip's and Hugging Face's layouts.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a checkpoint between open_clip's and Hugging Face's CLIPModel layouts.",
        discussion: """
            The input layout is recognised from its keys. --to hf writes OUT/model.safetensors and \
            OUT/config.json (loadable with transformers' CLIPModel.from_pretrained); --to open_clip \
            writes one .safetensors with open_clip's keys (load_state_dict(strict=True) in open_clip), \
            carrying the model config, activation and preprocessing in its metadata.

              mm convert runs/shapes/checkpoints/epoch_5.safetensors hf-model/ --to hf
              mm convert hf-model/model.safetensors model.safetensors --to open_clip
            """
    )

    @Argument(help: "Input checkpoint (.safetensors).") var input: String
    @Argument(help: "Output: a .safetensors file (open_clip) or a folder (hf).") var output: String
    @Option(help: "Target layout: open_clip or hf.") var to = "open_clip"
    @Option(help: "Model config for inputs that do not record one.") var model: String?

    func run() throws {
        guard let layout = CheckpointLayout(rawValue: to) else { throw ValidationError("--to must be open_clip or hf, got \(to)") }
        let loaded = try CLIPModel.load(from: URL(fileURLWithPath: input), config: try model.map { try CLIPConfig(named: $0) })
        var target = URL(fileURLWithPath: output)
        if layout == .huggingFace {
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            target.appendPathComponent("model.safetensors")
        }
        try loaded.model.save(to: target, preprocessing: loaded.preprocessing, tokenizer: loaded.tokenizer, layout: layout)
        warn("wrote \(target.path) (\(layout.rawValue) layout, \(loaded.model.parameterCount.formatted()) parameters)")
    }
}
