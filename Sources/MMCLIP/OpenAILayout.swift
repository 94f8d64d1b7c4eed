import Foundation

/// The one place that knows OpenAI's original CLIP checkpoints (the TorchScript `ViT-B-32.pt`):
/// open_clip kept OpenAI's parameter names, so the renaming drops the three bookkeeping tensors
/// and the config is inferred from the shapes, as open_clip's `build_model_from_openai_state_dict`
/// does. OpenAI trained with QuickGELU, so the inferred config uses it.
enum OpenAILayout {
    /// open_clip's key for an OpenAI key; nil for tensors that are not parameters.
    static func openCLIPKey(_ key: String) -> String? {
        ["input_resolution", "context_length", "vocab_size"].contains(key) ? nil : key
    }

    /// The open_clip config of a state dict in open_clip/OpenAI layout, from its shapes:
    /// widths from `conv1` and `ln_final`, layers by counting blocks, 64-wide heads.
    static func inferConfig(_ shapes: [String: [Int]], quickGelu: Bool, source: String) throws -> CLIPConfig {
        func shape(_ key: String, rank: Int) throws -> [Int] {
            guard let s = shapes[key], s.count == rank else {
                throw CheckpointError(
                    file: source, message: "cannot infer the model config: \(shapes[key].map { "\(key) has shape \($0)" } ?? "no \(key)")")
            }
            return s
        }
        let conv = try shape("visual.conv1.weight", rank: 4)
        let positions = try shape("visual.positional_embedding", rank: 2)[0]
        let grid = Int((Double(max(positions - 1, 0))).squareRoot().rounded())
        let blocks = { (prefix: String) in
            Set(
                shapes.keys.compactMap { k -> Substring? in
                    guard k.hasPrefix(prefix), k.hasSuffix(".attn.in_proj_weight") else { return nil }
                    return k.dropFirst(prefix.count).split(separator: ".").first
                }
            ).count
        }
        let textWidth = try shape("ln_final.weight", rank: 1)[0]
        let visionWidth = conv[0]
        // open_clip assumes OpenAI's 4; reading it from the first MLP is the same there, and right elsewhere.
        func mlpRatio(_ key: String, _ width: Int) -> Double {
            guard let hidden = shapes[key]?.first, width > 0 else { return 4 }
            return Double(hidden) / Double(width)
        }
        let json: [String: Any] = [
            "embed_dim": try shape("text_projection", rank: 2)[1],
            "quick_gelu": quickGelu,
            "vision_cfg": [
                "image_size": conv[3] * grid, "patch_size": conv[3], "width": visionWidth,
                "layers": blocks("visual.transformer.resblocks."), "head_width": visionWidth / max(visionWidth / 64, 1),
                "mlp_ratio": mlpRatio("visual.transformer.resblocks.0.mlp.c_fc.weight", visionWidth)
            ],
            "text_cfg": [
                "context_length": try shape("positional_embedding", rank: 2)[0],
                "vocab_size": try shape("token_embedding.weight", rank: 2)[0],
                "width": textWidth, "heads": max(textWidth / 64, 1), "layers": blocks("transformer.resblocks."),
                "mlp_ratio": mlpRatio("transformer.resblocks.0.mlp.c_fc.weight", textWidth)
            ]
        ]
        return try CLIPConfig(json: try JSONSerialization.data(withJSONObject: json), source: "\(source) (inferred from its shapes)")
    }
}
