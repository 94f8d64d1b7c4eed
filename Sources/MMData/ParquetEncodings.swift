import CZlib

// The byte-level encodings a Parquet file is made of, written from the format descriptions
// (github.com/apache/parquet-format, github.com/google/snappy format_description.txt): Thrift's
// compact protocol (the footer and page headers), the RLE/bit-packed hybrid (levels and dictionary
// indices), and the page codecs. Each reads untrusted bytes: every length and count is checked
// against the bytes that remain before it is used, and a failure is a `ParquetFormatError`.

/// Why some bytes are not valid Parquet; the reader adds the file, column and page.
struct ParquetFormatError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// A cursor over a byte range that never reads past its end.
struct ByteCursor {
    let bytes: UnsafeRawBufferPointer
    var at: Int
    let end: Int

    init(_ bytes: UnsafeRawBufferPointer, from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        at = start
        self.end = end ?? bytes.count
    }

    var remaining: Int { end - at }

    mutating func byte() throws -> UInt8 {
        guard at < end else { throw ParquetFormatError("truncated (needed a byte at offset \(at))") }
        at += 1
        return bytes[at - 1]
    }

    /// `count` bytes as a range of `bytes`, checked.
    mutating func take(_ count: Int, _ what: String) throws -> Range<Int> {
        guard count >= 0, count <= remaining else { throw ParquetFormatError("\(what) of \(count) bytes runs past the end (\(remaining) left)") }
        at += count
        return (at - count)..<at
    }

    mutating func littleEndian<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let r = try take(MemoryLayout<T>.size, "a \(T.self)")
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: r.lowerBound, as: T.self))
    }

    /// An unsigned LEB128 varint of at most 64 bits.
    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            let b = try byte()
            value |= UInt64(b & 0x7F) << UInt64(shift)
            if b & 0x80 == 0 { return value }
        }
        throw ParquetFormatError("a varint longer than 10 bytes")
    }
}

// MARK: Thrift compact protocol

/// A Thrift value decoded without its IDL: the reader picks the fields it knows by number.
indirect enum Thrift {
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case binary([UInt8])
    case list([Thrift])
    case structure([Int16: Thrift])
    /// A map, whose contents Parquet's metadata never needs.
    case skipped

    subscript(field: Int16) -> Thrift? {
        if case .structure(let fields) = self { return fields[field] }
        return nil
    }

    var int: Int64? { if case .int(let v) = self { return v } else { return nil } }
    var bool: Bool? { if case .bool(let v) = self { return v } else { return nil } }
    var list: [Thrift]? { if case .list(let v) = self { return v } else { return nil } }
    var string: String? { if case .binary(let v) = self { return String(validating: v, as: UTF8.self) } else { return nil } }

    /// Field `id` as an integer in `range`, or an error naming `what`.
    func int(_ id: Int16, _ what: String, in range: ClosedRange<Int64> = 0...Int64(Int32.max)) throws -> Int {
        guard let v = self[id]?.int else { throw ParquetFormatError("\(what) is missing") }
        guard range.contains(v) else { throw ParquetFormatError("\(what) \(v) is outside \(range.lowerBound)…\(range.upperBound)") }
        return Int(v)
    }

    /// Decodes one struct at the cursor (a footer or a page header).
    static func structure(_ cursor: inout ByteCursor) throws -> Thrift {
        try value(type: 12, &cursor, depth: 0)
    }

    /// Nesting deeper than this is refused: Parquet's metadata nests a handful of levels.
    static let maximumDepth = 32

    private static func value(type: UInt8, _ c: inout ByteCursor, depth: Int) throws -> Thrift {
        guard depth <= maximumDepth else { throw ParquetFormatError("Thrift structures nested deeper than \(maximumDepth)") }
        switch type {
        case 1, 2:  // a boolean inside a list or map: one byte
            return .bool(try c.byte() == 1)
        case 3:
            return .int(Int64(Int8(bitPattern: try c.byte())))
        case 4, 5, 6:
            let z = try c.varint()
            return .int(Int64(bitPattern: z >> 1) ^ -Int64(bitPattern: z & 1))
        case 7:
            return .double(Double(bitPattern: try c.littleEndian(UInt64.self)))
        case 8:
            let n = try c.varint()
            guard n <= UInt64(c.remaining) else { throw ParquetFormatError("a Thrift string of \(n) bytes runs past the end") }
            return .binary(Array(UnsafeRawBufferPointer(rebasing: c.bytes[try c.take(Int(n), "a string")])))
        case 9, 10:
            let head = try c.byte()
            var n = UInt64(head >> 4)
            if n == 15 { n = try c.varint() }
            // Every element takes at least one byte: a count beyond the bytes left is a lie.
            guard n <= UInt64(c.remaining) else { throw ParquetFormatError("a Thrift list of \(n) elements runs past the end") }
            var items: [Thrift] = []
            items.reserveCapacity(Int(n))
            for _ in 0..<Int(n) { items.append(try value(type: head & 0x0F, &c, depth: depth + 1)) }
            return .list(items)
        case 11:
            let n = try c.varint()
            guard n > 0 else { return .skipped }
            guard n <= UInt64(c.remaining / 2) else { throw ParquetFormatError("a Thrift map of \(n) entries runs past the end") }
            let kinds = try c.byte()
            for _ in 0..<Int(n) {
                _ = try value(type: kinds >> 4, &c, depth: depth + 1)
                _ = try value(type: kinds & 0x0F, &c, depth: depth + 1)
            }
            return .skipped
        case 12:
            var fields: [Int16: Thrift] = [:]
            var last: Int16 = 0
            while true {
                let head = try c.byte()
                if head == 0 { return .structure(fields) }
                let delta = Int16(head >> 4)
                if delta != 0 {
                    last = last &+ delta
                } else {
                    guard case .int(let id) = try value(type: 4, &c, depth: depth + 1), let id16 = Int16(exactly: id) else {
                        throw ParquetFormatError("a Thrift field id out of range")
                    }
                    last = id16
                }
                let kind = head & 0x0F
                fields[last] = kind == 1 || kind == 2 ? .bool(kind == 1) : try value(type: kind, &c, depth: depth + 1)
            }
        default:
            throw ParquetFormatError("unknown Thrift type \(type) at offset \(c.at)")
        }
    }
}

// MARK: RLE / bit-packed hybrid

/// Decodes `count` values of the RLE/bit-packed hybrid (bit width 0…32) from `c` into `out`.
/// Runs past `count` are ignored; running out of bytes before `count` is an error.
func decodeHybrid(_ c: inout ByteCursor, bitWidth: Int, count: Int, into out: UnsafeMutablePointer<UInt32>) throws {
    guard (0...32).contains(bitWidth) else { throw ParquetFormatError("bit width \(bitWidth) is outside 0…32") }
    var filled = 0
    let valueBytes = (bitWidth + 7) / 8
    while filled < count {
        let header = try c.varint()
        if header & 1 == 0 {
            // An RLE run: one value repeated.
            let run = header >> 1
            var value: UInt32 = 0
            for (i, at) in try c.take(valueBytes, "a repeated value").enumerated() { value |= UInt32(c.bytes[at]) << UInt32(8 * i) }
            guard bitWidth == 32 || value >> UInt32(bitWidth) == 0 else { throw ParquetFormatError("a repeated value wider than \(bitWidth) bits") }
            let n = Int(min(run, UInt64(count - filled)))
            (out + filled).initialize(repeating: value, count: n)
            filled += n
        } else {
            // Bit-packed groups of 8 values, least significant bit first; the last run may stop short.
            let groups = header >> 1
            guard groups <= UInt64(Int32.max) else { throw ParquetFormatError("a bit-packed run of \(groups) groups") }
            let wanted = Int(groups) * bitWidth
            let bytes = try c.take(min(wanted, c.remaining), "a bit-packed run")
            let values = min(Int(groups) * 8, count - filled, bitWidth == 0 ? Int.max : bytes.count * 8 / bitWidth)
            guard values > 0 || groups == 0 || filled == count else { throw ParquetFormatError("a bit-packed run without its bytes") }
            let mask: UInt64 = bitWidth == 32 ? 0xFFFF_FFFF : (1 << UInt64(bitWidth)) - 1
            var bit = 0
            for i in 0..<values {
                var word: UInt64 = 0
                let first = bytes.lowerBound + bit / 8
                for j in 0..<min(8, bytes.upperBound - first) { word |= UInt64(c.bytes[first + j]) << UInt64(8 * j) }
                out[filled + i] = UInt32(truncatingIfNeeded: (word >> UInt64(bit % 8)) & mask)
                bit += bitWidth
            }
            filled += values
            if values < Int(groups) * 8 && filled < count { throw ParquetFormatError("a bit-packed run stops short of its values") }
        }
    }
}

/// The bits needed for values up to `maximum` (0 → 0).
func bitWidth(_ maximum: Int) -> Int { maximum == 0 ? 0 : Int.bitWidth - maximum.leadingZeroBitCount }

// MARK: Codecs

/// Decompresses a raw Snappy block into exactly `expected` bytes.
func snappyDecompress(_ input: UnsafeRawBufferPointer, expected: Int) throws -> [UInt8] {
    var c = ByteCursor(input)
    let stated = try c.varint()
    guard stated == UInt64(expected) else { throw ParquetFormatError("snappy block holds \(stated) bytes, the page header says \(expected)") }
    var out = [UInt8](repeating: 0, count: expected)
    var n = 0
    try out.withUnsafeMutableBufferPointer { out in
        while c.remaining > 0 {
            let tag = try c.byte()
            var length = 0, offset = 0
            switch tag & 3 {
            case 0:
                length = Int(tag >> 2) + 1
                if length > 60 {
                    var l = 0
                    for (i, at) in try c.take(length - 60, "a literal length").enumerated() { l |= Int(c.bytes[at]) << (8 * i) }
                    length = l + 1
                }
                guard length <= expected - n else { throw ParquetFormatError("snappy literal runs past the stated size") }
                let from = try c.take(length, "a snappy literal")
                UnsafeMutableRawPointer(out.baseAddress! + n).copyMemory(from: c.bytes.baseAddress! + from.lowerBound, byteCount: length)
                n += length
                continue
            case 1:
                length = 4 + Int((tag >> 2) & 7)
                offset = Int(tag >> 5) << 8 | Int(try c.byte())
            case 2:
                length = 1 + Int(tag >> 2)
                offset = Int(try c.littleEndian(UInt16.self))
            default:
                length = 1 + Int(tag >> 2)
                offset = Int(try c.littleEndian(UInt32.self))
            }
            guard offset > 0, offset <= n else { throw ParquetFormatError("snappy copy from offset \(offset) with \(n) bytes written") }
            guard length <= expected - n else { throw ParquetFormatError("snappy copy runs past the stated size") }
            // Byte by byte: a copy may overlap what it writes (a repeated pattern).
            for i in 0..<length { out[n + i] = out[n + i - offset] }
            n += length
        }
    }
    guard n == expected else { throw ParquetFormatError("snappy block ends after \(n) of \(expected) bytes") }
    return out
}

/// Inflates gzip (or zlib) data into exactly `expected` bytes.
func gzipDecompress(_ input: UnsafeRawBufferPointer, expected: Int) throws -> [UInt8] {
    guard !input.isEmpty else { throw ParquetFormatError("empty gzip page") }
    guard expected > 0 else { return [] }
    var out = [UInt8](repeating: 0, count: expected)
    var stream = z_stream()
    // 15 + 32: a window of 2¹⁵ with the gzip or zlib header detected.
    guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw ParquetFormatError("zlib could not start")
    }
    defer { inflateEnd(&stream) }
    let status: Int32 = out.withUnsafeMutableBufferPointer { out in
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: UInt8.self))
        stream.avail_in = UInt32(input.count)
        stream.next_out = out.baseAddress
        stream.avail_out = UInt32(out.count)
        return inflate(&stream, Z_FINISH)
    }
    guard status == Z_STREAM_END else {
        throw ParquetFormatError(
            status == Z_BUF_ERROR && stream.avail_out == 0
                ? "gzip page inflates beyond its stated \(expected) bytes" : "gzip data is corrupt (zlib status \(status))")
    }
    guard Int(stream.total_out) == expected else { throw ParquetFormatError("gzip page inflates to \(stream.total_out) bytes, not \(expected)") }
    return out
}
