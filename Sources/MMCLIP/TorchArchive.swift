import Foundation

#if !MM_FUZZ_STANDALONE  // the fuzz harness compiles this file alone (tools/fuzz/harnesses/torch_checkpoint.swift)
    import MMTensor
#endif

/// A PyTorch checkpoint: the zip `torch.save` writes (`<name>/data.pkl`, `<name>/data/<key>`
/// storages, `byteorder`, `version`) or the archive `torch.jit.save` writes (the same plus
/// `constants.pkl` and `code/`, which is never read, let alone run). The pickles are interpreted
/// by `TorchPickle` (an allowlist, nothing executed); tensors are strided views into storages,
/// read on demand straight into the caller's float32 buffer.
final class TorchArchive {
    let zip: StoredZip
    /// The archive's folder name (`archive` for torch.save, the file's stem for older writers).
    let prefix: String
    /// Written by `torch.jit.save`: the root is a module object, not a dict.
    let isTorchScript: Bool
    /// The state dict: tensors by key, after unwrapping as open_clip's `load_state_dict` does.
    let tensors: [String: TorchTensor]

    /// Pickles larger than this are not checkpoints (ViT-L's state dict pickles to ~60 KB).
    static let maxPickle: UInt64 = 256 << 20

    var path: String { zip.file.path }

    init(_ file: ReadableFile) throws {
        zip = try StoredZip(file)
        let path = file.path
        func bad(_ message: String) -> CheckpointError { CheckpointError(file: path, message: message) }
        let roots = zip.members.keys.filter { $0.hasSuffix("/data.pkl") && $0.split(separator: "/", omittingEmptySubsequences: false).count == 2 }
        guard roots.count == 1, let root = roots.first else {
            throw bad(
                roots.isEmpty
                    ? "a zip archive, but not a PyTorch checkpoint (no <name>/data.pkl)"
                    : "a zip archive with \(roots.count) PyTorch checkpoints in it (\(roots.sorted().joined(separator: ", ")))")
        }
        prefix = String(root.dropLast("/data.pkl".count))
        if let order = zip.members[prefix + "/byteorder"] {
            let text = String(decoding: try zip.contents(of: order, limit: 64), as: UTF8.self)
            guard text == "little" else {
                throw bad("written on a \(text)-endian machine; mm reads little-endian archives only (re-save it on a little-endian machine)")
            }
        }
        isTorchScript = zip.members[prefix + "/constants.pkl"] != nil
        let value: PickleValue
        do {
            value = try TorchPickle.load(try zip.contents(of: zip.members[root]!, limit: Self.maxPickle))
            if isTorchScript {  // validated like data.pkl, though its tensors are not parameters
                _ = try TorchPickle.load(try zip.contents(of: zip.members[prefix + "/constants.pkl"]!, limit: Self.maxPickle))
            }
        } catch let error as PickleError {
            throw bad("\(error)")
        }
        var found: [String: TorchTensor] = [:]
        if isTorchScript {
            guard case .object = value else { throw bad("TorchScript archive whose data.pkl is not a module") }
            try Self.collect(value, prefix: "", into: &found, file: path)
        } else {
            try Self.collect(try Self.stateDict(value, file: path), prefix: "", into: &found, file: path)
        }
        // DistributedDataParallel's wrapper, as open_clip strips it.
        if !found.isEmpty, found.keys.allSatisfy({ $0.hasPrefix("module.") }) {
            found = Dictionary(uniqueKeysWithValues: found.map { (String($0.key.dropFirst(7)), $0.value) })
        }
        guard !found.isEmpty else { throw bad("a PyTorch checkpoint without tensors") }
        // Every storage must be in the archive and hold what the pickle claims, before any
        // shape from the pickle sizes anything.
        for (key, t) in found.sorted(by: { $0.key < $1.key }) {
            let name = "\(prefix)/data/\(t.storage.key)"
            guard let member = zip.members[name] else { throw bad("tensor \(key): its storage \(name) is missing from the archive") }
            let needed = UInt64(t.storage.count) * UInt64(t.storage.type.size)
            guard member.size >= needed else {
                throw bad(
                    "tensor \(key): its storage \(name) holds \(member.size) bytes, fewer than the \(needed) of \(t.storage.count) \(t.storage.type.rawValue) elements"
                )
            }
        }
        tensors = found
    }

    /// The state dict inside a `torch.save` root: `state_dict` (open_clip's training
    /// checkpoints), `model` (timm/EMA-style wrappers), or the root itself.
    private static func stateDict(_ root: PickleValue, file: String) throws -> PickleValue {
        guard case .dict(let box) = root else {
            throw CheckpointError(file: file, message: "the pickled root is not a dict of tensors")
        }
        for name in ["state_dict", "model"] {
            if let v = box.pairs.first(where: { if case .string(name) = $0.key { true } else { false } })?.value,
                case .dict = v
            {
                return v
            }
        }
        return root
    }

    /// Tensors by dotted key; in TorchScript modules, attributes that are modules recurse and
    /// non-tensor attributes (`training`, ints, None) are passed over. `attn_mask` is a tensor
    /// attribute of OpenAI's blocks, not a parameter (its `state_dict()` does not hold it).
    private static func collect(_ value: PickleValue, prefix: String, into out: inout [String: TorchTensor], file: String) throws {
        let box: PickleBox
        switch value {
        case .dict(let b), .object(_, let b): box = b
        default: return
        }
        let isModule: Bool
        if case .object = value { isModule = true } else { isModule = false }
        for (k, v) in box.pairs {
            let name: String
            switch k {
            case .string(let s): name = s
            case .int(let n): name = String(n)
            default: continue
            }
            let key = prefix + name
            switch v {
            case .tensor(let t):
                if isModule && name == "attn_mask" { continue }
                guard out.updateValue(t, forKey: key) == nil else {
                    throw CheckpointError(file: file, message: "tensor \(key) appears twice")
                }
            case .object where isModule:
                try collect(v, prefix: key + ".", into: &out, file: file)
            default:
                if !isModule, case .dict = v {  // a dict of tensors beside the weights (optimizer state): not ours
                    continue
                }
            }
        }
    }

    /// Reads tensor `key` (float storage) into `dst`, widened to float32; views are gathered.
    func read(_ key: String, into dst: UnsafeMutablePointer<Float>) throws {
        guard let t = tensors[key] else { throw CheckpointError(file: path, message: "no tensor \(key)") }
        let s = t.storage
        func bad(_ message: String) -> CheckpointError { CheckpointError(file: path, message: "tensor \(key): \(message)") }
        guard let format = s.type.storedFloat else { throw bad("\(s.type.rawValue) storage is not a float tensor") }
        let memberName = "\(prefix)/data/\(s.key)"
        guard let member = zip.members[memberName] else { throw bad("its storage \(memberName) is missing from the archive") }
        guard member.method == 0 else { throw bad("its storage \(memberName) is compressed") }
        let needed = UInt64(s.count) * UInt64(s.type.size)
        guard member.size >= needed else {
            throw bad("its storage \(memberName) holds \(member.size) bytes, fewer than the \(needed) of \(s.count) \(s.type.rawValue) elements")
        }
        let count = t.shape.reduce(1, *)
        guard count > 0 else { return }
        let size = s.type.size
        // A view whose elements are contiguous is one run of the storage; others are gathered.
        var expected = 1, contiguous = true
        for (n, st) in Swift.zip(t.shape, t.strides).reversed() where n != 1 {
            if st != expected { contiguous = false }
            expected *= n
        }
        var last = t.offset
        for (n, st) in Swift.zip(t.shape, t.strides) where n > 0 { last += (n - 1) * st }
        let span = contiguous ? count : last - t.offset + 1
        let base = member.offset + UInt64(t.offset * size)

        if contiguous && format == .f32 {
            try zip.file.readExactly(into: dst, count: count * 4, at: base)
            return
        }
        let block = contiguous ? min(span, 1 << 16) : span
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: block * size, alignment: 64)
        defer { scratch.deallocate() }
        if contiguous {
            var at = 0
            while at < count {
                let n = min(block, count - at)
                try zip.file.readExactly(into: scratch, count: n * size, at: base + UInt64(at * size))
                format.widen(scratch, into: dst + at, count: n)
                at += n
            }
            return
        }
        let wide = UnsafeMutablePointer<Float>.allocate(capacity: span)
        defer { wide.deallocate() }
        try zip.file.readExactly(into: scratch, count: span * size, at: base)
        format.widen(scratch, into: wide, count: span)
        gather(wide, shape: t.shape, strides: t.strides, into: dst)
    }
}

/// Copies the strided view `src` (offset already applied) into `dst` in row-major order.
private func gather(_ src: UnsafePointer<Float>, shape: [Int], strides: [Int], into dst: UnsafeMutablePointer<Float>) {
    guard let inner = shape.last, let innerStride = strides.last else { dst[0] = src[0]; return }
    let outer = shape.dropLast().reduce(1, *)
    var index = [Int](repeating: 0, count: max(shape.count - 1, 0))
    var from = 0, to = 0
    for _ in 0..<outer {
        for j in 0..<inner { dst[to + j] = src[from + j * innerStride] }
        to += inner
        // Advance the odometer over the outer dimensions.
        var d = index.count - 1
        while d >= 0 {
            index[d] += 1
            from += strides[d]
            if index[d] < shape[d] { break }
            from -= strides[d] * shape[d]
            index[d] = 0
            d -= 1
        }
    }
}

extension TorchDType {
    var storedFloat: StoredFloat? {
        switch self {
        case .float32: .f32
        case .float16: .f16
        case .bfloat16: .bf16
        case .float64: .f64
        default: nil
        }
    }
}
