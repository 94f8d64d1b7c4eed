import Foundation
import MMFoundation
import MMImage
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

    public init(
        imageSize: Int, mean: [Float] = Preprocessing.openAIMean, std: [Float] = Preprocessing.openAIStd,
        resizeMode: String = "shortest", interpolation: String = "bicubic"
    ) {
        self.imageSize = imageSize
        self.mean = mean
        self.std = std
        self.resizeMode = resizeMode
        self.interpolation = interpolation
    }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", mean, std, resizeMode = "resize_mode", interpolation
    }

    /// The normalisation the image pipeline applies (loading checked three positive std values).
    public var normalization: Normalization {
        Normalization(mean: SIMD3(mean[0], mean[1], mean[2]), std: SIMD3(std[0], std[1], std[2]))
    }

    /// open_clip's eval transform for this preprocessing (exact decode).
    public var evalTransform: ImageTransform { .eval(size: imageSize, normalization: normalization) }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "checkpoint \(file): \(message)" }
}

/// Metadata keys mm writes into a checkpoint's `__metadata__`.
enum MetadataKey {
    static let config = "model_config"  // open_clip model-config JSON
    static let activation = "activation"  // "gelu" | "quick_gelu", the classic mis-load
    static let preprocessing = "preprocess_cfg"  // JSON of `Preprocessing`
    static let tokenizer = "tokenizer"  // e.g. "clip-bpe" or a vocabulary folder
}

/// A model loaded from disk with what its checkpoint says about it.
public struct LoadedModel {
    public let model: CLIPModel
    public let preprocessing: Preprocessing
    /// The tokenizer the checkpoint names, as recorded ("clip-bpe" when it names none); open it
    /// only through `vocabularyFolder()`, which confines it to the checkpoint's folder.
    public let tokenizer: String
    /// What was assumed while loading (e.g. an activation a PyTorch file does not record), for the user.
    public var notes: [String] = []
    /// The file the weights came from.
    public let checkpoint: URL?

    public init(model: CLIPModel, preprocessing: Preprocessing, tokenizer: String, notes: [String] = [], checkpoint: URL? = nil) {
        self.model = model
        self.preprocessing = preprocessing
        self.tokenizer = tokenizer
        self.notes = notes
        self.checkpoint = checkpoint
    }

    /// The vocabulary folder the checkpoint names, as an absolute path inside the checkpoint's
    /// folder; nil for the bundled CLIP vocabulary. Metadata is untrusted: anything else (an
    /// absolute path, `..`, a symlink out of the folder, a missing folder) is an error.
    public func vocabularyFolder() throws -> String? {
        guard tokenizer != "clip-bpe" else { return nil }
        guard let checkpoint else {
            throw CheckpointError(file: "(in memory)", message: "tokenizer \(tokenizer) has no checkpoint folder to be relative to")
        }
        return try CLIPModel.resolveTokenizer(tokenizer, besides: checkpoint)
    }
}

extension CLIPModel {
    /// Writes the weights as safetensors with open_clip's keys (or Hugging Face's, plus a
    /// `config.json` beside them), atomically, with config, activation, preprocessing and
    /// tokenizer in `__metadata__`; `floats` F16/BF16 halves the file (loading widens it again).
    public func save(
        to url: URL, preprocessing: Preprocessing? = nil, tokenizer: String = "clip-bpe",
        layout: CheckpointLayout = .openCLIP, extraMetadata: [String: String] = [:],
        extraTensors: [String: Tensor] = [:], floats: SafetensorsFloat = .f32
    ) throws {
        let prep = preprocessing ?? Preprocessing(imageSize: config.vision.imageSize)
        var metadata = extraMetadata
        metadata["format"] = "pt"
        metadata[MetadataKey.config] = config.jsonString
        metadata[MetadataKey.activation] = config.quickGelu ? "quick_gelu" : "gelu"
        metadata[MetadataKey.preprocessing] = String(decoding: try JSONEncoder.sorted.encode(prep), as: UTF8.self)
        metadata[MetadataKey.tokenizer] = tokenizer
        var tensors = stateDict()
        if layout == .huggingFace {
            guard let vision = config.vision.transformer else {
                throw CheckpointError(file: url.path, message: "Hugging Face's CLIPModel has no ResNet image tower; save it in open_clip's layout")
            }
            tensors = try HuggingFaceLayout.fromOpenCLIP(tensors, source: url.path)
            let hfConfig = HuggingFaceLayout.configJSON(for: config, vision: vision)
            try AtomicFile.write(hfConfig, to: url.deletingLastPathComponent().appendingPathComponent("config.json").path)
        }
        tensors.merge(extraTensors) { own, _ in own }
        try Safetensors(tensors: tensors, metadata: metadata).write(to: url, floats: floats)
    }

    /// Loads a model from a checkpoint file or folder, strictly, never executing anything in it:
    ///
    /// - files: safetensors, `torch.save` zips (`.pt`, `.bin`, `.pth`; `state_dict`/`model`
    ///   wrappers and DDP's `module.` unwrapped as open_clip does, optimizer state passed over),
    ///   TorchScript archives (OpenAI's `ViT-B-32.pt`), in open_clip's, OpenAI's or Hugging
    ///   Face's `CLIPModel` layout;
    /// - folders: an open_clip hub folder, a transformers folder, an mm run folder (`CheckpointFolder`).
    ///
    /// The config is, in order: `config`; the folder's; the file's metadata; an open_clip run's
    /// `params.txt` (model name, forced QuickGELU); inferred from the shapes (OpenAI archives with
    /// QuickGELU; other PyTorch files as open_clip's default GELU, with a note). Every shape is checked against the config before the model is allocated,
    /// and every weight must be finite.
    public static func load(from url: URL, config: CLIPConfig? = nil) throws -> LoadedModel {
        var isDirectory: ObjCBool = false
        var folder: CheckpointFolder?
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            folder = try CheckpointFolder(url)
        }
        var weights = try WeightFile.open(folder?.weights ?? url)
        let file = weights.path
        var notes: [String] = []

        // Wrappers: a training run's optimizer state is not part of the model.
        weights.rekey { $0.hasPrefix("optimizer.") ? nil : $0 }
        for prefix in ["state_dict.", "module."] where !weights.entries.isEmpty && weights.entries.keys.allSatisfy({ $0.hasPrefix(prefix) }) {
            weights.rekey { String($0.dropFirst(prefix.count)) }
        }
        if weights.format == .torchScript { weights.rekey(OpenAILayout.openCLIPKey) }
        let layout: CheckpointLayout =
            weights.entries.keys.contains { $0.hasPrefix("vision_model.") || $0.hasPrefix("text_model.") }
            ? .huggingFace : .openCLIP

        let meta = weights.metadata
        let resolved: CLIPConfig
        let configSource: String
        if let config {
            (resolved, configSource) = (config, "the given config")
        } else if let c = folder?.config {
            (resolved, configSource) = (c, folder!.configFile!)
        } else if let json = meta[MetadataKey.config] {
            resolved = try CLIPConfig(json: Data(json.utf8), source: "\(file) (metadata)")
            configSource = "\(file) (metadata)"
        } else if layout == .huggingFace {
            resolved = try HuggingFaceLayout.config(besides: URL(fileURLWithPath: file))
            configSource = URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent("config.json").path
        } else if weights.format == .safetensors {
            throw CheckpointError(file: file, message: "no model config in the file's metadata; name the model (e.g. ViT-B-32) or give its config")
        } else if weights.format == .torch, let run = CheckpointFolder.openCLIPRun(besides: URL(fileURLWithPath: file)) {
            // An open_clip training run: its params.txt names the model (and any forced QuickGELU).
            let quick = run.forceQuickGelu || run.model.hasSuffix("-quickgelu")
            if CLIPConfig.bundledNames.contains(run.model) {
                resolved = try CLIPConfig(named: run.model).updating(run.forceQuickGelu ? ["quick_gelu": true] : [:])
            } else {
                resolved = try OpenAILayout.inferConfig(weights.entries.mapValues(\.shape), quickGelu: quick, source: file)
            }
            configSource = "the run's params.txt (model \(run.model))"
        } else {
            let quick = weights.format == .torchScript
            resolved = try OpenAILayout.inferConfig(weights.entries.mapValues(\.shape), quickGelu: quick, source: file)
            configSource = "\(file) (inferred from its shapes)"
            if !quick {
                notes.append(
                    "\(file) records no config: inferred from its shapes, with GELU (open_clip's default; a QuickGELU model needs a -quickgelu config)"
                )
            }
        }
        if let recorded = meta[MetadataKey.activation], recorded != (resolved.quickGelu ? "quick_gelu" : "gelu") {
            throw CheckpointError(
                file: file,
                message:
                    "weights were trained with \(recorded) but the config (\(configSource)) uses \(resolved.quickGelu ? "quick_gelu" : "gelu"); pick the matching config (e.g. a -quickgelu variant)"
            )
        }

        // No allocation before the file is known to hold about what the config implies (the
        // slack lets a file missing a few keys reach the exact per-key report below).
        let held = weights.entries.values.filter(\.isFloat).reduce(0) { $0 + $1.count }
        guard resolved.parameterCount <= held + held / 8 + (1 << 20) else {
            throw CheckpointError(
                file: file,
                message: "the config (\(configSource)) implies \(resolved.parameterCount) parameters but the file holds only \(held) float values")
        }
        let model = CLIPModel(resolved, initialise: false)
        do {
            if layout == .huggingFace {
                try model.load(try HuggingFaceLayout.toOpenCLIP(try weights.tensors(), source: file))
            } else {
                try fill(model, from: weights)
            }
        } catch let error as LoadError {
            throw CheckpointError(file: file, message: "does not fit the config (\(configSource)): \(error)")
        }
        for (key, p) in model.namedParameters() {
            if let bad = firstNonFinite(p.data, p.count) {
                throw CheckpointError(file: file, message: "tensor \(key) holds \(p.data[bad]) at index \(bad); weights must be finite")
            }
        }

        var prep = Preprocessing(imageSize: resolved.vision.imageSize)
        if let p = folder?.preprocessing {
            prep = p
        } else if let json = meta[MetadataKey.preprocessing] {
            do {
                prep = try JSONDecoder().decode(Preprocessing.self, from: Data(json.utf8))
            } catch {
                throw CheckpointError(file: file, message: "unreadable \(MetadataKey.preprocessing) metadata: \(error)")
            }
        }
        try prep.validate(source: folder?.configFile ?? file)
        return LoadedModel(
            model: model, preprocessing: prep, tokenizer: meta[MetadataKey.tokenizer] ?? "clip-bpe", notes: notes,
            checkpoint: URL(fileURLWithPath: file))
    }

    /// Reads each parameter straight into the model, after checking every key and shape (all
    /// problems at once, as `Module.load` reports them).
    private static func fill(_ model: CLIPModel, from weights: WeightFile) throws {
        let own = model.namedParameters()
        var problems: [LoadError.Problem] = []
        for (key, p) in own {
            guard let e = weights.entries[key] else { problems.append(.missing(key: key, expected: p.shape)); continue }
            guard e.isFloat || key.hasSuffix(Self.batchCounter) else {
                throw CheckpointError(file: weights.path, message: "tensor \(key) holds integers, not weights")
            }
            if e.shape != p.shape { problems.append(.shapeMismatch(key: key, expected: p.shape, found: e.shape)) }
        }
        let known = Set(own.map(\.key))
        for key in weights.entries.keys.sorted() where !known.contains(key) {
            problems.append(.unexpected(key: key, shape: weights.entries[key]!.shape))
        }
        guard problems.isEmpty else { throw LoadError(problems: problems) }
        for (key, p) in own {
            let e = weights.entries[key]!
            if e.isFloat { try e.read(p.data) }  // PyTorch's int64 batch counter changes no output: left at 0
        }
    }

    /// BatchNorm2d's `num_batches_tracked`, an int64 in PyTorch's files (mm keeps it as a float).
    private static let batchCounter = ".num_batches_tracked"

    /// The tokenizer a checkpoint names: the bundled "clip-bpe", or a vocabulary folder given
    /// relative to the checkpoint's own folder and inside it. Metadata is untrusted: an absolute
    /// path, `..`, or a symlink out of the folder is refused rather than opened.
    static func resolveTokenizer(_ name: String, besides checkpoint: URL) throws -> String {
        let file = checkpoint.path
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !name.hasPrefix("/"), !name.isEmpty, name.utf8.count <= 1024, !name.contains("\0"),
            parts.allSatisfy({ !$0.isEmpty && $0 != ".." && $0 != "." })
        else {
            throw CheckpointError(
                file: file, message: "its tokenizer metadata \"\(name.prefix(200))\" is neither clip-bpe nor a folder relative to the checkpoint")
        }
        let base = checkpoint.deletingLastPathComponent().resolvingSymlinksInPath()
        let target = base.appendingPathComponent(name).resolvingSymlinksInPath()
        var isDirectory: ObjCBool = false
        guard target.path.hasPrefix(base.path + "/"), FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory),
            isDirectory.boolValue
        else {
            throw CheckpointError(file: file, message: "its tokenizer \"\(name.prefix(200))\" is not a vocabulary folder inside \(base.path)")
        }
        return target.path
    }
}

/// The first index whose value is NaN or ±infinity.
public func firstNonFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Int? {
    // Fast pass: a sum of x·0 is NaN exactly when some x is NaN or infinite.
    var lanes = SIMD16<Float>(repeating: 0)
    var i = 0
    while i + 16 <= n {
        lanes += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self) * 0
        i += 16
    }
    var acc = lanes.sum()
    while i < n { acc += p[i] * 0; i += 1 }
    guard acc.isNaN else { return nil }
    return (0..<n).first { !p[$0].isFinite }
}

extension Preprocessing {
    /// mm's eval transform implements open_clip's default (shortest side, bicubic): other
    /// settings would silently give other numbers, so they are refused.
    func validate(source: String) throws {
        guard resizeMode == "shortest", interpolation == "bicubic" else {
            throw CheckpointError(
                file: source, message: "preprocessing \(resizeMode)/\(interpolation) is not supported (mm implements shortest/bicubic)")
        }
        guard imageSize > 0, imageSize <= 1 << 13, mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 && $0.isFinite }),
            mean.allSatisfy(\.isFinite)
        else {
            throw CheckpointError(file: source, message: "preprocessing has an invalid size, mean or std")
        }
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
