import Dispatch
import Foundation
import MMCLIP
import MMFoundation

/// A gallery of normalised embeddings with the names they belong to, searched exactly: per block
/// of rows one BLAS product with the queries, then each query's running top k is updated.
///
/// Rows are images (named by their file) or texts (named by the text itself); each has a stable
/// integer id (kept when the row is re-embedded, never reused) and optional metadata: one value per
/// column (`caption`, `url`, and whatever else a captions file carried).
///
/// File layout (little-endian): magic `MMINDEX\0`, UInt32 version, UInt32 header length, a JSON
/// header (model fingerprint, dimension, names, modification times; from version 2 also ids,
/// row kinds, metadata columns and values) padded with spaces so the rows start at a multiple of
/// 64 bytes, the float32 rows [count, dimension], and a UInt64 FNV-1a checksum of everything
/// before it. Version 1 files (images only, ids = row numbers) are still read. `load(from:)`
/// memory-maps the file: the rows stay in the page cache and each search reads them in blocks
/// where they lie, so an index larger than free memory can still be searched.
public struct EmbeddingIndex {
    public static let magic: [UInt8] = Array("MMINDEX\u{0}".utf8)
    public static let version: UInt32 = 2
    /// The versions `load(from:)` reads.
    public static let readableVersions: ClosedRange<UInt32> = 1...2
    /// The most rows a search scores at once: 32 MB of 512-d rows (fewer when many queries share
    /// the block, so that its scores stay in cache).
    static let blockBytes = 32 << 20
    /// The largest embedding dimension a file may declare (ViT-bigG's is 1280): a bound checked
    /// before any size is computed from the header.
    public static let maximumDimension = 1 << 16

    struct Header: Codable {
        var model: String
        var dimension: Int
        var names: [String]
        var modified: [Double]?
        var ids: [Int]?
        var kinds: [RowKind]?
        var columns: [String]?
        var metadata: [[String]]?
    }

    /// What a row embeds: an image file or a text.
    public enum RowKind: String, Codable, Sendable, CaseIterable {
        case image, text
    }

    /// One search result: the row, its stable id, its name and its cosine with the query.
    public struct Match: Equatable, Sendable {
        public let index: Int
        public let id: Int
        public let name: String
        public let score: Float
    }

    /// Identifies the model that made the embeddings; queries must come from the same one.
    public let modelFingerprint: String
    public private(set) var names: [String]
    /// Per name, the file's modification time (seconds since 1970) when it was embedded, if known:
    /// `mm index add` re-embeds only files that changed.
    public private(set) var modified: [Double]?
    /// Per row, its stable id.
    public private(set) var ids: [Int]
    /// Per row, what it embeds.
    public private(set) var kinds: [RowKind]
    /// The kinds present (kept with `kinds`: a search asks per query batch whether the index mixes
    /// them, and a set of a million rows' kinds took 31 ms to build).
    public private(set) var presentKinds: Set<RowKind>
    /// The metadata columns (e.g. `caption`, `url`), and per row one value per column ("" = none).
    public private(set) var columns: [String]
    public private(set) var metadata: [[String]]
    public let dimension: Int
    /// The file this index was loaded from, for error messages.
    public let file: String?
    /// The file's checksum when loaded from one (an approximate index beside it records it).
    public let checksum: UInt64?
    private var rows: Rows
    private var rowOfID: [Int: Int]

    /// An index of `embeddings` [count, dimension] (unit rows), one per name; ids are the row
    /// numbers, kinds `image` unless given, `metadata` one row of `columns.count` values per name.
    public init(
        modelFingerprint: String, names: [String], embeddings: Tensor, modified: [Double]? = nil,
        kinds: [RowKind]? = nil, columns: [String] = [], metadata: [[String]]? = nil
    ) {
        precondition(embeddings.rank == 2 && embeddings.shape[0] == names.count, "one embedding row per name")
        precondition(modified == nil || modified!.count == names.count, "one modification time per name")
        precondition(kinds == nil || kinds!.count == names.count, "one kind per name")
        precondition(
            metadata == nil || (metadata!.count == names.count && metadata!.allSatisfy { $0.count == columns.count }),
            "one metadata row of every column per name")
        self.modelFingerprint = modelFingerprint
        self.names = names
        self.modified = modified
        self.ids = Array(0..<names.count)
        self.kinds = kinds ?? Array(repeating: .image, count: names.count)
        self.presentKinds = Set(self.kinds)
        self.columns = columns
        self.metadata = metadata ?? Array(repeating: Array(repeating: "", count: columns.count), count: names.count)
        self.dimension = embeddings.shape[1]
        self.file = nil
        self.checksum = nil
        self.rows = .memory(embeddings)
        self.rowOfID = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
    }

    public var count: Int { names.count }

    /// The row holding `id`, if any.
    public func row(id: Int) -> Int? { rowOfID[id] }

    /// A row's value in a metadata column, nil when the column is absent or the value empty.
    public func field(_ column: String, row: Int) -> String? {
        guard let c = columns.firstIndex(of: column), !metadata[row][c].isEmpty else { return nil }
        return metadata[row][c]
    }

    /// A row's caption: its `caption` column, else the text itself for a text row.
    public func caption(row: Int) -> String? {
        field("caption", row: row) ?? (kinds[row] == .text ? names[row] : nil)
    }

    /// All rows as one tensor [count, dimension] (a copy when the index is mapped from a file).
    public var embeddings: Tensor {
        switch rows {
        case .memory(let t): return t
        case .mapped(let file, let offset):
            let t = Tensor.zeros([count, dimension])
            UnsafeMutableRawPointer(t.data).copyMemory(from: file.bytes.baseAddress! + offset, byteCount: t.count * 4)
            return t
        }
    }

    /// The rows `rows` [n, dimension] (copied out of memory or the map).
    public func embeddings(rows wanted: [Int]) -> Tensor {
        let t = Tensor.zeros([wanted.count, dimension])
        withRowBytes { raw in
            for (i, r) in wanted.enumerated() {
                precondition(r >= 0 && r < count, "row out of range")
                UnsafeMutableRawPointer(t.data + i * dimension).copyMemory(from: raw.baseAddress! + r * dimension * 4, byteCount: dimension * 4)
            }
        }
        return t
    }

    /// Adds rows: a name (of the same kind) already in the index has its row, time and metadata
    /// replaced and keeps its id; others are appended with new ids. `metadata` holds one row of
    /// `columns.count` values per name; columns new to the index are added (empty for old rows).
    public mutating func add(
        names added: [String], embeddings e: Tensor, modified times: [Double]? = nil,
        kind: RowKind = .image, columns addedColumns: [String] = [], metadata addedMetadata: [[String]]? = nil
    ) {
        precondition(e.rank == 2 && e.shape[0] == added.count && e.shape[1] == dimension, "one row of the index's dimension per name")
        precondition(times == nil || times!.count == added.count, "one modification time per name")
        precondition(
            addedMetadata == nil || (addedMetadata!.count == added.count && addedMetadata!.allSatisfy { $0.count == addedColumns.count }),
            "one metadata row of every column per name")
        for c in addedColumns where !columns.contains(c) {
            columns.append(c)
            for r in metadata.indices { metadata[r].append("") }
        }
        let place = addedColumns.map { columns.firstIndex(of: $0)! }
        var row: [String: Int] = [:]
        for (i, name) in names.enumerated() where kinds[i] == kind { row[name] = i }
        var values = embeddings.scalars
        var allTimes = modified ?? names.map { _ in -1 }
        var nextID = (ids.max() ?? -1) + 1
        for (r, name) in added.enumerated() {
            let vector = UnsafeBufferPointer(start: e.data + r * dimension, count: dimension)
            let time = times?[r] ?? -1
            var fields = Array(repeating: "", count: columns.count)
            if let m = addedMetadata?[r] { for (j, c) in place.enumerated() { fields[c] = m[j] } }
            if let i = row[name] {
                values.replaceSubrange((i * dimension)..<((i + 1) * dimension), with: vector)
                allTimes[i] = time
                if addedMetadata != nil { metadata[i] = fields }
            } else {
                row[name] = names.count
                rowOfID[nextID] = names.count
                names.append(name)
                ids.append(nextID)
                kinds.append(kind)
                presentKinds.insert(kind)
                metadata.append(fields)
                allTimes.append(time)
                values += vector
                nextID += 1
            }
        }
        modified = modified == nil && times == nil ? nil : allTimes
        rows = .memory(Tensor(shape: [names.count, dimension], values: values))
    }

    /// A fingerprint of a model's weights: a hash over every parameter's bits, with the config.
    public static func fingerprint(_ model: CLIPModel) -> String {
        var h = FNV1a()
        for (key, t) in model.namedParameters() {
            h.combine(bytes: key.utf8)
            let words = UnsafeRawPointer(t.data).assumingMemoryBound(to: UInt32.self)
            for i in 0..<t.count { h.combine(word: UInt64(words[i])) }
        }
        return "\(FNV1a.hex(h.value))-d\(model.config.embedDim)"
    }

    /// Throws unless the queries' model (its `fingerprint`) is the one that built the index and
    /// its embeddings have the index's dimension (a file can claim a fingerprint it was not built with).
    public func requireModel(_ fingerprint: String, dimension modelDimension: Int? = nil) throws {
        guard fingerprint == modelFingerprint else {
            throw EvalError.modelMismatch(
                file: file ?? "index",
                reason:
                    "built with another model (fingerprint \(modelFingerprint), this model has \(fingerprint)); rebuild the index with this checkpoint"
            )
        }
        if let modelDimension, modelDimension != dimension {
            throw EvalError.modelMismatch(
                file: file ?? "index", reason: "rows have dimension \(dimension) but the model's embeddings have \(modelDimension)")
        }
    }

    // MARK: Files

    /// Writes the index atomically: a temporary file beside it, fsync, rename over the old one,
    /// fsync of the folder. The old file stays whole until the rename, and the new one is complete
    /// once it has a name.
    public func save(to url: URL) throws {
        var head = Self.magic
        append(Self.version, to: &head)
        let header = Header(
            model: modelFingerprint, dimension: dimension, names: names, modified: modified, ids: ids,
            kinds: kinds, columns: columns, metadata: columns.isEmpty ? nil : metadata)
        var json = try JSONEncoder().encode(header)
        json += [UInt8](repeating: 0x20, count: (64 - (16 + json.count) % 64) % 64)
        append(UInt32(json.count), to: &head)
        head += json
        do {
            try AtomicFile.write(to: url.path) { out in
                var sum = FNV1a()
                try head.withUnsafeBytes { raw in
                    sum.combine(words: raw)
                    try out.write(raw)
                }
                // Rows straight from memory or the mapped file, in blocks (one copy at most).
                try withRowBytes { raw in
                    var start = 0
                    while start < raw.count {
                        let part = UnsafeRawBufferPointer(rebasing: raw[start..<min(raw.count, start + Self.blockBytes)])
                        sum.combine(words: part)
                        try out.write(part)
                        start += part.count
                    }
                }
                try withUnsafeBytes(of: sum.value.littleEndian) { try out.write($0) }
            }
        } catch let error as FileError {
            throw EvalError.unwritable(file: error.path, reason: error.reason)
        }
    }

    /// Maps an index file read-only and verifies it; a wrong magic, version, size or checksum, or
    /// a header whose fields disagree, is an error naming the file. Every header field is checked
    /// before it sizes anything. The rows are not copied: searches read them from the map.
    public static func load(from url: URL) throws -> EmbeddingIndex {
        let file = url.path
        let map: MappedFile
        do { map = try MappedFile(file) } catch let error as FileError {
            throw EvalError.unreadable(file: file, what: "index", reason: error.reason)
        }
        let bytes = map.bytes
        guard !bytes.isEmpty else { throw EvalError.badIndex(file: file, reason: "not an mm index (empty file)") }
        func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard bytes.count >= 24, Array(bytes[0..<8]) == magic else {
            throw EvalError.badIndex(file: file, reason: "not an mm index (no MMINDEX magic)")
        }
        let version = read(UInt32.self, at: 8)
        guard readableVersions.contains(version) else {
            throw EvalError.badIndex(
                file: file, reason: "index version \(version), this mm reads versions \(readableVersions.lowerBound)–\(readableVersions.upperBound)")
        }
        var sum = FNV1a()
        sum.combine(words: UnsafeRawBufferPointer(rebasing: bytes[0..<(bytes.count - 8)]))
        guard read(UInt64.self, at: bytes.count - 8) == sum.value else {
            throw EvalError.badIndex(file: file, reason: "checksum mismatch, the index is corrupt (rebuild it)")
        }
        let headerLength = Int(read(UInt32.self, at: 12))
        guard headerLength <= bytes.count - 24,
            let header = try? JSONDecoder().decode(Header.self, from: Data(bytes[16..<(16 + headerLength)]))
        else {
            throw EvalError.badIndex(file: file, reason: "unreadable index header")
        }
        let n = header.names.count
        func check(_ what: String, _ count: Int?) throws {
            if let count, count != n { throw EvalError.badIndex(file: file, reason: "index header has \(count) \(what) for \(n) names") }
        }
        try check("modification times", header.modified?.count)
        try check("ids", header.ids?.count)
        try check("row kinds", header.kinds?.count)
        try check("metadata rows", header.metadata?.count)
        let columns = header.columns ?? []
        if let bad = header.metadata?.firstIndex(where: { $0.count != columns.count }) {
            throw EvalError.badIndex(
                file: file, reason: "index metadata row \(bad) has \(header.metadata![bad].count) values for \(columns.count) columns")
        }
        if let ids = header.ids, Set(ids).count != n { throw EvalError.badIndex(file: file, reason: "index header repeats an id") }
        guard header.dimension > 0, header.dimension <= maximumDimension else {
            throw EvalError.badIndex(file: file, reason: "index dimension \(header.dimension) is outside 1…\(maximumDimension)")
        }
        // count × dimension × 4 cannot overflow now (count < file size, dimension ≤ 2¹⁶), but
        // say so in the arithmetic rather than trust it.
        let start = 16 + headerLength
        let (floats, o1) = n.multipliedReportingOverflow(by: header.dimension)
        let (expected, o2) = floats.multipliedReportingOverflow(by: 4)
        guard !o1, !o2, bytes.count - 8 - start == expected else {
            throw EvalError.badIndex(
                file: file,
                reason:
                    "index holds \(bytes.count - 8 - start) bytes of embeddings, expected \(o1 || o2 ? "more than can be addressed" : String(expected))"
            )
        }
        return EmbeddingIndex(header: header, file: file, checksum: sum.value, rows: .mapped(map, offset: start))
    }

    private init(header: Header, file: String, checksum: UInt64, rows: Rows) {
        modelFingerprint = header.model
        names = header.names
        modified = header.modified
        ids = header.ids ?? Array(0..<header.names.count)
        kinds = header.kinds ?? Array(repeating: .image, count: header.names.count)
        presentKinds = Set(kinds)
        columns = header.columns ?? []
        metadata = header.metadata ?? Array(repeating: Array(repeating: "", count: columns.count), count: header.names.count)
        dimension = header.dimension
        self.file = file
        self.checksum = checksum
        self.rows = rows
        rowOfID = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
    }

    // MARK: Search

    /// For each query row [Q, D] (normalised), the k best rows by cosine, best first (ties: the
    /// earlier row first), only rows of `kind` when given. Rows whose score is NaN (a NaN or
    /// infinite embedding) never rank. The rows are scored in blocks of `blockRows` rows (default:
    /// about 1 MB of scores, at most 32 MB of rows).
    public func search(_ queries: Tensor, k: Int, kind: RowKind? = nil, blockRows: Int? = nil) -> [[Match]] {
        precondition(queries.rank == 2 && queries.shape[1] == dimension, "queries must have the index's dimension")
        let q = queries.shape[0], k = min(k, count), d = dimension
        guard k > 0, q > 0 else { return Array(repeating: [], count: q) }
        // Rows of another kind are skipped by a per-row mask (nil: every row counts).
        let mask: [Bool]? = kind.flatMap { kind in presentKinds == [kind] ? nil : kinds.map { $0 == kind } }
        // The rows are split into blocks, and the blocks over the cores: each worker scores its
        // blocks with a single-threaded product and keeps its own best k per query, merged at the
        // end. Every row is read once, where it lies (memory or the map), and the scores of a
        // block stay in cache (about 1 MB of them).
        let block = blockRows ?? min(max(256, (1 << 18) / q), max(1, Self.blockBytes / (d * 4)))
        let blocks = (count + block - 1) / block, workers = max(1, min(Threads.count, blocks))
        let found = WorkersBest(workers: workers, queries: q, k: k)
        withRows { rows in
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: q * min(block, count))
                defer { scores.deallocate() }
                for b in stride(from: w, to: blocks, by: workers) {
                    let first = b * block, n = min(block, count - first)
                    sgemm(
                        transA: false, transB: true, m: q, n: n, k: d, a: queries.data, lda: d, b: rows + first * d, ldb: d, c: scores,
                        ldc: n, parallel: false)
                    if let mask { for j in 0..<n where !mask[first + j] { for i in 0..<q { scores[i * n + j] = .nan } } }
                    for i in 0..<q { found.keep(scores + i * n, count: n, first: first, worker: w, query: i) }
                }
            }
        }
        return found.merged().map { found in found.map { Match(index: $0.row, id: ids[$0.row], name: names[$0.row], score: $0.score) } }
    }

    // MARK: Rows

    /// Where the rows live: a tensor, or a region of a mapped index file.
    private enum Rows {
        case memory(Tensor)
        case mapped(MappedFile, offset: Int)
    }

    /// Calls `body` with the rows [count, dimension] where they lie (memory or the map).
    func withRows(_ body: (UnsafePointer<Float>) -> Void) {
        withRowBytes { body($0.baseAddress!.assumingMemoryBound(to: Float.self)) }
    }

    private func withRowBytes(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        switch rows {
        case .memory(let t): try body(UnsafeRawBufferPointer(start: t.data, count: t.count * 4))
        case .mapped(let file, let offset): try body(UnsafeRawBufferPointer(start: file.bytes.baseAddress! + offset, count: count * dimension * 4))
        }
    }

    private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

/// Each worker's running best k for each query (`keepBest`), in one allocation, merged at the
/// end: searches split rows (or lists) over the cores, and each core keeps its own best.
final class WorkersBest: @unchecked Sendable {
    let queries: Int, k: Int, workers: Int
    private let best: UnsafeMutablePointer<Float>, at: UnsafeMutablePointer<Int>, filled: UnsafeMutablePointer<Int>

    init(workers: Int, queries: Int, k: Int) {
        (self.workers, self.queries, self.k) = (workers, queries, k)
        best = .allocate(capacity: workers * queries * k)
        at = .allocate(capacity: workers * queries * k)
        filled = .allocate(capacity: workers * queries)
        filled.initialize(repeating: 0, count: workers * queries)
    }

    deinit {
        best.deallocate()
        at.deallocate()
        filled.deallocate()
    }

    /// Merges `count` scores into worker `w`'s best for `query` (as `keepBest`).
    @inline(__always)
    func keep(_ scores: UnsafePointer<Float>, count: Int, first: Int = 0, rows: UnsafePointer<Int64>? = nil, worker w: Int, query: Int) {
        let slot = w * queries + query
        keepBest(scores, count: count, first: first, rows: rows, k: k, best: best + slot * k, at: at + slot * k, filled: &filled[slot])
    }

    /// Each query's best k of all workers' (worker 0's, the others merged into it), best first.
    func merged() -> [[(row: Int, score: Float)]] {
        (0..<queries).map { i in
            for w in 1..<workers {
                let slot = w * queries + i
                for j in 0..<filled[slot] {
                    var score = best[slot * k + j]
                    keepBest(&score, count: 1, first: at[slot * k + j], k: k, best: best + i * k, at: at + i * k, filled: &filled[i])
                }
            }
            return (0..<filled[i]).map { (at[i * k + $0], best[i * k + $0]) }
        }
    }
}

/// Merges `count` scores (of rows `first…`, or of `rows[0..<count]` when given) into one query's
/// best k, kept sorted best first in `best`/`at` with `filled` entries. Ties go to the earlier row;
/// rows in ascending order make that "a tie is not a win", so after the first few thousand rows
/// almost every row costs one comparison. NaN scores never enter.
@inline(__always)
func keepBest(
    _ scores: UnsafePointer<Float>, count: Int, first: Int = 0, rows: UnsafePointer<Int64>? = nil, k: Int,
    best: UnsafeMutablePointer<Float>, at: UnsafeMutablePointer<Int>, filled: inout Int
) {
    for j in 0..<count {
        let v = scores[j]
        guard !v.isNaN else { continue }
        let row = rows == nil ? first + j : Int(rows![j])
        if filled == k { guard v > best[k - 1] || (v == best[k - 1] && row < at[k - 1]) else { continue } } else { filled += 1 }
        var slot = filled - 1
        while slot > 0, best[slot - 1] < v || (best[slot - 1] == v && at[slot - 1] > row) {
            best[slot] = best[slot - 1]
            at[slot] = at[slot - 1]
            slot -= 1
        }
        best[slot] = v
        at[slot] = row
    }
}
