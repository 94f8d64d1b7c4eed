import MMFoundation

/// A Parquet file's flat columns, read from its footer (written from the format specification,
/// github.com/apache/parquet-format): pages v1 and v2, dictionary pages, PLAIN and dictionary
/// encodings, levels in the RLE/bit-packed hybrid, UNCOMPRESSED, SNAPPY and GZIP pages; the
/// physical types BOOLEAN, INT32, INT64, INT96 (as 12 bytes), FLOAT, DOUBLE, BYTE_ARRAY and
/// FIXED_LEN_BYTE_ARRAY; required and optional (null) columns. Nested and repeated columns are
/// listed but reading one is an error, as are other codecs (ZSTD, LZ4, BROTLI) and encodings.
///
/// The file is untrusted: every offset, length and count is checked against the file before it
/// is used or sizes an allocation, and a bad file is one `DataError.badParquet` naming the file
/// (and the column and page).
public final class ParquetFile: @unchecked Sendable {
    public enum PhysicalType: Int, Sendable {
        case boolean = 0, int32, int64, int96, float, double, byteArray, fixedLengthByteArray
    }

    /// A leaf column of the schema.
    public struct Column: Sendable {
        /// Its path, joined by dots for a nested column.
        public let name: String
        public let type: PhysicalType
        /// Null values are possible (an optional field).
        public let isOptional: Bool
        /// Bytes a value (FIXED_LEN_BYTE_ARRAY), 12 for INT96.
        public let typeLength: Int
        /// Byte arrays annotated as UTF-8 text (STRING, ENUM, JSON).
        public let isText: Bool
        /// Why the column cannot be read (nested or repeated), nil when it can.
        public let unsupported: String?
    }

    public let path: String
    public let rowCount: Int
    public let columns: [Column]
    private let map: MappedFile
    private let rowGroups: [RowGroup]

    /// One row group: its rows and, per leaf column, where its chunk lies.
    struct RowGroup {
        let rows: Int
        let chunks: [Chunk]
    }

    struct Chunk {
        let codec: Int
        let values: Int
        let range: Range<Int>
    }

    /// A file may claim at most this many rows per byte: even a column of nulls costs bytes per page.
    static let maximumRowsPerByte = 1024

    public init(path: String) throws {
        self.path = path
        do { map = try MappedFile(path) } catch let error as FileError { throw DataError.badParquet(path: path, reason: error.reason) }
        do {
            let bytes = map.bytes
            guard bytes.count >= 12, Array(bytes[0..<4]) == Self.magic, Array(bytes[(bytes.count - 4)...]) == Self.magic else {
                throw ParquetFormatError("not a Parquet file (no PAR1 magic at both ends)")
            }
            let footerLength = Int(bytes.loadUnaligned(fromByteOffset: bytes.count - 8, as: UInt32.self).littleEndian)
            guard footerLength <= bytes.count - 12 else {
                throw ParquetFormatError("footer length \(footerLength) is larger than the file (\(bytes.count) bytes)")
            }
            let footerStart = bytes.count - 8 - footerLength
            var cursor = ByteCursor(bytes, from: footerStart, to: bytes.count - 8)
            let meta = try Thrift.structure(&cursor)
            guard let schema = meta[2]?.list, !schema.isEmpty else { throw ParquetFormatError("the footer has no schema") }
            let columns = try Self.leaves(of: schema)
            let rowCount = try meta.int(3, "the row count", in: 0...Int64(bytes.count) * Int64(Self.maximumRowsPerByte))
            guard let groups = meta[4]?.list else { throw ParquetFormatError("the footer has no row groups") }
            let rowGroups = try groups.enumerated().map { g, group in
                let rows = try group.int(3, "row group \(g)'s row count", in: 0...Int64(bytes.count) * Int64(Self.maximumRowsPerByte))
                guard let chunks = group[1]?.list, chunks.count == columns.count else {
                    throw ParquetFormatError("row group \(g) has \(group[1]?.list?.count ?? 0) column chunks for \(columns.count) columns")
                }
                return RowGroup(
                    rows: rows,
                    chunks: try chunks.enumerated().map { c, chunk in
                        try Self.chunk(chunk, end: footerStart, what: "row group \(g), column '\(columns[c].name)'")
                    })
            }
            let total = rowGroups.reduce(0) { $0 + $1.rows }
            guard total == rowCount else { throw ParquetFormatError("the row groups hold \(total) rows, the footer says \(rowCount)") }
            (self.columns, self.rowCount, self.rowGroups) = (columns, rowCount, rowGroups)
        } catch let error as ParquetFormatError {
            throw DataError.badParquet(path: path, reason: error.reason)
        }
    }

    static let magic: [UInt8] = Array("PAR1".utf8)

    /// The leaf columns of a schema (a depth-first list of elements with child counts).
    private static func leaves(of schema: [Thrift]) throws -> [Column] {
        var next = 1, found: [Column] = []
        func walk(children: Int, path: [String], optional: Bool, nested: String?, depth: Int) throws {
            guard depth < 64 else { throw ParquetFormatError("the schema nests deeper than 64 levels") }
            for _ in 0..<children {
                guard next < schema.count else { throw ParquetFormatError("the schema lists fewer elements than its groups' children") }
                let element = schema[next]
                next += 1
                guard let name = element[4]?.string else { throw ParquetFormatError("schema element \(next - 1) has no UTF-8 name") }
                let repetition = element[3]?.int ?? 0
                let isOptional = optional || repetition == 1
                let here = path + [name]
                let why = nested ?? (repetition == 2 ? "repeated" : nil)
                if let count = element[5]?.int, count > 0 {
                    guard count <= schema.count - next else { throw ParquetFormatError("schema group '\(name)' claims \(count) children") }
                    try walk(children: Int(count), path: here, optional: isOptional, nested: why ?? "nested", depth: depth + 1)
                    continue
                }
                guard let raw = element[1]?.int, let type = PhysicalType(rawValue: Int(raw)) else {
                    throw ParquetFormatError("column '\(here.joined(separator: "."))' has no physical type")
                }
                var length = type == .int96 ? 12 : 0
                if type == .fixedLengthByteArray {
                    length = try element.int(2, "column '\(name)''s type length", in: 1...Int64(Int32.max))
                }
                let converted = element[6]?.int
                let logical = element[10]
                let isText = converted == 0 || converted == 4 || converted == 19 || logical?[1] != nil || logical?[4] != nil || logical?[12] != nil
                found.append(
                    Column(
                        name: here.joined(separator: "."), type: type, isOptional: isOptional, typeLength: length, isText: isText,
                        unsupported: why.map { "a \($0) column (only flat columns are read)" }))
            }
        }
        try walk(children: try schema[0].int(5, "the schema root's child count"), path: [], optional: false, nested: nil, depth: 0)
        return found
    }

    /// A column chunk's codec, value count and byte range (within the data before the footer).
    private static func chunk(_ chunk: Thrift, end: Int, what: String) throws -> Chunk {
        guard chunk[1]?.string == nil else { throw ParquetFormatError("\(what) lives in another file (not supported)") }
        guard let meta = chunk[3] else { throw ParquetFormatError("\(what) has no metadata") }
        let range = 0...Int64(end)
        let data = try meta.int(9, "\(what)'s data page offset", in: range)
        var start = data
        if let d = meta[11]?.int, d > 0, d < data { start = Int(d) }
        let size = try meta.int(7, "\(what)'s compressed size", in: 0...Int64(end))
        guard size <= end - start else { throw ParquetFormatError("\(what) (\(size) bytes at offset \(start)) runs into the footer") }
        return Chunk(
            codec: try meta.int(4, "\(what)'s codec", in: 0...100), values: try meta.int(5, "\(what)'s value count", in: 0...Int64.max),
            range: start..<(start + size))
    }

    /// The values of column `index`, one per row in file order.
    public func read(column index: Int) throws -> ParquetColumn {
        precondition(columns.indices.contains(index), "no such column")
        let column = columns[index]
        if let why = column.unsupported { throw DataError.badParquet(path: path, reason: "column '\(column.name)' is \(why)") }
        var out = ParquetColumn.Builder(type: column.type, rows: rowCount)
        for (g, group) in rowGroups.enumerated() {
            let chunk = group.chunks[index]
            guard chunk.values == group.rows else {
                throw DataError.badParquet(
                    path: path, reason: "row group \(g), column '\(column.name)': \(chunk.values) values for \(group.rows) rows")
            }
            var reader = ChunkReader(bytes: map.bytes, chunk: chunk, column: column)
            do { try reader.read(into: &out) } catch let error as ParquetFormatError {
                throw DataError.badParquet(
                    path: path, reason: "row group \(g), column '\(column.name)', page \(reader.page): \(error.reason)")
            }
        }
        return out.column
    }

    /// The values of the column named `name`, nil when there is none.
    public func read(column name: String) throws -> ParquetColumn? {
        try columns.firstIndex { $0.name == name }.map { try read(column: $0) }
    }
}

/// One column's values, one per row; a null row holds false, 0 or no bytes.
public struct ParquetColumn: Sendable {
    public enum Values: Sendable {
        case boolean([Bool])
        case int32([Int32])
        case int64([Int64])
        case float([Float])
        case double([Double])
        /// BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY and INT96 values.
        case bytes(ByteArrays)
    }

    public let values: Values
    /// Per row, whether it is null (all false for a required column).
    public let isNull: [Bool]

    public var count: Int { isNull.count }

    /// A row as text (nil for null): numbers in their shortest decimal form, byte arrays as UTF-8
    /// (nil when they are not UTF-8).
    public func text(_ row: Int) -> String? {
        guard !isNull[row] else { return nil }
        switch values {
        case .boolean(let v): return v[row] ? "true" : "false"
        case .int32(let v): return String(v[row])
        case .int64(let v): return String(v[row])
        case .float(let v): return "\(v[row])"
        case .double(let v): return "\(v[row])"
        case .bytes(let v): return v.string(row)
        }
    }

    /// Values appended page by page.
    struct Builder {
        var values: Values
        var isNull: [Bool] = []

        init(type: ParquetFile.PhysicalType, rows: Int) {
            switch type {
            case .boolean: values = .boolean([])
            case .int32: values = .int32([])
            case .int64: values = .int64([])
            case .float: values = .float([])
            case .double: values = .double([])
            case .int96, .byteArray, .fixedLengthByteArray: values = .bytes(ByteArrays())
            }
            isNull.reserveCapacity(rows)
        }

        var column: ParquetColumn { ParquetColumn(values: values, isNull: isNull) }

        /// Appends a page: its non-null values in order, placed where `defined` says (nil: all rows).
        mutating func append(_ page: Values, defined: [Bool]?) throws {
            func merge<T>(_ out: inout [T], _ new: [T], zero: T) {
                guard let defined else {
                    out += new
                    return
                }
                var next = 0
                for d in defined {
                    out.append(d ? new[next] : zero)
                    if d { next += 1 }
                }
            }
            switch (values, page) {
            case (.boolean(var out), .boolean(let new)): merge(&out, new, zero: false); values = .boolean(out)
            case (.int32(var out), .int32(let new)): merge(&out, new, zero: 0); values = .int32(out)
            case (.int64(var out), .int64(let new)): merge(&out, new, zero: 0); values = .int64(out)
            case (.float(var out), .float(let new)): merge(&out, new, zero: 0); values = .float(out)
            case (.double(var out), .double(let new)): merge(&out, new, zero: 0); values = .double(out)
            case (.bytes(var out), .bytes(let new)):
                values = .int32([])  // `out` the only reference while it grows (no copy per page)
                var next = 0
                for d in defined ?? Array(repeating: true, count: new.count) {
                    if d { out.append(new[next]) } else { out.append(UnsafeRawBufferPointer(start: nil, count: 0)) }
                    if d { next += 1 }
                }
                values = .bytes(out)
            default: preconditionFailure("page values of another type")
            }
            isNull += defined.map { $0.map { !$0 } } ?? Array(repeating: false, count: pageCount(page))
        }

        private func pageCount(_ v: Values) -> Int {
            switch v {
            case .boolean(let a): return a.count
            case .int32(let a): return a.count
            case .int64(let a): return a.count
            case .float(let a): return a.count
            case .double(let a): return a.count
            case .bytes(let a): return a.count
            }
        }
    }
}

/// Variable-length byte strings stored end to end.
public struct ByteArrays: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// Where each value starts in `bytes`, and one past the last.
    public private(set) var offsets: [Int] = [0]

    public var count: Int { offsets.count - 1 }

    public subscript(i: Int) -> ArraySlice<UInt8> { bytes[offsets[i]..<offsets[i + 1]] }

    /// Value `i` as UTF-8 text, nil when it is not UTF-8.
    public func string(_ i: Int) -> String? { String(validating: self[i], as: UTF8.self) }

    mutating func append(_ value: UnsafeRawBufferPointer) {
        bytes += value
        offsets.append(bytes.count)
    }

    mutating func append(_ value: ArraySlice<UInt8>) {
        bytes += value
        offsets.append(bytes.count)
    }
}

/// Reads one column chunk's pages in order.
private struct ChunkReader {
    let bytes: UnsafeRawBufferPointer
    let chunk: ParquetFile.Chunk
    let column: ParquetFile.Column
    /// The page being read (0-based, dictionary pages included), for error messages.
    var page = 0
    private var dictionary: ParquetColumn.Values?

    init(bytes: UnsafeRawBufferPointer, chunk: ParquetFile.Chunk, column: ParquetFile.Column) {
        self.bytes = bytes
        self.chunk = chunk
        self.column = column
    }

    /// Page types (PageType) and encodings (Encoding) of the format.
    enum PageType: Int { case data = 0, index = 1, dictionary = 2, dataV2 = 3 }
    static let plain = 0, plainDictionary = 2, rle = 3, rleDictionary = 8
    static let codecNames = [0: "UNCOMPRESSED", 1: "SNAPPY", 2: "GZIP", 3: "LZO", 4: "BROTLI", 5: "LZ4", 6: "ZSTD", 7: "LZ4_RAW"]

    mutating func read(into out: inout ParquetColumn.Builder) throws {
        var at = chunk.range.lowerBound, read = 0
        while read < chunk.values {
            guard at < chunk.range.upperBound else { throw ParquetFormatError("the chunk ends after \(read) of \(chunk.values) values") }
            var c = ByteCursor(bytes, from: at, to: chunk.range.upperBound)
            let header = try Thrift.structure(&c)
            let size = try header.int(3, "the compressed page size")
            let uncompressed = try header.int(2, "the uncompressed page size")
            let body = try c.take(size, "the page")
            at = body.upperBound
            let payload = UnsafeRawBufferPointer(rebasing: bytes[body])
            switch PageType(rawValue: try header.int(1, "the page type", in: 0...100)) {
            case .dictionary:
                guard let h = header[7] else { throw ParquetFormatError("a dictionary page without its header") }
                let encoding = try h.int(2, "the dictionary encoding")
                guard encoding == Self.plain || encoding == Self.plainDictionary else {
                    throw ParquetFormatError("dictionary encoding \(encoding) (only PLAIN)")
                }
                let data = try decompress(payload, to: uncompressed)
                var v = ByteCursor(UnsafeRawBufferPointer(start: data, count: uncompressed))
                dictionary = try plainValues(&v, count: try h.int(1, "the dictionary size"))
                data.deallocate()
            case .data:
                guard let h = header[5] else { throw ParquetFormatError("a data page without its header") }
                let n = try h.int(1, "the page's value count")
                guard n <= chunk.values - read else { throw ParquetFormatError("\(n) values in a page past the chunk's \(chunk.values)") }
                let data = try decompress(payload, to: uncompressed)
                defer { data.deallocate() }
                var v = ByteCursor(UnsafeRawBufferPointer(start: data, count: uncompressed))
                var defined: [Bool]?
                if column.isOptional {
                    guard try h.int(3, "the definition level encoding") == Self.rle else {
                        throw ParquetFormatError("definition levels not in the RLE encoding (BIT_PACKED is not read)")
                    }
                    let levelBytes = try v.take(Int(try v.littleEndian(UInt32.self)), "the definition levels")
                    var levels = ByteCursor(v.bytes, from: levelBytes.lowerBound, to: levelBytes.upperBound)
                    defined = try definitions(&levels, count: n)
                }
                try out.append(
                    try values(&v, count: defined.map { $0.lazy.filter { $0 }.count } ?? n, encoding: try h.int(2, "the encoding")), defined: defined)
                read += n
            case .dataV2:
                guard let h = header[8] else { throw ParquetFormatError("a v2 data page without its header") }
                let n = try h.int(1, "the page's value count")
                guard n <= chunk.values - read else { throw ParquetFormatError("\(n) values in a page past the chunk's \(chunk.values)") }
                let repetition = try h.int(6, "the repetition levels' length"), definition = try h.int(5, "the definition levels' length")
                guard repetition == 0 else { throw ParquetFormatError("repetition levels in a flat column") }
                guard definition <= payload.count, definition <= uncompressed else { throw ParquetFormatError("definition levels past the page") }
                var defined: [Bool]?
                if column.isOptional {
                    var levels = ByteCursor(payload, to: definition)
                    defined = try definitions(&levels, count: n)
                }
                let rest = UnsafeRawBufferPointer(rebasing: payload[definition...])
                let data: UnsafeMutableRawPointer
                if h[7]?.bool ?? true {
                    data = try decompress(rest, to: uncompressed - definition)
                } else {
                    guard rest.count == uncompressed - definition else { throw ParquetFormatError("an uncompressed page of the wrong size") }
                    data = UnsafeMutableRawPointer.allocate(byteCount: max(1, rest.count), alignment: 8)
                    if rest.count > 0 { data.copyMemory(from: rest.baseAddress!, byteCount: rest.count) }
                }
                defer { data.deallocate() }
                var v = ByteCursor(UnsafeRawBufferPointer(start: data, count: uncompressed - definition))
                try out.append(
                    try values(&v, count: defined.map { $0.lazy.filter { $0 }.count } ?? n, encoding: try h.int(4, "the encoding")), defined: defined)
                read += n
            default:
                break  // index pages and page types unknown to this reader carry no values
            }
            page += 1
        }
    }

    /// Which of `count` rows hold a value (definition level 1 of a flat optional column).
    private func definitions(_ c: inout ByteCursor, count: Int) throws -> [Bool] {
        var levels = [UInt32](repeating: 0, count: count)
        try levels.withUnsafeMutableBufferPointer { try decodeHybrid(&c, bitWidth: 1, count: count, into: $0.baseAddress!) }
        return levels.map { $0 == 1 }
    }

    /// The page's bytes, decompressed to the stated size (the caller deallocates).
    private func decompress(_ payload: UnsafeRawBufferPointer, to size: Int) throws -> UnsafeMutableRawPointer {
        // No codec mm reads inflates more than 1,032-fold (deflate's limit; snappy's is 22).
        guard size <= payload.count * 1032 + 64 else { throw ParquetFormatError("a page of \(payload.count) bytes claims \(size) uncompressed") }
        let data = UnsafeMutableRawPointer.allocate(byteCount: max(1, size), alignment: 8)
        do {
            let out: [UInt8]
            switch chunk.codec {
            case 0:
                guard payload.count == size else { throw ParquetFormatError("an uncompressed page of \(payload.count) bytes states \(size)") }
                if size > 0 { data.copyMemory(from: payload.baseAddress!, byteCount: size) }
                return data
            case 1: out = try snappyDecompress(payload, expected: size)
            case 2: out = try gzipDecompress(payload, expected: size)
            default:
                throw ParquetFormatError(
                    "unsupported compression \(Self.codecNames[chunk.codec] ?? "codec \(chunk.codec)") (mm reads UNCOMPRESSED, SNAPPY and GZIP)")
            }
            out.withUnsafeBytes { if size > 0 { data.copyMemory(from: $0.baseAddress!, byteCount: size) } }
            return data
        } catch {
            data.deallocate()
            throw error
        }
    }

    /// `count` non-null values in `encoding`.
    private func values(_ c: inout ByteCursor, count: Int, encoding: Int) throws -> ParquetColumn.Values {
        switch encoding {
        case Self.plain:
            return try plainValues(&c, count: count)
        case Self.plainDictionary, Self.rleDictionary:
            guard let dictionary else { throw ParquetFormatError("dictionary-encoded values without a dictionary page") }
            let width = Int(try c.byte())
            // A run header of 1 byte can stand for many indices, but not for more rows than the page has.
            var indices = [UInt32](repeating: 0, count: count)
            if count > 0 { try indices.withUnsafeMutableBufferPointer { try decodeHybrid(&c, bitWidth: width, count: count, into: $0.baseAddress!) } }
            return try gather(dictionary, indices)
        case Self.rle where column.type == .boolean:
            let runs = try c.take(Int(try c.littleEndian(UInt32.self)), "the boolean runs")
            var bits = ByteCursor(c.bytes, from: runs.lowerBound, to: runs.upperBound)
            var v = [UInt32](repeating: 0, count: count)
            if count > 0 { try v.withUnsafeMutableBufferPointer { try decodeHybrid(&bits, bitWidth: 1, count: count, into: $0.baseAddress!) } }
            return .boolean(v.map { $0 == 1 })
        default:
            let names = [
                1: "GROUP_VAR_INT", 3: "RLE", 4: "BIT_PACKED", 5: "DELTA_BINARY_PACKED", 6: "DELTA_LENGTH_BYTE_ARRAY", 7: "DELTA_BYTE_ARRAY",
                9: "BYTE_STREAM_SPLIT"
            ]
            throw ParquetFormatError("unsupported encoding \(names[encoding] ?? String(encoding)) (mm reads PLAIN and dictionary encodings)")
        }
    }

    /// `count` values in the PLAIN encoding, checked against the bytes left before anything is allocated.
    private func plainValues(_ c: inout ByteCursor, count: Int) throws -> ParquetColumn.Values {
        func fixed<T>(_ size: Int, _ load: (Int) -> T) throws -> [T] {
            guard count <= c.remaining / size else { throw ParquetFormatError("\(count) values of \(size) bytes in \(c.remaining) bytes") }
            let start = c.at
            c.at += count * size
            return (0..<count).map { load(start + $0 * size) }
        }
        let b = c.bytes
        switch column.type {
        case .boolean:
            guard count <= c.remaining * 8 else { throw ParquetFormatError("\(count) booleans in \(c.remaining) bytes") }
            let start = c.at
            c.at += (count + 7) / 8
            return .boolean((0..<count).map { b[start + $0 / 8] >> UInt8($0 % 8) & 1 == 1 })
        case .int32: return .int32(try fixed(4) { Int32(littleEndian: b.loadUnaligned(fromByteOffset: $0, as: Int32.self)) })
        case .int64: return .int64(try fixed(8) { Int64(littleEndian: b.loadUnaligned(fromByteOffset: $0, as: Int64.self)) })
        case .float: return .float(try fixed(4) { Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: $0, as: UInt32.self))) })
        case .double: return .double(try fixed(8) { Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: $0, as: UInt64.self))) })
        case .int96, .fixedLengthByteArray:
            let size = column.typeLength
            guard count <= c.remaining / size else { throw ParquetFormatError("\(count) values of \(size) bytes in \(c.remaining) bytes") }
            var out = ByteArrays()
            for _ in 0..<count { out.append(UnsafeRawBufferPointer(rebasing: b[try c.take(size, "a value")])) }
            return .bytes(out)
        case .byteArray:
            guard count <= c.remaining / 4 else { throw ParquetFormatError("\(count) byte arrays in \(c.remaining) bytes") }
            var out = ByteArrays()
            for _ in 0..<count {
                let length = Int(try c.littleEndian(UInt32.self))
                out.append(UnsafeRawBufferPointer(rebasing: b[try c.take(length, "a byte array")]))
            }
            return .bytes(out)
        }
    }

    /// The dictionary's values at `indices`, each checked.
    private func gather(_ dictionary: ParquetColumn.Values, _ indices: [UInt32]) throws -> ParquetColumn.Values {
        func pick<T>(_ d: [T]) throws -> [T] {
            try indices.map { i in
                guard Int(i) < d.count else { throw ParquetFormatError("dictionary index \(i) of \(d.count) entries") }
                return d[Int(i)]
            }
        }
        switch dictionary {
        case .boolean(let d): return .boolean(try pick(d))
        case .int32(let d): return .int32(try pick(d))
        case .int64(let d): return .int64(try pick(d))
        case .float(let d): return .float(try pick(d))
        case .double(let d): return .double(try pick(d))
        case .bytes(let d):
            var out = ByteArrays()
            for i in indices {
                guard Int(i) < d.count else { throw ParquetFormatError("dictionary index \(i) of \(d.count) entries") }
                out.append(d[Int(i)])
            }
            return .bytes(out)
        }
    }
}
