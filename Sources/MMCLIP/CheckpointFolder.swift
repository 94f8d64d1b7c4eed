import Foundation
import MMFoundation

/// What `-c DIR` means, recognised with no flags: an open_clip hub folder
/// (`open_clip_config.json` + weights), a transformers folder (`config.json` + `model.safetensors`
/// or `pytorch_model.bin`), or an mm run folder (its `checkpoints/best.safetensors`, the epoch
/// with the lowest validation loss, else its latest `checkpoints/epoch_N.safetensors`).
struct CheckpointFolder {
    let weights: URL
    /// The model config the folder states, and the file it came from.
    let config: CLIPConfig?
    let configFile: String?
    let preprocessing: Preprocessing?

    /// open_clip's preference among the files it finds in a folder.
    static let openCLIPWeights = [
        "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
        "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth"
    ]
    static let transformersWeights = ["model.safetensors", "pytorch_model.bin"]
    /// What an mm run keeps of its best epoch (by validation loss) in `checkpoints/`.
    static let bestCheckpoint = "best.safetensors"

    init(_ dir: URL) throws {
        let fm = FileManager.default
        func exists(_ name: String) -> URL? {
            let u = dir.appendingPathComponent(name)
            return fm.fileExists(atPath: u.path) ? u : nil
        }
        if let configURL = exists("open_clip_config.json") {
            guard let w = Self.openCLIPWeights.lazy.compactMap(exists).first else {
                throw CheckpointError(
                    file: dir.path, message: "an open_clip folder without weights (\(Self.openCLIPWeights.joined(separator: ", ")))")
            }
            let top = try Self.jsonObject(configURL)
            guard let model = top["model_cfg"] as? [String: Any] else {
                throw CheckpointError(file: configURL.path, message: "no model_cfg object")
            }
            weights = w
            configFile = configURL.path
            config = try CLIPConfig(json: try JSONSerialization.data(withJSONObject: model), source: configURL.path + " model_cfg")
            preprocessing = try Self.preprocessing(top["preprocess_cfg"], imageSize: config!.vision.imageSize, file: configURL.path)
        } else if let configURL = exists("config.json"), let w = Self.transformersWeights.lazy.compactMap(exists).first {
            weights = w
            configFile = configURL.path
            config = try HuggingFaceLayout.config(besides: w)
            preprocessing = try Self.transformersPreprocessing(exists("preprocessor_config.json"), imageSize: config!.vision.imageSize)
        } else if let chosen = Self.runCheckpoint(dir.appendingPathComponent("checkpoints")) ?? Self.runCheckpoint(dir) {
            weights = chosen
            config = nil
            configFile = nil
            preprocessing = nil
        } else {
            throw CheckpointError(
                file: dir.path,
                message:
                    "a folder that is neither an open_clip hub folder (open_clip_config.json), a transformers folder (config.json + model.safetensors or pytorch_model.bin) nor an mm run folder (checkpoints/epoch_N.safetensors)"
            )
        }
    }

    /// What an open_clip training run's `params.txt` (`<run>/params.txt` beside
    /// `<run>/checkpoints/epoch_N.pt`) says about the model: its name and whether QuickGELU was forced.
    static func openCLIPRun(besides checkpoint: URL) -> (model: String, forceQuickGelu: Bool)? {
        let params = checkpoint.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("params.txt")
        guard let bytes = try? ReadableFile(params.path, maxSize: 1 << 20).readAll() else { return nil }
        var fields: [String: String] = [:]
        for line in Text.lines(String(decoding: bytes, as: UTF8.self)) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let model = fields["model"], !model.isEmpty else { return nil }
        return (model, fields["force_quick_gelu"] == "True")
    }

    /// A run's checkpoint in `dir`: its best, else its latest epoch.
    static func runCheckpoint(_ dir: URL) -> URL? {
        let best = dir.appendingPathComponent(bestCheckpoint)
        return FileManager.default.fileExists(atPath: best.path) ? best : latestEpoch(dir)
    }

    /// `epoch_N.safetensors` (or `.pt`) with the largest N.
    static func latestEpoch(_ dir: URL) -> URL? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return nil }
        let epochs = names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("epoch_") else { return nil }
            let stem = name.hasSuffix(".safetensors") ? name.dropLast(12) : name.hasSuffix(".pt") ? name.dropLast(3) : nil
            guard let n = stem.flatMap({ Int($0.dropFirst(6)) }) else { return nil }
            return (n, name)
        }
        return epochs.max { $0.0 < $1.0 }.map { dir.appendingPathComponent($0.1) }
    }

    static func jsonObject(_ url: URL) throws -> [String: Any] {
        let file = try ReadableFile.checkpoint(url.path)
        guard file.size <= 16 << 20 else { throw CheckpointError(file: url.path, message: "\(file.size) bytes is too large for a config") }
        guard let top = (try? JSONSerialization.jsonObject(with: Data(try file.bytes(Int(file.size), at: 0)))) as? [String: Any] else {
            throw CheckpointError(file: url.path, message: "not a JSON object")
        }
        return top
    }

    /// open_clip's `preprocess_cfg` (mean, std, interpolation, resize_mode, size) over its defaults.
    static func preprocessing(_ value: Any?, imageSize: Int, file: String) throws -> Preprocessing {
        var p = Preprocessing(imageSize: imageSize)
        guard let cfg = value as? [String: Any] else { return p }
        func triple(_ key: String) throws -> [Float]? {
            guard let v = cfg[key] else { return nil }
            guard let a = v as? [NSNumber], a.count == 3, a.allSatisfy({ $0.floatValue.isFinite }) else {
                throw CheckpointError(file: file, message: "preprocess_cfg.\(key) is not three numbers")
            }
            return a.map(\.floatValue)
        }
        if let m = try triple("mean") { p.mean = m }
        if let s = try triple("std") {
            guard s.allSatisfy({ $0 > 0 }) else { throw CheckpointError(file: file, message: "preprocess_cfg.std must be positive") }
            p.std = s
        }
        if let i = cfg["interpolation"] as? String { p.interpolation = i }
        if let r = cfg["resize_mode"] as? String { p.resizeMode = r }
        if let size = cfg["size"] as? NSNumber, size.intValue != imageSize {
            throw CheckpointError(file: file, message: "preprocess_cfg.size \(size) disagrees with model_cfg.vision_cfg.image_size \(imageSize)")
        }
        return p
    }

    /// transformers' `preprocessor_config.json` (image_mean, image_std, crop_size).
    static func transformersPreprocessing(_ url: URL?, imageSize: Int) throws -> Preprocessing? {
        guard let url else { return nil }
        let top = try jsonObject(url)
        var cfg: [String: Any] = [:]
        cfg["mean"] = top["image_mean"]
        cfg["std"] = top["image_std"]
        if let resample = top["resample"] as? NSNumber {
            cfg["interpolation"] = resample == 3 ? "bicubic" : resample == 2 ? "bilinear" : "resample \(resample)"
        }
        if let crop = top["crop_size"] as? NSNumber { cfg["size"] = crop }
        if let crop = (top["crop_size"] as? [String: Any])?["height"] as? NSNumber { cfg["size"] = crop }
        return try preprocessing(cfg, imageSize: imageSize, file: url.path)
    }
}
