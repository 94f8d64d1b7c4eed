import Foundation
import MMFoundation

// The format is little-endian and we copy raw bytes straight into tensors.
#if _endian(big)
    #error("safetensors I/O assumes a little-endian host")
#endif

/// The contents of a safetensors file (https://github.com/huggingface/safetensors):
/// an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
/// byte range, then the raw data.
///
/// Reading accepts F32, F16, BF16 and F64 (widened or narrowed to float32) and I32 and I64
/// (checked to fit in Int32). Writing stores float tensors as F32 (or F16/BF16 on request) and ids as I32, laid out as the
/// Python library lays them out, so either side reads the other's files.
public struct Safetensors {
    /// Float tensors by key.
    public var tensors: [String: Tensor]
    /// Integer tensors by key.
    public var ids: [String: IntTensor]
    /// The header's `__metadata__` object.
    public var metadata: [String: String]

    public init(tensors: [String: Tensor] = [:], ids: [String: IntTensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.ids = ids
        self.metadata = metadata
    }

    /// Reads and validates a whole file. Every defect (truncation, a header that lies about
    /// offsets, an unsupported dtype, …) throws a `SafetensorsError` naming the file and key.
    public init(contentsOf url: URL) throws {
        let reader = try SafetensorsReader(contentsOf: url)
        var tensors: [String: Tensor] = [:]
        var ids: [String: IntTensor] = [:]
        tensors.reserveCapacity(reader.entries.count)
        for e in reader.entries {
            if !e.isFloat {
                ids[e.key] = try reader.ids(e.key)
            } else {
                let storage = TensorStorage(count: e.count, zeroed: false)
                try reader.readFloats(e.key, into: storage.base)
                tensors[e.key] = Tensor(shape: e.shape, storage: storage)
            }
        }
        self.init(tensors: tensors, ids: ids, metadata: reader.metadata)
    }

    /// Writes every tensor (F32) and id tensor (I32), each group in key order, with `metadata` as
    /// `__metadata__`. Atomic: the bytes go to a temporary file in the same directory, which is
    /// synced and renamed over `url`, so readers see the old file or the new one, never a mix.
    public func write(to url: URL) throws { try write(to: url, floats: .f32) }

    /// As `write(to:)`, with float tensors stored as `floats` (F16 and BF16 round to nearest even;
    /// a value F16 cannot represent is an error naming its key, not an infinity on disk).
    public func write(to url: URL, floats: SafetensorsFloat) throws {
        let file = url.path
        for key in tensors.keys where ids[key] != nil {
            throw SafetensorsError.duplicateKey(file: file, key: key)
        }
        if tensors["__metadata__"] != nil || ids["__metadata__"] != nil {
            throw SafetensorsError.invalidKey(file: file, key: "__metadata__", reason: "reserved for the metadata object")
        }

        // The Python library's layout: __metadata__ first, then keys by dtype (F32 before I32)
        // and name, their data back to back; so both write the same bytes for the same tensors.
        let keys = tensors.keys.sorted() + ids.keys.sorted()
        var members: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { Text.jsonQuoted($0.key) + ":" + Text.jsonQuoted($0.value) }
            members.append(Text.jsonQuoted("__metadata__") + ":{" + pairs.joined(separator: ",") + "}")
        }
        var offset: UInt64 = 0
        for key in keys {
            let (dtype, shape) = tensors[key].map { (floats.rawValue, $0.shape) } ?? ("I32", ids[key]!.shape)
            let end = offset + UInt64(shape.reduce(1, *) * (tensors[key] == nil ? 4 : floats.size))
            members.append(
                Text.jsonQuoted(key) + ":{\"dtype\":\"\(dtype)\",\"shape\":["
                    + shape.map(String.init).joined(separator: ",")
                    + "],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        let json = "{" + members.joined(separator: ",") + "}"
        // Pad with spaces so the data starts 8-byte aligned, as the Python library does.
        var header = Array(json.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
        var prefix = UInt64(header.count).littleEndian

        // One atomic write: a reader or a crash sees the old file or the new one.
        do {
            try AtomicFile.write(to: file) { out in
                try out.write(&prefix, count: 8)
                try header.withUnsafeBytes { try out.write($0.baseAddress!, count: $0.count) }
                for key in keys {
                    if let t = tensors[key] {
                        if floats == .f32 {
                            try out.write(t.data, count: t.count * 4)
                            continue
                        }
                        var narrow = [UInt16](repeating: 0, count: t.count)
                        if let bad = narrowFloats(t.data, &narrow, t.count, to: floats) {
                            throw SafetensorsError.invalidKey(
                                file: file, key: key,
                                reason: "value \(t.data[bad]) at index \(bad) does not fit in \(floats.rawValue)")
                        }
                        try narrow.withUnsafeBytes { try out.write($0.baseAddress!, count: $0.count) }
                    } else if let i = ids[key] {
                        try i.values.withUnsafeBytes { try out.write($0.baseAddress!, count: $0.count) }
                    }
                }
            }
        } catch let error as FileError {
            throw SafetensorsError.io(file: file, reason: error.reason)
        }
    }
}

/// How `Safetensors.write(to:floats:)` stores float tensors.
public enum SafetensorsFloat: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    var size: Int { self == .f32 ? 4 : 2 }
}

/// A safetensors file whose header has been read and validated, and whose tensors are read on
/// demand, each straight into a buffer the caller owns: loading a model this way holds its
/// weights once (the file's pages stay in the page cache, not in our memory).
public final class SafetensorsReader {
    /// A tensor's key, shape and stored dtype ("F32", "F16", …).
    public struct Entry {
        public let key: String
        public let shape: [Int]
        public var dtype: String { stored.rawValue }
        public var isFloat: Bool { !stored.isInteger }
        fileprivate let stored: SafetensorsDType
        fileprivate let begin: UInt64
        var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    /// In header order.
    public let entries: [Entry]
    public let metadata: [String: String]
    private let index: [String: Int]
    private let fd: SafetensorsFile
    private let dataStart: UInt64

    public init(contentsOf url: URL) throws {
        let file = url.path
        path = file
        let fd = try SafetensorsFile(reading: file)
        self.fd = fd
        let size = fd.size
        guard size >= 8 else { throw SafetensorsError.truncated(file: file, key: nil, needed: 8, size: size) }
        var lengthField: UInt64 = 0
        try fd.read(into: &lengthField, count: 8, at: 0)
        let headerLength = UInt64(littleEndian: lengthField)
        guard headerLength <= safetensorsMaxHeader, headerLength <= size - 8 else {
            throw SafetensorsError.headerLength(file: file, length: headerLength, fileSize: size)
        }
        var header = [UInt8](repeating: 0, count: Int(headerLength))
        try header.withUnsafeMutableBytes { try fd.read(into: $0.baseAddress!, count: $0.count, at: 8) }
        let (parsed, metadata) = try parseHeader(header, file: file)
        try checkLayout(parsed, dataStart: 8 + headerLength, fileSize: size, file: file)
        let entries = parsed.map { Entry(key: $0.key, shape: $0.shape, stored: $0.dtype, begin: $0.begin) }
        dataStart = 8 + headerLength
        self.entries = entries
        self.metadata = metadata
        index = Dictionary(entries.enumerated().map { ($1.key, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public func entry(_ key: String) -> Entry? { index[key].map { entries[$0] } }

    /// Reads float tensor `key` into `dst` (its element count), widening F16/BF16 and narrowing F64.
    public func readFloats(_ key: String, into dst: UnsafeMutablePointer<Float>) throws {
        guard let e = entry(key), e.isFloat else {
            throw SafetensorsError.invalidEntry(file: path, key: key, reason: "no float tensor by this key")
        }
        try fd.readFloats(internalEntry(e), at: Int(dataStart + e.begin), into: dst)
    }

    /// Integer tensor `key` as Int32 ids.
    public func ids(_ key: String) throws -> IntTensor {
        guard let e = entry(key), !e.isFloat else {
            throw SafetensorsError.invalidEntry(file: path, key: key, reason: "no integer tensor by this key")
        }
        let count = e.count
        let values = try [Int32](unsafeUninitializedCapacity: count) { buffer, initialized in
            try fd.readIDs(internalEntry(e), at: Int(dataStart + e.begin), into: buffer.baseAddress)
            initialized = count
        }
        return IntTensor(shape: e.shape, values: values)
    }

    private func internalEntry(_ e: Entry) -> SafetensorsEntry {
        let count = e.count
        return SafetensorsEntry(
            key: e.key, dtype: e.stored, shape: e.shape, count: count, begin: e.begin,
            end: e.begin + UInt64(count * e.stored.size))
    }
}

/// Why a safetensors file could not be read or written. Each description is one line naming the
/// file and, where there is one, the key.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    /// The system refused to open, read, write or rename the file.
    case io(file: String, reason: String)
    /// The file ends before the data it announces (`key` is nil when not even the 8-byte header
    /// length is there); `needed` and `size` are in bytes of the whole file.
    case truncated(file: String, key: String?, needed: UInt64, size: UInt64)
    /// The 8-byte header length points past the end of the file or beyond the format's limit.
    case headerLength(file: String, length: UInt64, fileSize: UInt64)
    /// The header is not UTF-8, not JSON, or not a JSON object.
    case invalidHeader(file: String, reason: String)
    /// A key's entry is malformed: missing or mistyped `dtype`, `shape` or `data_offsets`, or a
    /// non-string value in `__metadata__`.
    case invalidEntry(file: String, key: String, reason: String)
    /// The same key appears twice (in the header, or in both `tensors` and `ids` on write).
    case duplicateKey(file: String, key: String)
    /// A dtype mm does not read.
    case unsupportedDType(file: String, key: String, dtype: String)
    /// The byte range of `key` does not hold product(shape) elements of its dtype.
    case sizeMismatch(file: String, key: String, dtype: String, shape: [Int], bytes: UInt64)
    /// Two keys claim overlapping bytes.
    case overlap(file: String, key: String, other: String)
    /// No key claims the data bytes from `expected` up to where `key` begins.
    case gap(file: String, key: String, begin: UInt64, expected: UInt64)
    /// Bytes after the last tensor's data that no key claims.
    case trailingBytes(file: String, count: UInt64)
    /// An I64 id does not fit in Int32.
    case outOfRange(file: String, key: String, index: Int, value: Int64)
    /// A key that cannot be written.
    case invalidKey(file: String, key: String, reason: String)

    public var description: String {
        switch self {
        case let .io(file, reason):
            return "\(file): \(reason)"
        case let .truncated(file, nil, needed, size):
            return "\(file): truncated safetensors file: \(size) bytes, fewer than the \(needed) of the header length"
        case let .truncated(file, key?, needed, size):
            return "\(file): truncated safetensors file: tensor \"\(key)\" needs \(needed) bytes of file, it has \(size)"
        case let .headerLength(file, length, fileSize):
            if length > safetensorsMaxHeader {
                return
                    "\(file): safetensors header length \(length) exceeds the format's limit of \(safetensorsMaxHeader) bytes (not a safetensors file?)"
            }
            return
                "\(file): safetensors header length \(length) runs past the end of the \(fileSize)-byte file (truncated, or not a safetensors file)"
        case let .invalidHeader(file, reason):
            return "\(file): invalid safetensors header: \(reason)"
        case let .invalidEntry(file, key, reason):
            return "\(file): key \"\(key)\": \(reason)"
        case let .duplicateKey(file, key):
            return "\(file): key \"\(key)\" appears more than once"
        case let .unsupportedDType(file, key, dtype):
            return "\(file): key \"\(key)\": dtype \"\(dtype)\" is not supported (mm reads F32, F16, BF16, F64, I32, I64)"
        case let .sizeMismatch(file, key, dtype, shape, bytes):
            let needed = SafetensorsDType(rawValue: dtype).map { String(shape.reduce(1, &*) &* $0.size) } ?? "a different number"
            return "\(file): key \"\(key)\": data_offsets span \(bytes) bytes, but \(dtype) \(shape) needs \(needed)"
        case let .overlap(file, key, other):
            return "\(file): key \"\(key)\": its data overlaps that of \"\(other)\""
        case let .gap(file, key, begin, expected):
            return "\(file): key \"\(key)\": its data begins at \(begin), leaving bytes \(expected)..<\(begin) claimed by no key"
        case let .trailingBytes(file, count):
            return "\(file): \(count) bytes after the last tensor's data are claimed by no key"
        case let .outOfRange(file, key, index, value):
            return "\(file): key \"\(key)\": I64 value \(value) at index \(index) does not fit in Int32"
        case let .invalidKey(file, key, reason):
            return "\(file): key \"\(key)\" cannot be written: \(reason)"
        }
    }
}

// MARK: - Header

/// The Python library refuses headers above 100 MB; so do we, before allocating one.
private let safetensorsMaxHeader: UInt64 = 100_000_000

/// The dtypes we read, with their safetensors names.
private enum SafetensorsDType: String {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i32 = "I32", i64 = "I64"

    var size: Int {
        switch self {
        case .f16, .bf16: return 2
        case .f32, .i32: return 4
        case .f64, .i64: return 8
        }
    }

    var isInteger: Bool { self == .i32 || self == .i64 }
}

/// One validated header entry. `begin`/`end` are offsets into the data section.
private struct SafetensorsEntry {
    let key: String
    let dtype: SafetensorsDType
    let shape: [Int]
    let count: Int
    let begin: UInt64
    let end: UInt64
}

/// Turns header bytes into entries (in header order) and metadata, checking each entry's schema
/// and that its byte range matches its shape.
private func parseHeader(_ bytes: [UInt8], file: String) throws -> ([SafetensorsEntry], [String: String]) {
    let root: HeaderJSON.Value
    do {
        root = try HeaderJSON.parse(bytes)
    } catch let failure as HeaderJSON.Failure {
        throw SafetensorsError.invalidHeader(file: file, reason: failure.description)
    }
    guard case .object(let members) = root else {
        throw SafetensorsError.invalidHeader(file: file, reason: "not a JSON object")
    }

    var entries: [SafetensorsEntry] = []
    var metadata: [String: String] = [:]
    var seen = Set<String>()
    for (key, value) in members {
        guard seen.insert(key).inserted else { throw SafetensorsError.duplicateKey(file: file, key: key) }
        if key == "__metadata__" {
            metadata = try parseMetadata(value, file: file)
        } else {
            entries.append(try parseEntry(key, value, file: file))
        }
    }
    return (entries, metadata)
}

private func parseMetadata(_ value: HeaderJSON.Value, file: String) throws -> [String: String] {
    func bad(_ reason: String) -> SafetensorsError { .invalidEntry(file: file, key: "__metadata__", reason: reason) }
    if case .null = value { return [:] }
    guard case .object(let members) = value else { throw bad("not a JSON object") }
    var metadata: [String: String] = [:]
    for (name, item) in members {
        guard case .string(let s) = item else { throw bad("the value of \"\(name)\" is not a string") }
        guard metadata.updateValue(s, forKey: name) == nil else { throw bad("\"\(name)\" appears more than once") }
    }
    return metadata
}

private func parseEntry(_ key: String, _ value: HeaderJSON.Value, file: String) throws -> SafetensorsEntry {
    func bad(_ reason: String) -> SafetensorsError { .invalidEntry(file: file, key: key, reason: reason) }
    guard case .object(let members) = value else { throw bad("entry is not a JSON object") }
    var fields: [String: HeaderJSON.Value] = [:]
    for (name, item) in members {
        guard fields.updateValue(item, forKey: name) == nil else { throw bad("field \"\(name)\" appears more than once") }
    }
    // Unknown fields are ignored, as the Python library does.
    guard let dtypeField = fields["dtype"] else { throw bad("missing \"dtype\"") }
    guard let shapeField = fields["shape"] else { throw bad("missing \"shape\"") }
    guard let offsetsField = fields["data_offsets"] else { throw bad("missing \"data_offsets\"") }

    guard case .string(let dtypeName) = dtypeField else { throw bad("\"dtype\" is not a string") }
    guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
        throw SafetensorsError.unsupportedDType(file: file, key: key, dtype: dtypeName)
    }

    guard case .array(let dims) = shapeField else { throw bad("\"shape\" is not an array") }
    var shape: [Int] = []
    var count: UInt64 = 1
    for d in dims {
        guard case .integer(let n) = d, n <= UInt64(Int32.max) else {
            throw bad("\"shape\" holds something other than a dimension in 0...\(Int32.max)")
        }
        shape.append(Int(n))
        let (product, overflow) = count.multipliedReportingOverflow(by: n)
        // Keeping the element count below 2^48 keeps every byte count below, too.
        guard !overflow, product < 1 << 48 else { throw bad("shape \(shape)… has too many elements") }
        count = product
    }

    guard case .array(let offsets) = offsetsField, offsets.count == 2,
        case .integer(let begin) = offsets[0], case .integer(let end) = offsets[1]
    else {
        throw bad("\"data_offsets\" is not a pair of non-negative integers")
    }
    guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] run backwards") }
    guard end - begin == count * UInt64(dtype.size) else {
        throw SafetensorsError.sizeMismatch(file: file, key: key, dtype: dtypeName, shape: shape, bytes: end - begin)
    }
    return SafetensorsEntry(key: key, dtype: dtype, shape: shape, count: Int(count), begin: begin, end: end)
}

/// The data ranges must tile the data section exactly, as the Python library requires: no
/// overlaps, no unclaimed gaps, nothing after the last tensor, and nothing beyond the file.
private func checkLayout(_ entries: [SafetensorsEntry], dataStart: UInt64, fileSize: UInt64, file: String) throws {
    let dataSize = fileSize - dataStart
    let ordered = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
    var expected: UInt64 = 0
    var previous: String?
    for e in ordered {
        if e.begin < expected {
            throw SafetensorsError.overlap(file: file, key: e.key, other: previous!)
        }
        if e.begin > expected {
            throw SafetensorsError.gap(file: file, key: e.key, begin: e.begin, expected: expected)
        }
        expected = e.end
        previous = e.key
    }
    if expected > dataSize {
        // The first key whose data is not all there; ends are below 2^51, so no overflow.
        let first = ordered.first { $0.end > dataSize }!
        throw SafetensorsError.truncated(file: file, key: first.key, needed: dataStart + first.end, size: fileSize)
    }
    if expected < dataSize {
        throw SafetensorsError.trailingBytes(file: file, count: dataSize - expected)
    }
}

/// Just enough JSON for a safetensors header, and stricter than JSONSerialization where it
/// matters: object members keep their order and duplicates (so the caller can reject them),
/// integers stay exact up to UInt64, and nesting is bounded so a hostile header cannot exhaust
/// the stack.
private struct HeaderJSON {
    indirect enum Value {
        case object([(String, Value)])
        case array([Value])
        case string(String)
        /// A non-negative integer literal that fits in UInt64.
        case integer(UInt64)
        /// Any other number.
        case number
        case bool
        case null
    }

    struct Failure: Error, CustomStringConvertible {
        let offset: Int
        let message: String
        var description: String { "\(message) at header byte \(offset)" }
    }

    private let bytes: [UInt8]
    private var i = 0
    private var depth = 0
    private static let maxDepth = 64

    static func parse(_ bytes: [UInt8]) throws -> Value {
        // Checking UTF-8 once up front lets strings be cut at ASCII quotes without re-validating.
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw Failure(offset: 0, message: "not valid UTF-8")
        }
        var parser = HeaderJSON(bytes: bytes)
        parser.skipSpace()
        let value = try parser.value()
        parser.skipSpace()
        guard parser.i == bytes.count else { throw parser.failure("unexpected text after the JSON value") }
        return value
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func failure(_ message: String) -> Failure { Failure(offset: i, message: message) }

    private var current: UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func skipSpace() {
        while let c = current, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 }
    }

    private mutating func expect(_ c: UInt8, _ what: String) throws {
        guard current == c else { throw failure("expected \(what)") }
        i += 1
    }

    private mutating func value() throws -> Value {
        guard let c = current else { throw failure("unexpected end of header") }
        switch c {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool
        case UInt8(ascii: "f"): try literal("false"); return .bool
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw failure("unexpected character '\(Unicode.Scalar(c))'")
        }
    }

    private mutating func nest() throws {
        depth += 1
        guard depth <= Self.maxDepth else { throw failure("nesting deeper than \(Self.maxDepth)") }
        i += 1
        skipSpace()
    }

    private mutating func object() throws -> Value {
        try nest()
        var members: [(String, Value)] = []
        if current == UInt8(ascii: "}") { i += 1; depth -= 1; return .object(members) }
        while true {
            guard current == UInt8(ascii: "\"") else { throw failure("expected a string key") }
            let key = try string()
            skipSpace()
            try expect(UInt8(ascii: ":"), "':'")
            skipSpace()
            members.append((key, try value()))
            skipSpace()
            if current == UInt8(ascii: ",") { i += 1; skipSpace(); continue }
            try expect(UInt8(ascii: "}"), "',' or '}'")
            depth -= 1
            return .object(members)
        }
    }

    private mutating func array() throws -> Value {
        try nest()
        var items: [Value] = []
        if current == UInt8(ascii: "]") { i += 1; depth -= 1; return .array(items) }
        while true {
            items.append(try value())
            skipSpace()
            if current == UInt8(ascii: ",") { i += 1; skipSpace(); continue }
            try expect(UInt8(ascii: "]"), "',' or ']'")
            depth -= 1
            return .array(items)
        }
    }

    private mutating func literal(_ word: String) throws {
        for b in word.utf8 {
            guard current == b else { throw failure("invalid literal, expected \(word)") }
            i += 1
        }
    }

    private mutating func number() throws -> Value {
        let negative = current == UInt8(ascii: "-")
        if negative { i += 1 }
        var integer: UInt64? = 0
        guard let first = current, first >= 0x30, first <= 0x39 else { throw failure("expected a digit") }
        if first == 0x30 {
            i += 1
            if let c = current, c >= 0x30, c <= 0x39 { throw failure("leading zero in a number") }
        } else {
            while let c = current, c >= 0x30, c <= 0x39 {
                if let n = integer {
                    let (times10, o1) = n.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = times10.addingReportingOverflow(UInt64(c - 0x30))
                    integer = o1 || o2 ? nil : sum
                }
                i += 1
            }
        }
        var exact = !negative
        if current == UInt8(ascii: ".") {
            exact = false
            i += 1
            try digits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            exact = false
            i += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { i += 1 }
            try digits()
        }
        if exact, let n = integer { return .integer(n) }
        return .number
    }

    private mutating func digits() throws {
        guard let c = current, c >= 0x30, c <= 0x39 else { throw failure("expected a digit") }
        while let c = current, c >= 0x30, c <= 0x39 { i += 1 }
    }

    private mutating func string() throws -> String {
        i += 1  // opening quote
        var out = ""
        var start = i
        while true {
            guard let c = current else { throw failure("unterminated string") }
            if c == UInt8(ascii: "\"") {
                out += String(decoding: bytes[start..<i], as: UTF8.self)
                i += 1
                return out
            }
            if c < 0x20 { throw failure("control character in a string") }
            if c == UInt8(ascii: "\\") {
                out += String(decoding: bytes[start..<i], as: UTF8.self)
                i += 1
                out.unicodeScalars.append(try escape())
                start = i
                continue
            }
            i += 1
        }
    }

    private mutating func escape() throws -> Unicode.Scalar {
        guard let c = current else { throw failure("unterminated escape") }
        i += 1
        switch c {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let high = try hex4()
            if (0xD800..<0xDC00).contains(high) {
                // A UTF-16 surrogate pair spelled as two escapes.
                guard current == UInt8(ascii: "\\") else { throw failure("unpaired surrogate escape") }
                i += 1
                guard current == UInt8(ascii: "u") else { throw failure("unpaired surrogate escape") }
                i += 1
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else { throw failure("unpaired surrogate escape") }
                return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))!
            }
            guard let scalar = Unicode.Scalar(high) else { throw failure("unpaired surrogate escape") }
            return scalar
        default:
            throw failure("invalid escape '\\\(Unicode.Scalar(c))'")
        }
    }

    private mutating func hex4() throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = current, let d = Self.hexValue(c) else { throw failure("expected 4 hex digits") }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }
}

// MARK: - File access

/// A safetensors file being read: `ReadableFile`'s whole-range `pread`s (a file truncated
/// under us gives a short read and a `truncated` error, where a map would die with SIGBUS),
/// with errors in safetensors' terms.
private struct SafetensorsFile {
    let file: ReadableFile
    var path: String { file.path }
    var size: UInt64 { UInt64(file.size) }

    init(reading path: String) throws {
        do { file = try ReadableFile(path) } catch let error as FileError {
            throw SafetensorsError.io(file: path, reason: error.reason)
        }
    }

    /// Fills `count` bytes from file offset `offset`; the file shrinking under us is truncation.
    func read(into dst: UnsafeMutableRawPointer, count: Int, at offset: Int, key: String? = nil) throws {
        let got: Int
        do { got = try file.read(into: dst, count: count, at: offset) } catch let error as FileError {
            throw SafetensorsError.io(file: path, reason: error.reason)
        }
        if got < count {
            var st = stat()
            let now = fstat(file.descriptor, &st) == 0 ? UInt64(st.st_size) : 0
            throw SafetensorsError.truncated(file: path, key: key, needed: UInt64(offset + count), size: now)
        }
    }

    func read(into value: inout UInt64, count: Int, at offset: Int) throws {
        try withUnsafeMutableBytes(of: &value) { try read(into: $0.baseAddress!, count: count, at: offset) }
    }

    /// Reads a float entry into `dst`, converting to float32. Large tensors are split across
    /// threads; conversions go through a small staging buffer per thread.
    func readFloats(_ e: SafetensorsEntry, at offset: Int, into dst: UnsafeMutablePointer<Float>) throws {
        let failure = FirstFailure()
        parallelFor(e.count, grain: 1 << 18) { range in
            do {
                if e.dtype == .f32 {
                    try read(
                        into: dst + range.lowerBound, count: range.count * 4,
                        at: offset + range.lowerBound * 4, key: e.key)
                    return
                }
                try staged(e, range, at: offset) { src, at, n in
                    let out = dst + at
                    switch e.dtype {
                    case .f16: widenF16(src, out, n)
                    case .bf16: widenBF16(src, out, n)
                    default: narrowF64(src, out, n)
                    }
                }
            } catch { failure.record(error) }
        }
        try failure.rethrow()
    }

    /// Reads an integer entry into `dst` as Int32, checking that I64 values fit.
    func readIDs(_ e: SafetensorsEntry, at offset: Int, into dst: UnsafeMutablePointer<Int32>?) throws {
        guard let dst, e.count > 0 else { return }
        if e.dtype == .i32 {
            try read(into: dst, count: e.count * 4, at: offset, key: e.key)
            return
        }
        try staged(e, 0..<e.count, at: offset) { src, at, n in
            if let bad = narrowI64(src, dst + at, n) {
                throw SafetensorsError.outOfRange(
                    file: path, key: e.key, index: at + bad,
                    value: src.load(fromByteOffset: bad * 8, as: Int64.self))
            }
        }
    }

    /// Reads elements `range` of `e` block by block into a scratch buffer and hands each block
    /// (source bytes, first element index, element count) to `convert`. The scratch buffer is
    /// aligned, so the kernels may read it as typed memory whatever the file's alignment.
    private func staged(
        _ e: SafetensorsEntry, _ range: Range<Int>, at offset: Int,
        _ convert: (UnsafeRawPointer, Int, Int) throws -> Void
    ) throws {
        let block = 1 << 16
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: min(block, range.count) * e.dtype.size, alignment: 64)
        defer { scratch.deallocate() }
        var at = range.lowerBound
        while at < range.upperBound {
            let n = min(block, range.upperBound - at)
            try read(into: scratch, count: n * e.dtype.size, at: offset + at * e.dtype.size, key: e.key)
            try convert(UnsafeRawPointer(scratch), at, n)
            at += n
        }
    }

}

/// Keeps the first error thrown by any worker of a parallel loop.
private final class FirstFailure: @unchecked Sendable {
    private var error: Error?
    private let lock = NSLock()

    func record(_ e: Error) {
        lock.lock()
        if error == nil { error = e }
        lock.unlock()
    }

    func rethrow() throws {
        if let error { throw error }
    }
}

// MARK: - Conversion kernels (tight loops the compiler vectorises; F16 uses the F16C instructions)

private func widenF16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    let s = src.assumingMemoryBound(to: Float16.self)
    for i in 0..<n { dst[i] = Float(s[i]) }
}

/// bfloat16 is the top half of a float32.
private func widenBF16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    let s = src.assumingMemoryBound(to: UInt16.self)
    let d = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UInt32.self)
    for i in 0..<n { d[i] = UInt32(s[i]) << 16 }
}

private func narrowF64(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    let s = src.assumingMemoryBound(to: Double.self)
    for i in 0..<n { dst[i] = Float(s[i]) }
}

/// Copies I64 ids into Int32; returns the index of the first value that does not fit.
private func narrowI64(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Int32>, _ n: Int) -> Int? {
    let s = src.assumingMemoryBound(to: Int64.self)
    var ok = true
    for i in 0..<n {
        let v = s[i]
        ok = ok && v == Int64(Int32(truncatingIfNeeded: v))
        dst[i] = Int32(truncatingIfNeeded: v)
    }
    if ok { return nil }
    return (0..<n).first { s[$0] != Int64(Int32(truncatingIfNeeded: s[$0])) }
}

/// Float storage formats other readers (PyTorch archives) widen with the same kernels.
public enum StoredFloat: Sendable {
    case f32, f16, bf16, f64

    public var size: Int { self == .f64 ? 8 : self == .f32 ? 4 : 2 }

    /// Converts `count` elements at `src` (any alignment is fine for f32; others must be aligned
    /// to their size) to float32 at `dst`.
    public func widen(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
        case .f16: widenF16(src, dst, count)
        case .bf16: widenBF16(src, dst, count)
        case .f64: narrowF64(src, dst, count)
        }
    }
}

/// float32 → F16/BF16 bits, rounding to nearest even; returns the first index that overflowed
/// to infinity from a finite value (F16 above 65,504).
private func narrowFloats(_ src: UnsafePointer<Float>, _ dst: inout [UInt16], _ n: Int, to format: SafetensorsFloat) -> Int? {
    var overflow = false
    dst.withUnsafeMutableBufferPointer { out in
        if format == .f16 {
            for i in 0..<n {
                let h = Float16(src[i])
                out[i] = h.bitPattern
                overflow = overflow || (h.isInfinite && src[i].isFinite)
            }
        } else {
            for i in 0..<n {
                let bits = src[i].bitPattern
                // NaN stays NaN (quiet); otherwise round the low half to nearest, ties to even.
                out[i] =
                    src[i].isNaN
                    ? UInt16(bits >> 16) | 0x0040
                    : UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
                overflow = overflow || (Float(bitPattern: UInt32(out[i]) << 16).isInfinite && src[i].isFinite)
            }
        }
    }
    guard overflow else { return nil }
    return (0..<n).first { i in
        let back = format == .f16 ? Float(Float16(bitPattern: dst[i])) : Float(bitPattern: UInt32(dst[i]) << 16)
        return back.isInfinite && src[i].isFinite
    }
}
