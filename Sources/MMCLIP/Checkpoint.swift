import Foundation
import MMNN

/// How images are prepared for a model: written into checkpoints next to the config so that a
/// checkpoint carries everything needed to reproduce its numbers.
public struct Preprocessing: Codable, Sendable, Equatable {
    public var imageSize: Int
    public var mean: [Float]
    public var std: [Float]
    /// "shortest": resize the shorter side to `imageSize`, then center-crop (open_clip's eval).
    public var resizeMode: String
    public var interpolation: String

    public static let openAIMean: [Float] = [0.481_454_66, 0.457_827_5, 0.408_210_73]
    public static let openAIStd: [Float] = [0.268_629_54, 0.261_302_58, 0.275_777_11]

    public init(imageSize: Int, mean: [Float] = Preprocessing.openAIMean, std: [Float] = Preprocessing.openAIStd,
                resizeMode: String = "shortest", interpolation: String = "bicubic") {
        self.imageSize = imageSize
        self.mean = mean
        self.std = std
        self.resizeMode = resizeMode
        self.interpolation = interpolation
    }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", mean, std, resizeMode = "resize_mode", interpolation
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "checkpoint \(file): \(message)" }
}

/// Metadata keys mm writes into a checkpoint's `__metadata__`.
enum MetadataKey {
    static let config = "model_config"          // open_clip model-config JSON
    static let activation = "activation"        // "gelu" | "quick_gelu", the classic mis-load
    static let preprocessing = "preprocess_cfg" // JSON of `Preprocessing`
    static let tokenizer = "tokenizer"          // e.g. "clip-bpe" or a vocabulary folder
}

/// A model loaded from disk with what its checkpoint says about it.
public struct LoadedModel {
    public let model: CLIPModel
    public let preprocessing: Preprocessing
    /// The tokenizer the checkpoint names ("clip-bpe" when it names none).
    public let tokenizer: String
}

extension CLIPModel {
    /// Writes the weights as safetensors with open_clip's keys (or Hugging Face's, plus a
    /// `config.json` beside them), atomically, with config, activation, preprocessing and
    /// tokenizer in `__metadata__`.
    public func save(to url: URL, preprocessing: Preprocessing? = nil, tokenizer: String = "clip-bpe",
                     layout: CheckpointLayout = .openCLIP, extraMetadata: [String: String] = [:],
                     extraTensors: [String: Tensor] = [:]) throws {
        let prep = preprocessing ?? Preprocessing(imageSize: config.vision.imageSize)
        var metadata = extraMetadata
        metadata["format"] = "pt"
        metadata[MetadataKey.config] = config.jsonString
        metadata[MetadataKey.activation] = config.quickGelu ? "quick_gelu" : "gelu"
        metadata[MetadataKey.preprocessing] = String(decoding: try JSONEncoder.sorted.encode(prep), as: UTF8.self)
        metadata[MetadataKey.tokenizer] = tokenizer
        var tensors = stateDict()
        if layout == .huggingFace {
            tensors = try HuggingFaceLayout.fromOpenCLIP(tensors, source: url.path)
            let hfConfig = HuggingFaceLayout.configJSON(for: config)
            try hfConfig.write(to: url.deletingLastPathComponent().appendingPathComponent("config.json"), options: .atomic)
        }
        tensors.merge(extraTensors) { own, _ in own }
        try Safetensors(tensors: tensors, metadata: metadata).write(to: url)
    }

    /// Loads a safetensors checkpoint in open_clip's layout (also nested under `state_dict.` or
    /// `module.`) or Hugging Face's `CLIPModel` layout, strictly; a training run's `optimizer.*`
    /// state is not part of the model and is passed over. The config comes from `config`
    /// if given, else from the file's metadata, else (Hugging Face) from `config.json` beside it;
    /// a config that contradicts the file's recorded activation is an error.
    public static func load(from url: URL, config: CLIPConfig? = nil) throws -> LoadedModel {
        let file = url.path
        let contents = try Safetensors(contentsOf: url)
        var state = contents.tensors.filter { !$0.key.hasPrefix("optimizer.") }
        for prefix in ["state_dict.", "module."] where !state.isEmpty && state.keys.allSatisfy({ $0.hasPrefix(prefix) }) {
            state = Dictionary(uniqueKeysWithValues: state.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
        }
        let layout: CheckpointLayout = state.keys.contains { $0.hasPrefix("vision_model.") || $0.hasPrefix("text_model.") }
            ? .huggingFace : .openCLIP

        let meta = contents.metadata
        let resolved: CLIPConfig
        if let config {
            resolved = config
        } else if let json = meta[MetadataKey.config] {
            resolved = try CLIPConfig(json: Data(json.utf8), source: "\(file) (metadata)")
        } else if layout == .huggingFace {
            resolved = try HuggingFaceLayout.config(besides: url)
        } else {
            throw CheckpointError(file: file, message: "no model config in the file's metadata; pass one (e.g. --model ViT-B-32)")
        }
        if let recorded = meta[MetadataKey.activation], recorded != (resolved.quickGelu ? "quick_gelu" : "gelu") {
            throw CheckpointError(file: file, message: "weights were trained with \(recorded) but the config uses \(resolved.quickGelu ? "quick_gelu" : "gelu"); pick the matching config (e.g. a -quickgelu variant)")
        }
        if layout == .huggingFace {
            state = try HuggingFaceLayout.toOpenCLIP(state, source: file)
        }
        let model = CLIPModel(resolved)
        do {
            try model.load(state)
        } catch let error as LoadError {
            throw CheckpointError(file: file, message: "does not fit the config: \(error)")
        }
        var prep = Preprocessing(imageSize: resolved.vision.imageSize)
        if let json = meta[MetadataKey.preprocessing] {
            do {
                prep = try JSONDecoder().decode(Preprocessing.self, from: Data(json.utf8))
            } catch {
                throw CheckpointError(file: file, message: "unreadable \(MetadataKey.preprocessing) metadata: \(error)")
            }
        }
        return LoadedModel(model: model, preprocessing: prep, tokenizer: meta[MetadataKey.tokenizer] ?? "clip-bpe")
    }
}

public enum CheckpointLayout: String, Sendable, CaseIterable {
    case openCLIP = "open_clip", huggingFace = "hf"
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
