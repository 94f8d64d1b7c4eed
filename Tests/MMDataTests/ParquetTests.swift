import Foundation
import MMData
import Testing

/// The Parquet reader against files pyarrow wrote (tools/make_clip_retrieval_fixture.py) and the
/// values it wrote them from (expected.json), and against broken files.
@Suite struct ParquetTests {
    static let folder = Paths.root + "/Tests/MMDataTests/Fixtures/parquet"
    static let expected: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: folder + "/expected.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    static var files: [String] { (expected["files"] as! [String: Any]).keys.sorted() }

    @Test(arguments: files) func readsEveryColumnAsWritten(file: String) throws {
        let parquet = try ParquetFile(path: Self.folder + "/" + file)
        let columns = Self.expected["columns"] as! [String: [String: Any]]
        let info = (Self.expected["files"] as! [String: [String: Any]])[file]!
        #expect(parquet.rowCount == info["rows"] as! Int)
        #expect(parquet.columns.map(\.name).sorted() == columns.keys.sorted())
        for (name, spec) in columns {
            let column = try #require(try parquet.read(column: name))
            let want = spec["values"] as! [Any]
            try #require(column.count == want.count, "\(file) \(name): \(column.count) rows")
            var wrong: [String] = []
            for (row, value) in want.enumerated() where !matches(column, row, value) {
                wrong.append("row \(row): \(column.text(row) ?? "null") ≠ \(value)")
            }
            #expect(wrong.isEmpty, "\(file) column \(name) (\(spec["type"]!)): \(wrong.count) wrong, first \(wrong.prefix(3))")
        }
    }

    /// Whether row `row` holds the value Python wrote (`NSNull` for null, hex for bytes and for
    /// the bits of floats).
    func matches(_ column: ParquetColumn, _ row: Int, _ value: Any) -> Bool {
        if value is NSNull { return column.isNull[row] }
        guard !column.isNull[row] else { return false }
        switch column.values {
        case .boolean(let v): return v[row] == (value as! Bool)
        case .int32(let v): return Int64(v[row]) == (value as! NSNumber).int64Value
        case .int64(let v): return v[row] == (value as! NSNumber).int64Value
        case .float(let v): return v[row].bitPattern == UInt32(value as! String, radix: 16)
        case .double(let v): return v[row].bitPattern == UInt64(value as! String, radix: 16)
        case .bytes(let v):
            let text = value as! String
            return column.text(row) == text || v[row].map { String(format: "%02x", $0) }.joined() == text
        }
    }

    @Test func severalRowGroupsAndPagesWereWritten() throws {
        // The options must have produced what the tests above claim to cover.
        let info = (Self.expected["files"] as! [String: [String: Any]])["snappy_v2_row_groups_pages.parquet"]!
        #expect(info["row_groups"] as! Int > 1)
    }

    @Test func zstdIsOneClearError() throws {
        let parquet = try ParquetFile(path: Self.folder + "/zstd.parquet")
        #expect(parquet.rowCount == 20)
        let error = try #require(throws: DataError.self) { try parquet.read(column: 0) }
        #expect("\(error)".contains("zstd.parquet") && "\(error)".contains("unsupported compression ZSTD"), "\(error)")
    }

    @Test func nestedColumnsAreListedButNotRead() throws {
        let parquet = try ParquetFile(path: Self.folder + "/nested.parquet")
        let spec = Self.expected["nested.parquet"] as! [String: Any]
        let ids = try #require(try parquet.read(column: "id"))
        #expect((0..<ids.count).map { ids.text($0)! } == (spec["id"] as! [Int]).map(String.init))
        let error = try #require(throws: DataError.self) { try parquet.read(column: 1) }
        #expect("\(error)".contains(spec["error"] as! String), "\(error)")
    }

    // MARK: Broken files

    static let scratch = Paths.scratch("parquet")

    func bytes(_ file: String) -> [UInt8] { Array(try! Data(contentsOf: URL(fileURLWithPath: Self.folder + "/" + file))) }

    /// Opens `bytes` as a file (of its own: tests run in parallel, and a mapped file must not
    /// change) and reads every readable column; the error, if any, must name the file.
    func readAll(_ bytes: [UInt8]) -> DataError? {
        let name = "broken-\(UUID().uuidString).parquet"
        let path = Paths.write(Self.scratch, name, bytes)
        defer { unlink(path) }
        do {
            let file = try ParquetFile(path: path)
            for (i, c) in file.columns.enumerated() where c.unsupported == nil { _ = try file.read(column: i) }
            return nil
        } catch let error as DataError {
            #expect("\(error)".hasPrefix(path + ": "), "\(error)")
            return error
        } catch {
            Issue.record("not a DataError: \(error)")
            return nil
        }
    }

    @Test func truncatedAndEmptyFilesAreOneError() {
        let good = bytes("snappy_dictionary_v1.parquet")
        for cut in [0, 3, 11, good.count / 2, good.count - 1] {
            let error = readAll(Array(good.prefix(cut)))
            #expect(error != nil, "cut at \(cut)")
        }
    }

    @Test func aFooterLengthBeyondTheFileIsRefused() {
        var b = bytes("gzip_plain_v1.parquet")
        b.replaceSubrange((b.count - 8)..<(b.count - 4), with: [0xFF, 0xFF, 0xFF, 0x7F])
        let error = readAll(b)
        #expect("\(String(describing: error))".contains("footer length 2147483647 is larger than the file"))
    }

    @Test func absurdCountsInTheFooterAreRefused() {
        // A footer by hand (Thrift compact): version 1, schema [root with 1 child, INT32 x],
        // num_rows 10¹⁵, no row groups.
        func zigzag(_ v: Int64) -> [UInt8] {
            var z = UInt64(bitPattern: (v << 1) ^ (v >> 63)), out: [UInt8] = []
            repeat {
                out.append(UInt8(z & 0x7F) | (z > 0x7F ? 0x80 : 0))
                z >>= 7
            } while z > 0
            return out
        }
        func file(rows: Int64, listCount: UInt8 = 2) -> [UInt8] {
            var footer: [UInt8] = [0x15] + zigzag(1) + [0x19, listCount << 4 | 0x0C]
            footer += [0x48, 6] + Array("schema".utf8) + [0x15] + zigzag(1) + [0]
            footer += [0x15] + zigzag(1) + [0x25] + zigzag(0) + [0x18, 1, UInt8(ascii: "x"), 0]
            footer += [0x16] + zigzag(rows) + [0x19, 0x0C, 0]
            let n = UInt32(footer.count)
            return Array("PAR1".utf8) + footer + [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), 0, 0] + Array("PAR1".utf8)
        }
        #expect(readAll(file(rows: 0)) == nil)
        #expect("\(String(describing: readAll(file(rows: 1_000_000_000_000_000))))".contains("the row count 1000000000000000 is outside"))
        #expect("\(String(describing: readAll(file(rows: 5))))".contains("the row groups hold 0 rows, the footer says 5"))
        // A list claiming 14 schema elements where 2 follow.
        #expect(readAll(file(rows: 0, listCount: 14)) != nil)
    }

    /// Every byte of a file's footer and of its first pages, in turn set to 0xFF (even offsets) or
    /// with one bit flipped: each read ends in values or one DataError (a trap would end the run).
    @Test(arguments: ["snappy_v2_row_groups_pages.parquet", "gzip_plain_v1.parquet"])
    func corruptedBytesNeverTrap(file: String) {
        let good = bytes(file)
        let footer = Int(good[good.count - 8]) | Int(good[good.count - 7]) << 8
        let positions = Array(4..<min(good.count, 256)) + Array((good.count - 8 - footer)..<good.count)
        var errors = 0
        for p in positions {
            var b = good
            b[p] = p % 2 == 0 && good[p] != 0xFF ? 0xFF : good[p] ^ 0x10
            if readAll(b) != nil { errors += 1 }
        }
        #expect(errors > 0)
    }
}
