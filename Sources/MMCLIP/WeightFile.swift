import Foundation
import MMFoundation
import MMTensor

/// The tensors of one checkpoint file — safetensors, a `torch.save` zip or a TorchScript archive,
/// recognised by their first bytes — by key, each read on demand into a float32 buffer the caller
/// owns, so that a model is filled without a second copy of its weights.
struct WeightFile {
    enum Format: String { case safetensors, torch = "PyTorch checkpoint", torchScript = "TorchScript archive" }

    struct Entry {
        let shape: [Int]
        let isFloat: Bool
        /// Fills `shape.reduce(1, *)` floats.
        let read: (UnsafeMutablePointer<Float>) throws -> Void
        var count: Int { shape.reduce(1, *) }
    }

    let path: String
    let format: Format
    var entries: [String: Entry]
    /// safetensors' `__metadata__` (empty for PyTorch files).
    let metadata: [String: String]

    static func open(_ url: URL) throws -> WeightFile {
        let file = try ReadableFile.checkpoint(url.path)
        let magic = try file.bytes(Int(min(file.size, 4)), at: 0)
        if magic == [0x50, 0x4B, 0x03, 0x04] {
            let archive = try TorchArchive(file)
            var entries: [String: Entry] = [:]
            for (key, t) in archive.tensors {
                entries[key] = Entry(shape: t.shape, isFloat: t.storage.type.isFloat) { try archive.read(key, into: $0) }
            }
            return WeightFile(path: url.path, format: archive.isTorchScript ? .torchScript : .torch, entries: entries, metadata: [:])
        }
        if magic.first == 0x80, magic.count > 1, magic[1] <= 5 {
            throw CheckpointError(
                file: url.path,
                message:
                    "a bare pickle (torch.save before PyTorch 1.6, or not a checkpoint); mm reads the zip format of torch.save ≥ 1.6 (re-save it with a current torch)"
            )
        }
        let reader: SafetensorsReader
        do {
            reader = try SafetensorsReader(contentsOf: url)
        } catch let error as SafetensorsError {
            if case .headerLength(_, let length, let size) = error {  // the first 8 bytes are no header length
                throw CheckpointError(
                    file: url.path,
                    message:
                        "neither safetensors nor a PyTorch checkpoint (no zip signature; as safetensors its header would be \(length) bytes in a \(size)-byte file)"
                )
            }
            throw error
        }
        var entries: [String: Entry] = [:]
        for e in reader.entries {
            let key = e.key
            entries[key] = Entry(shape: e.shape, isFloat: e.isFloat) { try reader.readFloats(key, into: $0) }
        }
        return WeightFile(path: url.path, format: .safetensors, entries: entries, metadata: reader.metadata)
    }

    /// Renames keys (nil drops one).
    mutating func rekey(_ rename: (String) -> String?) {
        var out: [String: Entry] = [:]
        for (k, e) in entries { if let n = rename(k) { out[n] = e } }
        entries = out
    }

    /// Every float tensor, materialised (for layouts that must be rearranged before loading).
    func tensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, e) in entries where e.isFloat {
            let t = Tensor.zeros(e.shape)
            try e.read(t.data)
            out[k] = t
        }
        return out
    }
}
