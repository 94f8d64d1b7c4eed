import Foundation

/// A value built by `TorchPickle`: data only. Nothing in a pickle is ever called; the few
/// callables PyTorch checkpoints use are recognised by name and turned into data here.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    case float(Double)
    case string(String)
    case bytes(Int)  // only the length: checkpoints carry no bytes we use
    case tuple([PickleValue])
    case list(PickleBox)
    case dict(PickleBox)
    /// A TorchScript module (`__torch__.…`): its class name and attributes, never its code.
    case object(className: String, attributes: PickleBox)
    /// `persistent_id(('storage', <Type>Storage, key, location, numel))`.
    case storage(TorchStorage)
    case tensor(TorchTensor)
    /// An allowlisted global not yet applied (a constructor, a dtype, a storage type).
    case global(String)
}

/// A list, dict or object's attributes. Boxes are filled while the pickle builds them and frozen
/// when placed inside another value, so nesting depth is known exactly and no cycle can form.
final class PickleBox {
    var items: [PickleValue] = []
    var pairs: [(key: PickleValue, value: PickleValue)] = []
    var depth = 1
    var frozen = false
}

/// A storage of a PyTorch archive: `data/<key>` holding `count` elements of `type`.
struct TorchStorage {
    let type: TorchDType
    let key: String
    let count: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view into a storage.
struct TorchTensor {
    let storage: TorchStorage
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

/// Element types of PyTorch storages (`torch.FloatStorage`, …).
enum TorchDType: String {
    case float32 = "Float", float16 = "Half", bfloat16 = "BFloat16", float64 = "Double"
    case int64 = "Long", int32 = "Int", int16 = "Short", int8 = "Char", uint8 = "Byte", bool = "Bool"

    var size: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    var isFloat: Bool { self == .float32 || self == .float16 || self == .bfloat16 || self == .float64 }
}

/// Why a pickle was refused. The description is one line; the file is added by the caller.
struct PickleError: Error, CustomStringConvertible {
    let offset: Int
    let message: String
    var description: String { "\(message) (pickle byte \(offset))" }
}

/// Interprets the pickle opcodes `torch.save` and `torch.jit.save` emit (protocol 2, plus the
/// protocol-4 framing and short forms) into `PickleValue`s. Globals are checked against an
/// explicit allowlist the moment they are named: `os.system`, `builtins.eval`, any unknown class
/// is an error naming it, before anything else happens. Nothing is executed, imported or written.
struct TorchPickle {
    /// Calls `REDUCE` may make, by global name, and the storage types `persistent_id` may name.
    static let reducers: Set<String> = [
        "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "collections.OrderedDict",
        // TorchScript's typed containers: each returns its first argument unchanged.
        "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensorlist", "torch.jit._pickle.restore_type_tag"
    ]
    /// Deepest nesting of containers accepted (checkpoints nest a handful of levels).
    static let maxDepth = 64

    private let bytes: [UInt8]
    private var pos = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private var start = 0

    /// Runs the pickle to its STOP and returns the value it built.
    static func load(_ bytes: [UInt8]) throws -> PickleValue {
        var p = TorchPickle(bytes: bytes)
        return try p.run()
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ message: String) -> PickleError { PickleError(offset: start, message: message) }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - pos else { throw fail("truncated pickle: needs \(n) more bytes, \(bytes.count - pos) left") }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }

    private mutating func u8() throws -> Int { Int(try take(1).first!) }
    private mutating func le(_ n: Int) throws -> UInt64 {
        try take(n).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    private mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw fail("pickle stack underflow") }
        if let m = marks.last, stack.count < m { throw fail("pickle pops below its mark") }
        return v
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("pickle has no mark to pop to") }
        guard m <= stack.count else { throw fail("pickle stack underflow") }
        defer { stack.removeSubrange(m...) }
        return Array(stack[m...])
    }

    private mutating func text(_ n: Int) throws -> String {
        guard let s = String(validating: try take(n), as: UTF8.self) else { throw fail("string is not UTF-8") }
        return s
    }

    private mutating func run() throws -> PickleValue {
        while true {
            start = pos
            let op = try u8()
            switch op {
            case 0x80: _ = try u8()  // PROTO
            case 0x95: _ = try take(8)  // FRAME
            case 0x2E:  // STOP
                guard stack.count == 1, marks.isEmpty else { throw fail("pickle stops with \(stack.count) values on its stack") }
                return stack[0]
            case 0x28: marks.append(stack.count)  // MARK
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32:  // DUP
                guard let top = stack.last else { throw fail("pickle stack underflow") }
                stack.append(top)
            case 0x4E: stack.append(.none)  // NONE
            case 0x88: stack.append(.bool(true))  // NEWTRUE
            case 0x89: stack.append(.bool(false))  // NEWFALSE
            case 0x4B: stack.append(.int(Int64(try u8())))  // BININT1
            case 0x4D: stack.append(.int(Int64(try le(2))))  // BININT2
            case 0x4A: stack.append(.int(Int64(Int32(truncatingIfNeeded: try le(4)))))  // BININT
            case 0x8A, 0x8B:  // LONG1, LONG4
                let n = op == 0x8A ? try u8() : Int(try le(4))
                guard n <= 8 else { throw fail("integer of \(n) bytes is too large") }
                let raw = try take(n)
                var v: UInt64 = raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }
                if n > 0, n < 8, raw.last! & 0x80 != 0 { v |= ~0 << UInt64(8 * n) }  // sign-extend
                stack.append(.int(Int64(bitPattern: v)))
            case 0x47: stack.append(.float(Double(bitPattern: try le(8).byteSwapped)))  // BINFLOAT (big-endian)
            case 0x58: stack.append(.string(try text(Int(try le(4)))))  // BINUNICODE
            case 0x8C: stack.append(.string(try text(try u8())))  // SHORT_BINUNICODE
            case 0x8D:  // BINUNICODE8
                let n = try le(8)
                guard n <= UInt64(bytes.count) else { throw fail("truncated pickle: string of \(n) bytes") }
                stack.append(.string(try text(Int(n))))
            case 0x55, 0x54, 0x43, 0x42:  // SHORT_BINSTRING, BINSTRING, SHORT_BINBYTES, BINBYTES
                let n = op == 0x55 || op == 0x43 ? try u8() : Int(try le(4))
                let raw = try take(n)
                stack.append(op == 0x55 || op == 0x54 ? .string(String(decoding: raw, as: UTF8.self)) : .bytes(n))
            case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
            case 0x85, 0x86, 0x87:  // TUPLE1/2/3
                var items: [PickleValue] = []
                for _ in 0..<(op - 0x84) { items.insert(try pop(), at: 0) }
                stack.append(try tuple(items))
            case 0x74: stack.append(try tuple(try popMark()))  // TUPLE
            case 0x5D: stack.append(.list(PickleBox()))  // EMPTY_LIST
            case 0x7D: stack.append(.dict(PickleBox()))  // EMPTY_DICT
            case 0x6C:  // LIST
                let box = PickleBox()
                try append(try popMark(), to: box)
                stack.append(.list(box))
            case 0x64:  // DICT
                let box = PickleBox()
                try setItems(try popMark(), in: box)
                stack.append(.dict(box))
            case 0x61:  // APPEND
                let item = try pop()
                try append([item], to: try containerOnTop(list: true))
            case 0x65:  // APPENDS
                let items = try popMark()
                try append(items, to: try containerOnTop(list: true))
            case 0x73:  // SETITEM
                let value = try pop(), key = try pop()
                try setItems([key, value], in: try containerOnTop(list: false))
            case 0x75:  // SETITEMS
                let items = try popMark()
                try setItems(items, in: try containerOnTop(list: false))
            case 0x71: try memoize(Int(try u8()))  // BINPUT
            case 0x72: try memoize(Int(try le(4)))  // LONG_BINPUT
            case 0x94: try memoize(memo.count)  // MEMOIZE
            case 0x68, 0x6A:  // BINGET, LONG_BINGET
                let index = op == 0x68 ? try u8() : Int(try le(4))
                guard let v = memo[index] else { throw fail("pickle reads memo slot \(index), never written") }
                stack.append(v)
            case 0x63:  // GLOBAL "module\nname\n"
                stack.append(try global(module: try line(), name: try line()))
            case 0x93:  // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw fail("STACK_GLOBAL without two strings")
                }
                stack.append(try global(module: module, name: name))
            case 0x51:  // BINPERSID
                stack.append(try persistent(try pop()))
            case 0x52:  // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args))
            case 0x81:  // NEWOBJ
                let args = try pop(), cls = try pop()
                guard case .global(let name) = cls, name.hasPrefix("__torch__.") else {
                    throw fail("NEWOBJ of \(describe(cls)) is not allowed")
                }
                guard case .tuple(let a) = args, a.isEmpty else { throw fail("NEWOBJ \(name) with arguments is not allowed") }
                stack.append(.object(className: name, attributes: PickleBox()))
            case 0x62:  // BUILD
                let state = try pop()
                // An OrderedDict's instance state (`state_dict()._metadata`): data we do not use.
                if case .dict? = stack.last { continue }
                guard case .object(let name, let box)? = stack.last else {
                    throw fail("BUILD on \(stack.last.map(describe) ?? "nothing") is not allowed (only TorchScript modules carry state)")
                }
                guard case .dict(let attributes) = state else { throw fail("BUILD of \(name) with a non-dict state") }
                var flat: [PickleValue] = []
                for (k, v) in attributes.pairs { flat += [k, v] }
                try setItems(flat, in: box)
            default:
                throw fail(String(format: "unsupported pickle opcode 0x%02x", op))
            }
        }
    }

    private mutating func line() throws -> String {
        guard let nl = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("truncated pickle: GLOBAL without newline") }
        let s = try text(nl - pos)
        pos += 1
        return s
    }

    private mutating func memoize(_ index: Int) throws {
        guard let top = stack.last else { throw fail("pickle memoizes an empty stack") }
        memo[index] = top
    }

    /// The allowlist. Storage types, dtypes and the reducers are data until REDUCE/BINPERSID use
    /// them; TorchScript module classes only ever become attribute bags.
    private func global(module: String, name: String) throws -> PickleValue {
        let full = "\(module).\(name)"
        if Self.reducers.contains(full) { return .global(full) }
        if module == "torch", name.hasSuffix("Storage"), TorchDType(rawValue: String(name.dropLast(7))) != nil { return .global(full) }
        if module == "torch", ["float32", "float16", "bfloat16", "float64", "int64", "int32", "bool"].contains(name) { return .global(full) }
        if module.hasPrefix("__torch__"), !name.isEmpty { return .global(module + "." + name) }
        throw fail("refusing global \(full): not a PyTorch tensor, storage or container")
    }

    private func tuple(_ items: [PickleValue]) throws -> PickleValue {
        let depth = 1 + (items.map(Self.depth).max() ?? 0)
        guard depth <= Self.maxDepth else { throw fail("values nest deeper than \(Self.maxDepth)") }
        for item in items { Self.freeze(item) }
        return .tuple(items)
    }

    private static func depth(_ v: PickleValue) -> Int {
        switch v {
        case .tuple(let items): 1 + (items.map(depth).max() ?? 0)
        case .list(let b), .dict(let b), .object(_, let b): b.depth
        default: 1
        }
    }

    private static func freeze(_ v: PickleValue) {
        switch v {
        case .list(let b), .dict(let b), .object(_, let b): b.frozen = true
        default: break
        }
    }

    private func containerOnTop(list: Bool) throws -> PickleBox {
        switch stack.last {
        case .list(let b)? where list: return b
        case .dict(let b)? where !list: return b
        default: throw fail("\(list ? "APPEND" : "SETITEM") on \(stack.last.map(describe) ?? "nothing")")
        }
    }

    private func admit(_ items: [PickleValue], into box: PickleBox) throws {
        guard !box.frozen else { throw fail("pickle modifies a container after using it") }
        for item in items {
            if case .list(let b) = item, b === box { throw fail("a container cannot hold itself") }
            if case .dict(let b) = item, b === box { throw fail("a container cannot hold itself") }
            if case .object(_, let b) = item, b === box { throw fail("a container cannot hold itself") }
            let d = Self.depth(item) + 1
            guard d <= Self.maxDepth else { throw fail("values nest deeper than \(Self.maxDepth)") }
            box.depth = max(box.depth, d)
            Self.freeze(item)
        }
    }

    private func append(_ items: [PickleValue], to box: PickleBox) throws {
        try admit(items, into: box)
        box.items += items
    }

    private func setItems(_ flat: [PickleValue], in box: PickleBox) throws {
        guard flat.count % 2 == 0 else { throw fail("SETITEMS with an odd number of values") }
        try admit(flat, into: box)
        for i in stride(from: 0, to: flat.count, by: 2) {
            switch flat[i] {
            case .string, .int, .bool, .none, .float, .tuple: break
            default: throw fail("dict key \(describe(flat[i])) is not a plain value")
            }
            box.pairs.append((flat[i], flat[i + 1]))
        }
    }

    /// `('storage', torch.<T>Storage, key, location, numel)`; anything else is refused.
    private func persistent(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let t) = pid, t.count == 5, case .string("storage") = t[0],
            case .global(let type) = t[1], type.hasPrefix("torch."), type.hasSuffix("Storage"),
            let dtype = TorchDType(rawValue: String(type.dropFirst(6).dropLast(7))),
            case .string(let key) = t[2], case .int(let count) = t[4]
        else {
            throw fail("persistent id \(describe(pid)) is not a PyTorch storage reference")
        }
        guard count >= 0, count < 1 << 48 else { throw fail("storage \(key) claims \(count) elements") }
        return .storage(TorchStorage(type: dtype, key: key, count: Int(count)))
    }

    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let name) = callable, Self.reducers.contains(name) else {
            throw fail("refusing to call \(describe(callable))")
        }
        guard case .tuple(let a) = args else { throw fail("\(name) called without an argument tuple") }
        switch name {
        case "collections.OrderedDict":
            guard a.isEmpty else { throw fail("OrderedDict with arguments is not supported") }
            return .dict(PickleBox())
        case _ where name.hasPrefix("torch.jit._pickle."):
            guard let first = a.first else { throw fail("\(name) without an argument") }
            return first
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let first = a.first, case .tensor = first else { throw fail("\(name) without a tensor") }
            return first
        default:  // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) / _rebuild_tensor
            guard a.count >= 4, case .storage(let storage) = a[0], case .int(let offset) = a[1],
                let shape = ints(a[2]), let strides = ints(a[3]), shape.count == strides.count
            else {
                throw fail("\(name) with arguments \(describe(args)) does not describe a tensor")
            }
            return .tensor(try view(storage, offset: offset, shape: shape, strides: strides))
        }
    }

    private func ints(_ v: PickleValue) -> [Int64]? {
        guard case .tuple(let items) = v else { return nil }
        var out: [Int64] = []
        for item in items {
            guard case .int(let n) = item else { return nil }
            out.append(n)
        }
        return out
    }

    /// Checks that every element the view addresses lies inside its storage.
    private func view(_ s: TorchStorage, offset: Int64, shape: [Int64], strides: [Int64]) throws -> TorchTensor {
        guard shape.count <= 16 else { throw fail("tensor of \(shape.count) dimensions") }
        guard offset >= 0, offset <= Int64(s.count) else { throw fail("storage offset \(offset) outside storage \(s.key) of \(s.count) elements") }
        var count: Int64 = 1, last = offset
        for (n, st) in zip(shape, strides) {
            guard n >= 0, n < 1 << 40, st >= 0, st < 1 << 48 else { throw fail("tensor size \(shape) / stride \(strides) out of range") }
            let (c, o) = count.multipliedReportingOverflow(by: n)
            guard !o, c < 1 << 48 else { throw fail("tensor size \(shape) is too large") }
            count = c
            if n > 0 { last += (n - 1) * st }
        }
        guard count == 0 || last < Int64(s.count) else {
            throw fail("tensor view size \(shape) stride \(strides) offset \(offset) reads past storage \(s.key) of \(s.count) elements")
        }
        return TorchTensor(storage: s, offset: Int(offset), shape: shape.map(Int.init), strides: strides.map(Int.init))
    }

    func describe(_ v: PickleValue) -> String {
        switch v {
        case .global(let name): return name
        case .none: return "None"
        case .int(let n): return "\(n)"
        case .string(let s): return "'\(s.prefix(40))'"
        case .tuple(let items): return "(" + items.prefix(6).map(describe).joined(separator: ", ") + ")"
        case .object(let name, _): return "object of \(name)"
        case .tensor: return "a tensor"
        case .storage: return "a storage"
        case .dict: return "a dict"
        case .list: return "a list"
        case .bool(let b): return b ? "True" : "False"
        case .float(let f): return "\(f)"
        case .bytes(let n): return "\(n) bytes"
        }
    }
}
