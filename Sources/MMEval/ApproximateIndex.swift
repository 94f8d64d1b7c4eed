import CFaiss
import Foundation
import MMFoundation
import MMTensor

/// An approximate nearest-neighbour index (faiss) over the rows of an `EmbeddingIndex`, saved
/// beside it: `gallery.mmi.ann` (faiss's own format) and `gallery.mmi.ann.json` (what it is and
/// which `.mmi` it was built from, by checksum). It only proposes candidates; `EmbeddingIndex`
/// re-scores them exactly from its own rows, so the scores returned are true cosines and a
/// compressed code (PQ, SQ8) costs recall only, never precision of the scores.
public final class ApproximateIndex: @unchecked Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Inverted file of √n-sized lists with 8-bit product-quantised codes: small (128 bytes a
        /// 512-d row), quick to build; `nprobe` lists are scanned per query.
        case ivfpq = "ivf-pq"
        /// Hierarchical navigable small-world graph (32 links a node) over 8-bit scalar-quantised
        /// rows: the best recall per query time, slower to build.
        case hnsw
    }

    /// The sidecar: what was built, from which index file, with which search settings.
    public struct Info: Codable, Equatable, Sendable {
        public var kind: Kind
        public var factory: String
        public var rows: Int
        public var dimension: Int
        /// The `.mmi` file's checksum (hex) when built: a rebuilt or edited index makes this one stale.
        public var checksum: String
        /// Lists scanned per query (IVF) or the graph's search breadth (HNSW).
        public var nprobe: Int?
        public var efSearch: Int?
        /// Candidates per wanted result that are re-scored exactly.
        public var candidatesPerResult: Int
        public var buildSeconds: Double?
    }

    public let info: Info
    private let handle: OpaquePointer

    /// faiss's OpenMP threads: 1 unless `MM_FAISS_THREADS` says otherwise. libgomp's threads spin
    /// at every barrier, and faiss opens a parallel region per small block: on two cores shared
    /// with BLAS's own threads (or other processes) that spinning made an IVF-PQ build 5× slower
    /// (17.5 s against 3.5 s for 21,000 rows, load ≈ 12). BLAS inside faiss still uses every core.
    static let threads: Int32 = {
        if let s = ProcessInfo.processInfo.environment["MM_FAISS_THREADS"], let n = Int32(s), n > 0 { return n }
        return 1
    }()

    /// Below this many rows `mm index build --ann` still builds what is asked, but searches stay
    /// exact: streaming 20,000 512-d rows (40 MB) costs a few milliseconds a query on two cores,
    /// the same order as an approximate search's fixed costs, and exact has perfect recall.
    public static let exactBelowRows = 20_000

    private init(info: Info, handle: OpaquePointer) {
        self.info = info
        self.handle = handle
    }

    deinit { mmf_free(handle) }

    /// The faiss factory string for `kind` over `rows` rows of `dimension`.
    public static func factory(_ kind: Kind, rows: Int, dimension: Int) -> String {
        switch kind {
        case .ivfpq:
            // About 4·√n lists (the power of two nearest it, 16…65,536: 4,096 for a million rows);
            // PQ with 4 dimensions a sub-quantiser when they divide evenly (128 bytes a 512-d row),
            // else 8-bit scalar codes.
            var lists = 16
            while lists < 65_536 && Double(lists) * 1.414 < 4 * Double(rows).squareRoot() { lists *= 2 }
            let code = dimension % 4 == 0 ? "PQ\(dimension / 4)" : "SQ8"
            return "IVF\(lists),\(code)"
        case .hnsw:
            return "HNSW32,SQ8"
        }
    }

    /// Builds an index of `kind` over every row of `index` (which must come from a file: the
    /// sidecar records its checksum). Training uses an evenly spaced sample of the rows.
    public static func build(_ index: EmbeddingIndex, kind: Kind, nprobe: Int? = nil, efSearch: Int? = nil) throws -> ApproximateIndex {
        guard let checksum = index.checksum else { throw EvalError.unsavedIndex }
        guard index.count > 0 else { throw EvalError.emptyIndex(file: index.file ?? "index") }
        let started = DispatchTime.now().uptimeNanoseconds
        mmf_set_threads(threads)
        let factory = factory(kind, rows: index.count, dimension: index.dimension)
        let rows = index.embeddings
        // k-means and the PQ codebooks converge on a sample: faiss itself caps training at 256 rows a centroid.
        let sampleSize = min(index.count, 150_000)
        let step = Double(index.count) / Double(sampleSize)
        let sample = index.embeddings(rows: (0..<sampleSize).map { Int(Double($0) * step) })
        var error = [CChar](repeating: 0, count: 512)
        var out: OpaquePointer?
        let status = mmf_build(
            factory, Int32(index.dimension), sample.data, Int64(sampleSize), rows.data, Int64(index.count), &out, &error, error.count)
        guard status == 0, let handle = out else {
            throw EvalError.faiss(file: index.file ?? "index", reason: "could not build \(factory) (\(String(cString: error)))")
        }
        let info = Info(
            kind: kind, factory: factory, rows: index.count, dimension: index.dimension,
            checksum: String(checksum, radix: 16), nprobe: kind == .ivfpq ? (nprobe ?? 64) : nil,
            efSearch: kind == .hnsw ? (efSearch ?? 128) : nil, candidatesPerResult: 10,
            buildSeconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        let built = ApproximateIndex(info: info, handle: handle)
        try built.applySearchParameters()
        return built
    }

    /// The files beside an index file.
    public static func files(beside index: URL) -> (faiss: URL, info: URL) {
        (URL(fileURLWithPath: index.path + ".ann"), URL(fileURLWithPath: index.path + ".ann.json"))
    }

    /// Saves the faiss index and its sidecar beside `index` (each written to a temporary file and renamed).
    public func save(beside index: URL) throws {
        let (faissURL, infoURL) = Self.files(beside: index)
        let temporary = faissURL.deletingLastPathComponent().path + "/.\(faissURL.lastPathComponent).\(getpid()).tmp"
        var error = [CChar](repeating: 0, count: 512)
        guard mmf_write(handle, temporary, &error, error.count) == 0 else {
            unlink(temporary)
            throw EvalError.faiss(file: faissURL.path, reason: "could not write the index (\(String(cString: error)))")
        }
        let fd = open(temporary, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temporary, faissURL.path) == 0 else {
            unlink(temporary)
            throw EvalError.unwritable(file: faissURL.path, reason: String(cString: strerror(errno)))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try encoder.encode(info)
        do { try AtomicFile.write(json, to: infoURL.path) } catch let error as FileError {
            throw EvalError.unwritable(file: error.path, reason: error.reason)
        }
    }

    /// The approximate index saved beside `index`'s file, nil when there is none; an error when it
    /// is unreadable or was built from other contents of the index (stale).
    public static func load(beside index: EmbeddingIndex) throws -> ApproximateIndex? {
        guard let file = index.file, let checksum = index.checksum else { return nil }
        let (faissURL, infoURL) = files(beside: URL(fileURLWithPath: file))
        guard FileManager.default.fileExists(atPath: infoURL.path) || FileManager.default.fileExists(atPath: faissURL.path) else { return nil }
        guard let bytes = try? ReadableFile(infoURL.path, maxSize: 1 << 20).readAll(),
            let info = try? JSONDecoder().decode(Info.self, from: Data(bytes))
        else {
            throw EvalError.staleApproximateIndex(file: infoURL.path, reason: "missing or unreadable approximate-index description")
        }
        guard info.checksum == String(checksum, radix: 16), info.rows == index.count, info.dimension == index.dimension else {
            throw EvalError.staleApproximateIndex(file: faissURL.path, reason: "built from other contents of \(file) (stale)")
        }
        guard (1...1000).contains(info.candidatesPerResult) else {
            throw EvalError.badIndex(file: infoURL.path, reason: "candidatesPerResult \(info.candidatesPerResult) is outside 1…1000")
        }
        var error = [CChar](repeating: 0, count: 512)
        var out: OpaquePointer?
        guard mmf_read(faissURL.path, &out, &error, error.count) == 0, let handle = out else {
            throw EvalError.faiss(file: faissURL.path, reason: "could not read it (\(String(cString: error)))")
        }
        let loaded = ApproximateIndex(info: info, handle: handle)
        guard mmf_count(handle) == Int64(index.count), Int(mmf_dimension(handle)) == index.dimension, mmf_is_inner_product(handle) == 1 else {
            throw EvalError.staleApproximateIndex(
                file: faissURL.path,
                reason: "holds \(mmf_count(handle)) rows of dimension \(mmf_dimension(handle)), the index \(index.count) of \(index.dimension)")
        }
        mmf_set_threads(threads)
        try loaded.applySearchParameters()
        return loaded
    }

    private func applySearchParameters() throws {
        var error = [CChar](repeating: 0, count: 512)
        for (name, value) in [("nprobe", info.nprobe), ("efSearch", info.efSearch)] {
            guard let value else { continue }
            guard mmf_set_parameter(handle, name, Double(value), &error, error.count) == 0 else {
                throw EvalError.faiss(file: nil, reason: "cannot set \(name) = \(value) (\(String(cString: error)))")
            }
        }
    }

    /// For each query row [Q, D], up to `count` candidate rows (best first by the approximate score).
    public func candidates(_ queries: Tensor, count: Int) throws -> [[Int]] {
        precondition(queries.rank == 2 && queries.shape[1] == info.dimension, "queries must have the index's dimension")
        let q = queries.shape[0], k = min(count, info.rows)
        guard q > 0, k > 0 else { return Array(repeating: [], count: q) }
        var scores = [Float](repeating: 0, count: q * k), labels = [Int64](repeating: -1, count: q * k)
        var error = [CChar](repeating: 0, count: 512)
        guard mmf_search(handle, queries.data, Int64(q), Int64(k), &scores, &labels, &error, error.count) == 0 else {
            throw EvalError.faiss(file: nil, reason: "search failed (\(String(cString: error)))")
        }
        return (0..<q).map { i in labels[(i * k)..<((i + 1) * k)].compactMap { $0 >= 0 && $0 < Int64(info.rows) ? Int($0) : nil } }
    }
}

extension EmbeddingIndex {
    /// Like `search(_:k:kind:)`, with candidates from `approximate` re-scored exactly (exact search
    /// when `approximate` is nil or the index is below `ApproximateIndex.exactBelowRows` rows).
    public func search(_ queries: Tensor, k: Int, kind: RowKind? = nil, approximate: ApproximateIndex?) throws -> [[Match]] {
        guard let approximate, count >= ApproximateIndex.exactBelowRows, k > 0 else { return search(queries, k: k, kind: kind) }
        // Rows of the other kind take candidate slots: ask for more when the index mixes kinds.
        let mixed = kind != nil && Set(kinds).count > 1
        let wanted = min(count, k * approximate.info.candidatesPerResult * (mixed ? 4 : 1))
        let lists = try approximate.candidates(queries, count: wanted)
        return lists.enumerated().map { i, list in
            let rows = list.filter { kind == nil || kinds[$0] == kind }
            guard !rows.isEmpty else { return [] }
            let query = Tensor(shape: [1, dimension], values: Array(UnsafeBufferPointer(start: queries.data + i * dimension, count: dimension)))
            let scores = withoutGradients { Tensor.matmul(query, embeddings(rows: rows), transposeB: true) }  // [1, n]
            let order = rows.indices.filter { !scores.data[$0].isNaN }
                .sorted { scores.data[$0] > scores.data[$1] || (scores.data[$0] == scores.data[$1] && rows[$0] < rows[$1]) }
            return order.prefix(k).map { j in Match(index: rows[j], id: ids[rows[j]], name: names[rows[j]], score: scores.data[j]) }
        }
    }
}
