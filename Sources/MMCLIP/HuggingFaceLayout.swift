import Foundation
import MMNN

/// The one place that knows how Hugging Face's `CLIPModel` names open_clip's parameters.
/// Besides renames, HF splits the packed attention projection into q/k/v and stores the two
/// output projections as Linear weights (transposed).
enum HuggingFaceLayout {
    /// The HF name of an open_clip key, and whether the tensor is stored transposed. The packed
    /// `attn.in_proj_*` has no single HF name (see `split`).
    static func name(ofOpenCLIP key: String) -> (name: String, transposed: Bool)? {
        switch key {
        case "logit_scale", "logit_bias": return (key, false)
        case "visual.proj": return ("visual_projection.weight", true)
        case "text_projection": return ("text_projection.weight", true)
        case "token_embedding.weight": return ("text_model.embeddings.token_embedding.weight", false)
        case "positional_embedding": return ("text_model.embeddings.position_embedding.weight", false)
        case "visual.conv1.weight": return ("vision_model.embeddings.patch_embedding.weight", false)
        case "visual.class_embedding": return ("vision_model.embeddings.class_embedding", false)
        case "visual.positional_embedding": return ("vision_model.embeddings.position_embedding.weight", false)
        default: break
        }
        let (tower, rest) = key.hasPrefix("visual.") ? ("vision_model", String(key.dropFirst(7))) : ("text_model", key)
        for (oc, hf) in [("ln_pre.", "pre_layrnorm."), ("ln_post.", "post_layernorm."), ("ln_final.", "final_layer_norm.")]
        where rest.hasPrefix(oc) {
            return ("\(tower).\(hf)\(rest.dropFirst(oc.count))", false)
        }
        guard rest.hasPrefix("transformer.resblocks.") else { return nil }
        let parts = rest.dropFirst("transformer.resblocks.".count).split(separator: ".", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let blockRenames = [
            ("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."),
            ("mlp.c_proj.", "mlp.fc2."), ("attn.out_proj.", "self_attn.out_proj.")
        ]
        for (oc, hf) in blockRenames where parts[1].hasPrefix(oc) {
            return ("\(tower).encoder.layers.\(parts[0]).\(hf)\(parts[1].dropFirst(oc.count))", false)
        }
        return nil
    }

    /// For a packed `…attn.in_proj_weight|bias` key, the three HF keys it splits into.
    static func split(_ key: String) -> [String]? {
        guard let range = key.range(of: ".attn.in_proj_") else { return nil }
        let kind = key[range.upperBound...] == "weight" ? "weight" : "bias"
        let blockPrefix = String(key[..<range.lowerBound])  // e.g. visual.transformer.resblocks.3
        let (tower, rest) = blockPrefix.hasPrefix("visual.") ? ("vision_model", String(blockPrefix.dropFirst(7))) : ("text_model", blockPrefix)
        let index = rest.dropFirst("transformer.resblocks.".count)
        return ["q", "k", "v"].map { "\(tower).encoder.layers.\(index).self_attn.\($0)_proj.\(kind)" }
    }

    static func fromOpenCLIP(_ state: [String: Tensor], source: String) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, t) in state {
            if let parts = split(key) {
                let third = t.shape[0] / 3
                for (i, name) in parts.enumerated() { out[name] = t.slice(axis: 0, (i * third)..<((i + 1) * third)) }
            } else if let (name, transposed) = name(ofOpenCLIP: key) {
                out[name] = transposed ? t.transposed() : t
            } else {
                throw CheckpointError(file: source, message: "no Hugging Face name for parameter '\(key)'")
            }
        }
        return out
    }

    static func toOpenCLIP(_ state: [String: Tensor], source: String) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var used = Set<String>()
        // Invert the naming over every key the HF file could hold.
        for key in state.keys {
            guard key.hasSuffix("q_proj.weight") || key.hasSuffix("q_proj.bias") else { continue }
            let base = key.dropLast(key.hasSuffix("weight") ? "q_proj.weight".count : "q_proj.bias".count)
            let kind = key.hasSuffix("weight") ? "weight" : "bias"
            let names = ["q", "k", "v"].map { "\(base)\($0)_proj.\(kind)" }
            guard let parts = Optional(names.compactMap { state[$0] }), parts.count == 3 else {
                throw CheckpointError(file: source, message: "attention projection '\(key)' lacks its k/v parts")
            }
            let tower = base.hasPrefix("vision_model.") ? "visual." : ""
            let index = base.split(separator: ".")[3]
            out["\(tower)transformer.resblocks.\(index).attn.in_proj_\(kind)"] = .concatenate(parts, axis: 0)
            used.formUnion(names)
        }
        var inverse: [String: (String, Bool)] = [:]
        for key in state.keys where !used.contains(key) {
            if let mapped = openCLIPName(ofHF: key) { inverse[key] = mapped }
        }
        for (key, t) in state where !used.contains(key) {
            if key.hasSuffix("position_ids") { continue }  // a buffer, not a parameter
            guard let (name, transposed) = inverse[key] else {
                throw CheckpointError(file: source, message: "unknown Hugging Face key '\(key)'")
            }
            out[name] = transposed ? t.transposed() : t
        }
        return out
    }

    /// Inverse of `name(ofOpenCLIP:)`, by trying the open_clip keys an HF key can come from.
    static func openCLIPName(ofHF key: String) -> (String, Bool)? {
        var candidates = [
            "logit_scale", "logit_bias", "visual.proj", "text_projection", "token_embedding.weight",
            "positional_embedding", "visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding"
        ]
        let parts = key.split(separator: ".").map(String.init)
        let visual = parts.first == "vision_model"
        let tower = visual ? "visual." : ""
        if parts.count >= 3 {
            let leaf = parts.last!
            for norm in ["ln_pre", "ln_post", "ln_final"] { candidates.append("\(tower)\(norm).\(leaf)") }
            if parts.count >= 6, parts[1] == "encoder", parts[2] == "layers" {
                let block = "\(tower)transformer.resblocks.\(parts[3])."
                for sub in ["ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj", "attn.out_proj"] { candidates.append("\(block)\(sub).\(leaf)") }
            }
        }
        for c in candidates {
            if let (name, transposed) = name(ofOpenCLIP: c), name == key { return (c, transposed) }
        }
        return nil
    }

    /// open_clip config from the HF `config.json` beside a weights file.
    static func config(besides url: URL) throws -> CLIPConfig {
        let path = url.deletingLastPathComponent().appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: path.path) else {
            throw CheckpointError(file: url.path, message: "Hugging Face weights need their config.json beside them (\(path.path))")
        }
        let hf = try CheckpointFolder.jsonObject(path)
        func section(_ name: String) throws -> [String: Any] {
            guard let s = hf[name] as? [String: Any] else {
                throw CheckpointError(file: path.path, message: "no \(name) section")
            }
            return s
        }
        func int(_ s: [String: Any], _ k: String, _ d: Int? = nil) throws -> Int {
            if let v = s[k] as? NSNumber { return v.intValue }
            if let d { return d }
            throw CheckpointError(file: path.path, message: "missing \(k)")
        }
        let v = try section("vision_config"), t = try section("text_config")
        let acts = Set([v["hidden_act"] as? String ?? "quick_gelu", t["hidden_act"] as? String ?? "quick_gelu"])
        guard acts.count == 1, let act = acts.first, act == "gelu" || act == "quick_gelu" else {
            throw CheckpointError(file: path.path, message: "unsupported hidden_act \(acts.sorted())")
        }
        let vw = try int(v, "hidden_size", 768), tw = try int(t, "hidden_size", 512)
        let openCLIP: [String: Any] = [
            "embed_dim": try int(hf, "projection_dim", 512),
            "quick_gelu": act == "quick_gelu",
            "init_logit_scale": (hf["logit_scale_init_value"] as? NSNumber)?.doubleValue ?? 2.6592,
            "vision_cfg": [
                "image_size": try int(v, "image_size", 224), "patch_size": try int(v, "patch_size", 32),
                "width": vw, "layers": try int(v, "num_hidden_layers", 12),
                "head_width": vw / (try int(v, "num_attention_heads", 12)),
                "mlp_ratio": Double(try int(v, "intermediate_size", 3072)) / Double(vw)
            ],
            "text_cfg": [
                "context_length": try int(t, "max_position_embeddings", 77), "vocab_size": try int(t, "vocab_size", 49408),
                "width": tw, "heads": try int(t, "num_attention_heads", 8), "layers": try int(t, "num_hidden_layers", 12),
                "mlp_ratio": Double(try int(t, "intermediate_size", 2048)) / Double(tw)
            ]
        ]
        return try CLIPConfig(json: try JSONSerialization.data(withJSONObject: openCLIP), source: path.path)
    }

    /// An HF `config.json` describing `config` (for export).
    static func configJSON(for c: CLIPConfig, vision v: VisionTransformer.Configuration) -> Data {
        let act = c.quickGelu ? "quick_gelu" : "gelu"
        let json: [String: Any] = [
            "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": c.embedDim,
            "logit_scale_init_value": c.initLogitScale, "torch_dtype": "float32",
            "text_config": [
                "model_type": "clip_text_model", "vocab_size": c.text.vocabSize, "hidden_size": c.text.width,
                "intermediate_size": Int(Float(c.text.width) * c.text.mlpRatio),
                "num_attention_heads": c.text.heads, "num_hidden_layers": c.text.layers,
                "max_position_embeddings": c.text.contextLength, "hidden_act": act, "layer_norm_eps": 1e-5,
                "projection_dim": c.embedDim, "bos_token_id": 49406, "eos_token_id": 2, "pad_token_id": 1
            ],
            "vision_config": [
                "model_type": "clip_vision_model", "hidden_size": v.width,
                "intermediate_size": Int(Float(v.width) * v.mlpRatio),
                "num_attention_heads": v.heads, "num_hidden_layers": v.layers,
                "image_size": v.imageSize, "patch_size": v.patchSize, "num_channels": 3,
                "hidden_act": act, "layer_norm_eps": 1e-5, "projection_dim": c.embedDim
            ]
        ]
        return (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted])) ?? Data()
    }
}
