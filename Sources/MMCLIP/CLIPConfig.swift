import Foundation
import MMFoundation
import MMNN
import MMText
import MMVision

/// A model configuration in open_clip's model-config JSON schema
/// (`embed_dim`, `quick_gelu`, `vision_cfg`, `text_cfg`, …).
public struct CLIPConfig: Sendable, Equatable {
    public var embedDim: Int
    public var quickGelu: Bool
    /// A ViT, or a ResNet when `vision_cfg.layers` is a list.
    public var vision: VisionConfiguration
    public var text: TextTransformer.Configuration
    /// ln(1/0.07) unless the config says otherwise.
    public var initLogitScale: Float
    /// Present for sigmoid-loss (SigLIP) models.
    public var initLogitBias: Float?
    /// The open_clip JSON this was read from, with sorted keys, kept for checkpoints and run folders.
    public let jsonString: String

    public static func == (a: CLIPConfig, b: CLIPConfig) -> Bool {
        a.embedDim == b.embedDim && a.quickGelu == b.quickGelu && a.vision == b.vision && a.text == b.text
            && a.initLogitScale == b.initLogitScale && a.initLogitBias == b.initLogitBias
    }

    /// Parses open_clip's schema. Every field open_clip allows and mm implements is read; fields
    /// mm does not implement are accepted only at their default value, anything else is an error
    /// naming the field, so that no model silently computes something other than its config says.
    public init(json data: Data, source: String) throws {
        guard let top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ConfigError(source: source, key: nil, message: "not a JSON object")
        }
        let root = Fields(top, source: source, path: "")
        try root.allow(
            ["embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "init_logit_scale", "init_logit_bias", "cast_dtype"],
            defaults: ["custom_text": false])
        embedDim = try root.int("embed_dim")
        quickGelu = try root.bool("quick_gelu", default: false)
        initLogitScale = try root.float("init_logit_scale", default: Float(Foundation.log(1 / 0.07)))
        initLogitBias = try root.optionalFloat("init_logit_bias")
        let activation: Activation = quickGelu ? .quickGelu : .gelu

        let v = try root.object("vision_cfg")
        try v.allow(
            ["image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size", "patch_dropout"],
            defaults: [
                "ls_init_value": NSNull(), "pool_type": "tok", "final_ln_after_pool": false,
                "no_ln_pre": false, "attentional_pool": false, "output_tokens": false,
                "timm_model_name": NSNull(), "act_kwargs": NSNull(), "norm_kwargs": NSNull(),
                "block_type": NSNull(), "qk_norm": false, "scaled_cosine_attn": false,
                "scale_heads": false, "scale_attn_inner": false, "scale_attn": false, "scale_fc": false,
                "pos_embed_type": "learnable", "input_patchnorm": false
            ])
        let width = try v.int("width")
        let headWidth = try v.int("head_width", default: 64)
        if let stages = v.values["layers"] as? [Any] {
            vision = .resnet(try Self.resnet(v, stages: stages, width: width, headWidth: headWidth, outputDim: embedDim))
        } else {
            vision = .transformer(try Self.transformer(v, width: width, headWidth: headWidth, outputDim: embedDim, activation: activation))
        }

        let t = try root.object("text_cfg")
        try t.allow(
            ["context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "eos_id"],
            defaults: [
                "ls_init_value": NSNull(), "embed_cls": false, "pad_id": 0, "no_causal_mask": false,
                "final_ln_after_pool": false, "pool_type": "argmax", "proj_bias": false,
                "proj_type": "linear", "output_tokens": false, "hf_model_name": NSNull(),
                "hf_tokenizer_name": NSNull(), "tokenizer_mode": NSNull(), "tokenizer_kwargs": NSNull(),
                "act_kwargs": NSNull(), "norm_kwargs": NSNull(), "block_type": NSNull(), "qk_norm": false,
                "scaled_cosine_attn": false, "scale_heads": false, "scale_attn_inner": false,
                "scale_attn": false, "scale_fc": false
            ])
        let textWidth = try t.int("width")
        let heads = try t.int("heads", default: 8)
        guard textWidth % heads == 0 else {
            throw ConfigError(source: source, key: "text_cfg.heads", message: "\(heads) does not divide width \(textWidth)")
        }
        text = .init(
            contextLength: try t.int("context_length", default: 77), vocabSize: try t.int("vocab_size", default: 49408),
            width: textWidth, layers: try t.int("layers", default: 12), heads: heads,
            mlpRatio: try t.ratio("mlp_ratio"), outputDim: embedDim, activation: activation)
        let canonical = try? JSONSerialization.data(withJSONObject: top, options: [.sortedKeys])
        jsonString = String(decoding: canonical ?? data, as: UTF8.self)
        guard parameterCount <= Self.maxParameters else {
            throw ConfigError(
                source: source, key: nil, message: "implies \(parameterCount) parameters, more than mm's limit of \(Self.maxParameters)")
        }
    }

    private static func transformer(
        _ v: Fields, width: Int, headWidth: Int, outputDim: Int, activation: Activation
    ) throws -> VisionTransformer.Configuration {
        guard width % headWidth == 0 else { throw v.error("head_width", "\(headWidth) does not divide width \(width)") }
        let patchDropout = try v.double("patch_dropout", default: 0)
        guard patchDropout >= 0 && patchDropout < 1 else { throw v.error("patch_dropout", "\(patchDropout) is outside [0, 1)") }
        let c = VisionTransformer.Configuration(
            imageSize: try v.imageSize(), patchSize: try v.int("patch_size"), width: width,
            layers: try v.int("layers"), heads: width / headWidth, mlpRatio: try v.ratio("mlp_ratio"),
            outputDim: outputDim, activation: activation, patchDropout: patchDropout)
        guard c.imageSize % c.patchSize == 0 else {
            throw v.error("patch_size", "\(c.patchSize) does not divide image_size \(c.imageSize)")
        }
        return c
    }

    /// open_clip builds a `ModifiedResNet` when `layers` is a list: four stages, attention-pool
    /// heads width · 32 / head_width; `patch_size` and `mlp_ratio` are ignored there, as open_clip does.
    private static func resnet(_ v: Fields, stages: [Any], width: Int, headWidth: Int, outputDim: Int) throws -> ModifiedResNet.Configuration {
        let counts = stages.compactMap { ($0 as? NSNumber).flatMap { $0.doubleValue == $0.doubleValue.rounded() ? $0.intValue : nil } }
        guard counts.count == 4 && stages.count == 4, counts.allSatisfy({ (1...limits["layers"]!).contains($0) }) else {
            throw v.error("layers", "a ResNet needs four stages of 1–\(limits["layers"]!) blocks, got \(stages)")
        }
        guard width % 2 == 0 else { throw v.error("width", "\(width) must be even for a ResNet (its stem starts at width / 2)") }
        let poolWidth = 32 * width
        guard poolWidth % headWidth == 0 else { throw v.error("head_width", "\(headWidth) does not divide the attention pool's width \(poolWidth)") }
        guard (try? v.double("patch_dropout", default: 0)) == 0 else { throw v.error("patch_dropout", "a ResNet tower has no patches to drop") }
        let imageSize = try v.imageSize()
        guard imageSize % 32 == 0 else { throw v.error("image_size", "\(imageSize) must be a multiple of 32 for a ResNet (five halvings)") }
        return .init(imageSize: imageSize, layers: counts, width: width, heads: poolWidth / headWidth, outputDim: outputDim)
    }

    /// Upper bounds on integer fields (others: 2^20), generous for every released CLIP model.
    static let limits: [String: Int] = [
        "layers": 1024, "width": 1 << 15, "head_width": 1 << 15, "heads": 1 << 12,
        "embed_dim": 1 << 15, "image_size": 1 << 13, "patch_size": 1 << 13,
        "context_length": 1 << 14, "vocab_size": 1 << 22
    ]
    /// 2^36 float32 parameters is 256 GB: beyond any model mm can run.
    static let maxParameters = 1 << 36

    /// The number of parameters the config implies (the model's `parameterCount`), computed
    /// without building it, so that a checkpoint's claims can be checked before allocating.
    public var parameterCount: Int {
        let t = text
        let textTower =
            t.vocabSize * t.width + t.contextLength * t.width + Transformer.parameterCount(width: t.width, layers: t.layers, mlpRatio: t.mlpRatio)
            + 2 * t.width + t.width * embedDim
        return vision.parameterCount + textTower + 1 + (initLogitBias == nil ? 0 : 1)
    }

    /// A config bundled with mm by name (`ViT-B-32`, `mm-tiny`, …) or read from a JSON file.
    public init(named nameOrPath: String) throws {
        if nameOrPath.hasSuffix(".json") || nameOrPath.contains("/") {
            // A regular file of sane size: not a FIFO, /dev/zero or a multi-GB file read whole.
            guard let bytes = try? ReadableFile(nameOrPath, maxSize: 16 << 20).readAll() else {
                throw ConfigError(source: nameOrPath, key: nil, message: "cannot read the file (a regular file of at most 16 MB)")
            }
            try self.init(json: Data(bytes), source: nameOrPath)
            return
        }
        guard let path = Resources.locate("configs/\(nameOrPath).json", target: "MMCLIP").path,
            let data = FileManager.default.contents(atPath: path)
        else {
            throw ConfigError(
                source: nameOrPath, key: nil,
                message: "no such model; bundled: \(CLIPConfig.bundledNames.joined(separator: ", ")), or give a config .json path")
        }
        try self.init(json: data, source: nameOrPath)
    }

    /// The same config with fields replaced; keys are dotted paths (`text_cfg.vocab_size`).
    public func updating(_ changes: [String: Any]) throws -> CLIPConfig {
        guard var top = (try? JSONSerialization.jsonObject(with: Data(jsonString.utf8))) as? [String: Any] else {
            throw ConfigError(source: "config", key: nil, message: "cannot re-read the config")
        }
        for (path, value) in changes {
            let parts = path.split(separator: ".").map(String.init)
            if parts.count == 2, var section = top[parts[0]] as? [String: Any] {
                section[parts[1]] = value
                top[parts[0]] = section
            } else {
                top[path] = value
            }
        }
        return try CLIPConfig(json: try JSONSerialization.data(withJSONObject: top), source: "config")
    }

    /// Names of the configs shipped with mm.
    public static var bundledNames: [String] {
        guard let dir = Resources.locate("configs", target: "MMCLIP").path,
            let files = try? FileManager.default.contentsOfDirectory(atPath: dir)
        else { return [] }
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public let source: String
    public let key: String?
    public let message: String
    public var description: String {
        "model config \(source)\(key.map { ": \($0)" } ?? ""): \(message)"
    }
}

/// Typed access to one JSON object of a config, with errors naming the field.
private struct Fields {
    let values: [String: Any]
    let source: String
    let path: String

    init(_ values: [String: Any], source: String, path: String) {
        self.values = values
        self.source = source
        self.path = path
    }

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(source: source, key: path + key, message: message)
    }

    /// Rejects unknown fields, and known-but-unimplemented fields away from their defaults.
    func allow(_ supported: Set<String>, defaults: [String: Any]) throws {
        for (key, value) in values.sorted(by: { $0.key < $1.key }) where !supported.contains(key) {
            guard let expected = defaults[key] else {
                throw error(key, "unknown or unsupported field")
            }
            if !(value is NSNull) && !equal(value, expected) {
                throw error(key, "\(value) is not supported by mm (only \(expected is NSNull ? "null" : "\(expected)"))")
            }
        }
    }

    private func equal(_ a: Any, _ b: Any) -> Bool {
        switch (a, b) {
        case let (x as String, y as String): x == y
        case let (x as NSNumber, y as Bool): x.boolValue == y && (x == 0 || x == 1)
        case let (x as NSNumber, y as Int): x.doubleValue == Double(y)
        case (is NSNull, is NSNull): true
        default: false
        }
    }

    func object(_ key: String) throws -> Fields {
        guard let v = values[key] as? [String: Any] else { throw error(key, "missing or not an object") }
        return Fields(v, source: source, path: path + key + ".")
    }

    func int(_ key: String, default d: Int? = nil) throws -> Int {
        guard let v = values[key], !(v is NSNull) else {
            if let d { return d }
            throw error(key, "missing")
        }
        guard let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.doubleValue >= 1 else {
            throw error(key, "\(v) is not a positive integer")
        }
        // Configs can come from untrusted checkpoints: no value may size an absurd allocation.
        let limit = CLIPConfig.limits[key] ?? 1 << 20
        guard n.doubleValue <= Double(limit) else { throw error(key, "\(v) exceeds mm's limit of \(limit)") }
        return n.intValue
    }

    func float(_ key: String, default d: Float) throws -> Float {
        try optionalFloat(key) ?? d
    }

    /// mlp_ratio: the MLP's hidden width over the model width.
    func ratio(_ key: String) throws -> Float {
        let r = try float(key, default: 4)
        guard r.isFinite, r > 0, r <= 64 else { throw error(key, "\(r) is not in (0, 64]") }
        return r
    }

    func optionalFloat(_ key: String) throws -> Float? {
        try optionalDouble(key).map(Float.init)
    }

    /// As Python reads it: a rate that multiplies a count must not lose its double value.
    func double(_ key: String, default d: Double) throws -> Double {
        try optionalDouble(key) ?? d
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard let v = values[key], !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber else { throw error(key, "\(v) is not a number") }
        return n.doubleValue
    }

    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = values[key], !(v is NSNull) else { return d }
        guard let n = v as? NSNumber else { throw error(key, "\(v) is not true/false") }
        return n.boolValue
    }

    /// `image_size` as an integer or a square [h, w] pair.
    func imageSize() throws -> Int {
        if let pair = values["image_size"] as? [NSNumber] {
            guard pair.count == 2, pair[0] == pair[1] else { throw error("image_size", "only square images are supported") }
            return pair[0].intValue
        }
        return try int("image_size")
    }
}
