import CFaiss
import CFastScan
import Foundation
import MMFoundation
import MMTensor

/// An approximate nearest-neighbour index over the rows of an `EmbeddingIndex`, saved beside it:
/// `gallery.mmi.ann` (faiss's own format, or mm's for `pq-scan`) and `gallery.mmi.ann.json` (what
/// it is and which `.mmi` it was built from, by checksum). The scores returned are always true
/// cosines: an `ivf` index holds the rows themselves and mm scans its lists; the other kinds only
/// propose candidates, which `EmbeddingIndex` re-scores from its own rows, so a compressed code
/// (PQ, SQ8) costs recall only, never precision of the scores.
public final class ApproximateIndex: @unchecked Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Inverted file of ≈4√n lists holding the float rows themselves (as much memory again as
        /// the rows): the `nprobe` lists nearest a query are scanned by mm with BLAS, so the scores
        /// are exact and only rows in unscanned lists can be missed. The fastest kind here: faiss
        /// as Debian builds it computes distances without SIMD.
        case ivf
        /// The same lists with product-quantised codes (a byte per 4 dimensions: 128 MB for a
        /// million 512-d rows), scanned by faiss, candidates re-scored: for galleries whose copy
        /// must be small.
        case ivfpq = "ivf-pq"
        /// Hierarchical navigable small-world graph (32 links a node) over 8-bit scalar-quantised
        /// rows: the best recall per query time, slower to build.
        case hnsw
        /// No partition: every row's product-quantised codes (6 bits per 4 dimensions where the
        /// CPU has AVX-512 VBMI, else 4 bits per 2: 128 bytes a 512-d row) are scanned with byte
        /// permutes or shuffles, and the best `candidatesPerResult` per result re-scored
        /// (`PQFastScan`). The kind for data without neighbourhoods, where IVF and HNSW cannot
        /// prune.
        case pqScan = "pq-scan"
        /// An index another tool wrote over the same rows (clip-retrieval's `image.index`, built
        /// by autofaiss), adopted as it is: its own search settings, candidates re-scored.
        /// mm never builds one (`ClipRetrievalFolder.adopt`).
        case adopted

        /// The kinds mm builds.
        public static var buildable: [Kind] { allCases.filter { $0 != .adopted } }
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

        /// Bits per code of a `pq-scan` index (its factory ends "x4fs" or "x6fs"), else nil.
        public var scanBits: Int? { kind == .pqScan ? (factory.hasSuffix("x6fs") ? 6 : 4) : nil }
    }

    /// Why this CPU scans a `pq-scan` index slowly (its codes' SIMD kernel is missing, so a
    /// portable loop scans them), else nil: an index built elsewhere is correct here, only slower.
    public var slowScanReason: String? {
        switch info.scanBits {
        case 6 where mmfs_has_vbmi() == 0:
            return "its 6-bit codes are scanned by a portable loop on this CPU (no AVX-512 VBMI); rebuild with --pq-bits 4"
        case 4 where mmfs_has_avx2() == 0: return "its codes are scanned by a portable loop on this CPU (no AVX2)"
        default: return nil
        }
    }

    public private(set) var info: Info
    /// faiss's index (nil for `pq-scan`).
    private let handle: OpaquePointer?
    /// The codes of a `pq-scan` index (nil for the faiss kinds).
    private let scan: PQFastScan?
    /// The lists of an `ivf` index, scanned here (nil for the kinds faiss searches).
    private let lists: Lists?

    /// An IVF index's centroids and lists (pointers into faiss's memory or its mapped file).
    struct Lists {
        let centroids: Tensor  // [lists, D]
        let rows: [UnsafePointer<Float>?], ids: [UnsafePointer<Int64>?], sizes: [Int]
    }

    /// faiss's OpenMP threads while building: 1 unless `MM_FAISS_THREADS` says otherwise. libgomp's
    /// threads spin at every barrier, and faiss opens a parallel region per small block: on two
    /// cores shared with BLAS's own threads (or other processes) that spinning made an IVF-PQ build
    /// 5× slower (17.5 s against 3.5 s for 21,000 rows, load ≈ 12).
    static let threads: Int32 = {
        if let s = ProcessInfo.processInfo.environment["MM_FAISS_THREADS"], let n = Int32(s), n > 0 { return n }
        return 1
    }()

    /// Below this many rows `mm index build --ann` still builds what is asked, but searches stay
    /// exact: streaming 20,000 512-d rows (40 MB) costs a few milliseconds a query on two cores,
    /// the same order as an approximate search's fixed costs, and exact has perfect recall.
    public static let exactBelowRows = 20_000

    private init(info: Info, handle: OpaquePointer) throws {
        self.info = info
        self.handle = handle
        scan = nil
        lists = info.kind == .ivf ? try Self.lists(of: handle, info: info) : nil
    }

    private init(info: Info, scan: PQFastScan) {
        self.info = info
        self.scan = scan
        handle = nil
        lists = nil
    }

    /// The lists of an IVF-Flat index, checked: every row number in range, all rows once.
    private static func lists(of handle: OpaquePointer, info: Info) throws -> Lists {
        var centroids: UnsafePointer<Float>?
        let count = Int(mmf_ivf_flat_lists(handle, &centroids))
        guard count > 0, let centroids else { throw EvalError.faiss(file: nil, reason: "an ivf index must be IVFn,Flat over a flat quantizer") }
        var rows: [UnsafePointer<Float>?] = [], ids: [UnsafePointer<Int64>?] = [], sizes: [Int] = []
        var seen = 0
        for l in 0..<count {
            var r: UnsafePointer<Float>?, i: UnsafePointer<Int64>?
            let n = Int(mmf_ivf_flat_list(handle, Int64(l), &r, &i))
            guard n >= 0, n == 0 || (r != nil && i != nil) else { throw EvalError.faiss(file: nil, reason: "list \(l) is unreadable") }
            for j in 0..<n where i![j] < 0 || i![j] >= info.rows {
                throw EvalError.faiss(file: nil, reason: "list \(l) names row \(i![j]) of \(info.rows)")
            }
            seen += n
            rows.append(r)
            ids.append(i)
            sizes.append(n)
        }
        guard seen == info.rows else { throw EvalError.faiss(file: nil, reason: "the lists hold \(seen) rows, the index \(info.rows)") }
        let c = Tensor(shape: [count, info.dimension], values: Array(UnsafeBufferPointer(start: centroids, count: count * info.dimension)))
        return Lists(centroids: c, rows: rows, ids: ids, sizes: sizes)
    }

    deinit { if let handle { mmf_free(handle) } }

    /// The number of IVF lists for `rows` rows: about 4·√n (the power of two nearest it,
    /// 16…65,536: 1,024 for 100,000 rows, 4,096 for a million).
    static func listCount(rows: Int) -> Int {
        var lists = 16
        while lists < 65_536 && Double(lists) * 1.414 < 4 * Double(rows).squareRoot() { lists *= 2 }
        return lists
    }

    /// The faiss factory string for `kind` over `rows` rows of `dimension`.
    public static func factory(_ kind: Kind, rows: Int, dimension: Int) -> String {
        let lists = listCount(rows: rows)
        switch kind {
        case .ivf:
            return "IVF\(lists),Flat"
        case .ivfpq:
            // 4 dimensions a sub-quantiser when they divide evenly, else 8-bit scalar codes.
            return "IVF\(lists),\(dimension % 4 == 0 ? "PQ\(dimension / 4)" : "SQ8")"
        case .hnsw:
            return "HNSW32,SQ8"
        case .pqScan:
            let bits = PQFastScan.defaultBits
            return PQFastScan.factory(dimension: dimension, subDimension: PQFastScan.defaultSubDimension(bits: bits), bits: bits)
        case .adopted:
            preconditionFailure("an adopted index is not built by mm")
        }
    }

    /// Lists scanned per query unless told: 1/64 of them, at least 8 (16 of 1,024 lists for
    /// 100,000 rows: recall@10 0.98 on real embeddings, docs/serve.md).
    public static func defaultNprobe(rows: Int) -> Int { max(8, listCount(rows: rows) / 64) }

    /// The search settings used when none are given.
    public static let defaultEfSearch = 128, defaultCandidatesPerResult = 10

    /// Candidates per wanted result re-scored unless told: `pq-scan` keeps more than the faiss
    /// kinds, cheaply, and its coarser 6-bit codes more than its 4-bit ones (docs/serve.md: on a
    /// million random 512-d rows 4-bit codes give recall@10 0.96 with 20, 0.98 with 30; 6-bit ones
    /// 0.96 with 80, 0.97 with 100).
    public static func defaultCandidates(_ kind: Kind, bits: Int = defaultScanBits) -> Int {
        kind == .pqScan ? defaultScanCandidates(bits: bits) : defaultCandidatesPerResult
    }
    public static func defaultScanCandidates(bits: Int) -> Int { bits == 6 ? 100 : 30 }
    /// Bits per code of the `pq-scan` indexes this CPU builds (6 with AVX-512 VBMI, else 4).
    public static var defaultScanBits: Int { PQFastScan.defaultBits }

    /// Builds an index of `kind` over every row of `index` (which must come from a file: the
    /// sidecar records its checksum). Training uses an evenly spaced sample of the rows.
    /// `pqBits` (4 or 6) and `pqDimensions`: bits per code and dimensions per sub-quantiser of
    /// `pq-scan` (defaults: `PQFastScan.defaultBits` and its dimensions; benchmarks compare).
    public static func build(
        _ index: EmbeddingIndex, kind: Kind, nprobe: Int? = nil, efSearch: Int? = nil, candidatesPerResult: Int? = nil,
        pqDimensions: Int? = nil, pqBits: Int? = nil
    ) throws -> ApproximateIndex {
        guard let checksum = index.checksum else { throw EvalError.unsavedIndex }
        guard index.count > 0 else { throw EvalError.emptyIndex(file: index.file ?? "index") }
        guard kind != .adopted else {
            throw EvalError.faiss(file: index.file, reason: "builds ivf, ivf-pq, hnsw or pq-scan indexes (an adopted one comes from another tool)")
        }
        let started = DispatchTime.now().uptimeNanoseconds
        func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }
        if kind == .pqScan {
            guard index.count <= Int(UInt32.max) else {
                throw EvalError.badIndex(file: index.file ?? "index", reason: "pq-scan holds at most 2³²−1 rows")
            }
            let bits = pqBits ?? PQFastScan.defaultBits
            guard bits == 4 || bits == 6 else {
                throw EvalError.badIndex(file: index.file ?? "index", reason: "pq-scan codes have 4 or 6 bits, not \(bits)")
            }
            let s = min(max(1, pqDimensions ?? PQFastScan.defaultSubDimension(bits: bits)), index.dimension)
            let info = Info(
                kind: kind, factory: PQFastScan.factory(dimension: index.dimension, subDimension: s, bits: bits), rows: index.count,
                dimension: index.dimension, checksum: String(checksum, radix: 16),
                candidatesPerResult: candidatesPerResult ?? defaultCandidates(kind, bits: bits))
            let built = ApproximateIndex(info: info, scan: PQFastScan.build(index, subDimension: s, bits: bits))
            built.info.buildSeconds = seconds()
            return built
        }
        mmf_set_threads(threads)
        let factory = factory(kind, rows: index.count, dimension: index.dimension)
        // k-means and the PQ codebooks converge on a sample: faiss itself caps training at 256 rows a centroid.
        let sampleSize = min(index.count, 150_000)
        let step = Double(index.count) / Double(sampleSize)
        let sample = index.embeddings(rows: (0..<sampleSize).map { Int(Double($0) * step) })
        var error = [CChar](repeating: 0, count: 512)
        var out: OpaquePointer?
        var status = mmf_build(factory, Int32(index.dimension), sample.data, Int64(sampleSize), &out, &error, error.count)
        // Rows go in by blocks of 65,536 (128 MB of 512-d rows): a mapped index is never copied whole.
        for first in stride(from: 0, to: index.count, by: 65_536) where status == 0 {
            let block = index.embeddings(rows: Array(first..<min(index.count, first + 65_536)))
            status = mmf_add(out, block.data, Int64(block.shape[0]), &error, error.count)
        }
        guard status == 0, let handle = out else {
            if let out { mmf_free(out) }
            throw EvalError.faiss(file: index.file ?? "index", reason: "could not build \(factory) (\(String(cString: error)))")
        }
        let info = Info(
            kind: kind, factory: factory, rows: index.count, dimension: index.dimension,
            checksum: String(checksum, radix: 16), nprobe: kind == .hnsw ? nil : (nprobe ?? defaultNprobe(rows: index.count)),
            efSearch: kind == .hnsw ? (efSearch ?? defaultEfSearch) : nil,
            candidatesPerResult: candidatesPerResult ?? defaultCandidates(kind),
            buildSeconds: seconds())
        let built = try ApproximateIndex(info: info, handle: handle)
        try built.applySearchParameters()
        return built
    }

    /// The files beside an index file.
    public static func files(beside index: URL) -> (faiss: URL, info: URL) {
        (URL(fileURLWithPath: index.path + ".ann"), URL(fileURLWithPath: index.path + ".ann.json"))
    }

    /// Saves the index and its sidecar beside `index` (each written to a temporary file and renamed).
    public func save(beside index: URL) throws {
        let (faissURL, infoURL) = Self.files(beside: index)
        if let scan { try scan.write(to: faissURL.path) } else { try saveFaiss(to: faissURL) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try encoder.encode(info)
        do { try AtomicFile.write(json, to: infoURL.path) } catch let error as FileError {
            throw EvalError.unwritable(file: error.path, reason: error.reason)
        }
    }

    private func saveFaiss(to faissURL: URL) throws {
        let temporary = faissURL.deletingLastPathComponent().path + "/.\(faissURL.lastPathComponent).\(getpid()).tmp"
        var error = [CChar](repeating: 0, count: 512)
        guard let handle, mmf_write(handle, temporary, &error, error.count) == 0 else {
            unlink(temporary)
            throw EvalError.faiss(file: faissURL.path, reason: "could not write the index (\(String(cString: error)))")
        }
        let fd = open(temporary, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temporary, faissURL.path) == 0 else {
            unlink(temporary)
            throw EvalError.unwritable(file: faissURL.path, reason: String(cString: strerror(errno)))
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
        if info.kind == .pqScan {
            return ApproximateIndex(info: info, scan: try PQFastScan.load(faissURL.path, rows: index.count, dimension: index.dimension))
        }
        var error = [CChar](repeating: 0, count: 512)
        var out: OpaquePointer?
        guard mmf_read(faissURL.path, &out, &error, error.count) == 0, let handle = out else {
            throw EvalError.faiss(file: faissURL.path, reason: "could not read it (\(String(cString: error)))")
        }
        let loaded = try ApproximateIndex(info: info, handle: handle)
        guard mmf_count(handle) == Int64(index.count), Int(mmf_dimension(handle)) == index.dimension, mmf_is_inner_product(handle) == 1 else {
            throw EvalError.staleApproximateIndex(
                file: faissURL.path,
                reason: "holds \(mmf_count(handle)) rows of dimension \(mmf_dimension(handle)), the index \(index.count) of \(index.dimension)")
        }
        try loaded.applySearchParameters()
        return loaded
    }

    /// Sets the kind's search breadth: `nprobe` (IVF), `efSearch` (HNSW) or candidates per result (`pq-scan`, adopted).
    public func tune(breadth: Int) throws {
        switch info.kind {
        case .ivf, .ivfpq: try tune(nprobe: breadth)
        case .hnsw: try tune(efSearch: breadth)
        case .pqScan, .adopted: try tune(candidatesPerResult: breadth)
        }
    }

    /// Changes the search settings (not while searches run: benchmarks sweep them on one build).
    public func tune(nprobe: Int? = nil, efSearch: Int? = nil, candidatesPerResult: Int? = nil) throws {
        if info.kind == .ivf || info.kind == .ivfpq, let nprobe { info.nprobe = nprobe }
        if info.kind == .hnsw, let efSearch { info.efSearch = efSearch }
        if let candidatesPerResult { info.candidatesPerResult = candidatesPerResult }
        try applySearchParameters()
    }

    private func applySearchParameters() throws {
        guard let handle else { return }
        var error = [CChar](repeating: 0, count: 512)
        for (name, value) in [("nprobe", info.nprobe), ("efSearch", info.efSearch)] {
            guard let value else { continue }
            guard mmf_set_parameter(handle, name, Double(value), &error, error.count) == 0 else {
                throw EvalError.faiss(file: nil, reason: "cannot set \(name) = \(value) (\(String(cString: error)))")
            }
        }
    }

    /// The best k rows for each query [Q, D] of an `ivf` index, by exact inner product: the `nprobe`
    /// lists whose centroids score highest are scanned. Each list is scanned once for all the
    /// queries that probe it (one BLAS product), the lists spread over the cores, each core
    /// keeping its own best k per query, merged at the end. `allowed` masks rows (nil: all).
    func searchLists(_ queries: Tensor, k: Int, allowed: [Bool]?) -> [[(row: Int, score: Float)]] {
        guard let lists else { preconditionFailure("searchLists needs an ivf index") }
        let q = queries.shape[0], d = info.dimension, count = lists.sizes.count
        let probe = min(info.nprobe ?? Self.defaultNprobe(rows: info.rows), count)
        guard q > 0, k > 0 else { return Array(repeating: [], count: q) }
        let coarse = withoutGradients { Tensor.matmul(queries, lists.centroids, transposeB: true) }  // [Q, lists]
        // The lists each query probes (-1: none, for a NaN query), then for each list the queries probing it.
        var probes = [Int](repeating: -1, count: q * probe)
        probes.withUnsafeMutableBufferPointer { probes in
            let probes = probes, nearest = UnsafeMutablePointer<Float>.allocate(capacity: q * probe)
            defer { nearest.deallocate() }
            DispatchQueue.concurrentPerform(iterations: min(Threads.count, q)) { w in
                for i in stride(from: w, to: q, by: min(Threads.count, q)) {
                    var filled = 0
                    keepBest(
                        coarse.data + i * count, count: count, k: probe, best: nearest + i * probe, at: probes.baseAddress! + i * probe,
                        filled: &filled)
                }
            }
        }
        var start = [Int](repeating: 0, count: count + 1)
        for l in probes where l >= 0 { start[l + 1] += 1 }
        for l in 0..<count { start[l + 1] += start[l] }
        var members = [Int](repeating: 0, count: start[count]), next = start
        for (p, l) in probes.enumerated() where l >= 0 {
            members[next[l]] = p / probe
            next[l] += 1
        }
        let workers = max(1, min(Threads.count, count)), found = WorkersBest(workers: workers, queries: q, k: k)
        // Queries per product: at most 256, and no more than any list is probed by (1 for one query).
        let chunk = max(1, min(256, (0..<count).map { start[$0 + 1] - start[$0] }.max() ?? 1)), longest = lists.sizes.max() ?? 0
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let block = UnsafeMutablePointer<Float>.allocate(capacity: chunk * d)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * max(1, longest))
            defer { block.deallocate(); scores.deallocate() }
            for l in stride(from: w, to: count, by: workers) {
                let n = lists.sizes[l]
                guard n > 0, let rows = lists.rows[l], let ids = lists.ids[l] else { continue }
                for first in stride(from: start[l], to: start[l + 1], by: chunk) {
                    let m = min(chunk, start[l + 1] - first)
                    for j in 0..<m { (block + j * d).update(from: queries.data + members[first + j] * d, count: d) }
                    sgemm(transA: false, transB: true, m: m, n: n, k: d, a: block, lda: d, b: rows, ldb: d, c: scores, ldc: n, parallel: false)
                    for j in 0..<m {
                        let row = scores + j * n
                        if let allowed { for r in 0..<n where !allowed[Int(ids[r])] { row[r] = .nan } }
                        found.keep(row, count: n, rows: ids, worker: w, query: members[first + j])
                    }
                }
            }
        }
        return found.merged()
    }

    /// For each query row [Q, D], up to `count` candidate rows (for the faiss kinds best first by the
    /// approximate score). For faiss the queries are split over `Threads.count` threads, each running
    /// faiss on one OpenMP thread (faiss's searches are read-only; its own OpenMP split spins at
    /// barriers on shared cores).
    public func candidates(_ queries: Tensor, count: Int) throws -> [[Int]] {
        precondition(queries.rank == 2 && queries.shape[1] == info.dimension, "queries must have the index's dimension")
        if let scan { return scan.candidates(queries, count: count) }
        guard let handle else { preconditionFailure("a faiss kind has a handle") }
        let q = queries.shape[0], k = min(count, info.rows), d = info.dimension
        guard q > 0, k > 0 else { return Array(repeating: [], count: q) }
        var scores = [Float](repeating: 0, count: q * k), labels = [Int64](repeating: -1, count: q * k)
        let chunks = min(Threads.count, q)
        var failures = [String?](repeating: nil, count: chunks)
        scores.withUnsafeMutableBufferPointer { scores in
            labels.withUnsafeMutableBufferPointer { labels in
                failures.withUnsafeMutableBufferPointer { failures in
                    let (scores, labels, failures) = (scores, labels, failures)
                    DispatchQueue.concurrentPerform(iterations: chunks) { c in
                        let lo = q * c / chunks, hi = q * (c + 1) / chunks
                        var error = [CChar](repeating: 0, count: 512)
                        mmf_set_threads(1)
                        if mmf_search(
                            handle, queries.data + lo * d, Int64(hi - lo), Int64(k), scores.baseAddress! + lo * k,
                            labels.baseAddress! + lo * k, &error, error.count) != 0
                        {
                            failures[c] = String(cString: error)
                        }
                    }
                }
            }
        }
        if let failure = failures.compactMap({ $0 }).first { throw EvalError.faiss(file: nil, reason: "search failed (\(failure))") }
        return (0..<q).map { i in labels[(i * k)..<((i + 1) * k)].compactMap { $0 >= 0 && $0 < Int64(info.rows) ? Int($0) : nil } }
    }
}

extension EmbeddingIndex {
    /// Like `search(_:k:kind:)`, with candidates from `approximate` re-scored exactly (exact search
    /// when `approximate` is nil or the index is below `ApproximateIndex.exactBelowRows` rows).
    public func search(_ queries: Tensor, k: Int, kind: RowKind? = nil, approximate: ApproximateIndex?) throws -> [[Match]] {
        guard let approximate, count >= ApproximateIndex.exactBelowRows, k > 0 else { return search(queries, k: k, kind: kind) }
        if approximate.info.kind == .ivf {
            let allowed: [Bool]? = kind.flatMap { kind in presentKinds == [kind] ? nil : kinds.map { $0 == kind } }
            return approximate.searchLists(queries, k: min(k, count), allowed: allowed).map { found in
                found.map { Match(index: $0.row, id: ids[$0.row], name: names[$0.row], score: $0.score) }
            }
        }
        // Rows of the other kind take candidate slots: ask for more when the index mixes kinds.
        let mixed = kind != nil && presentKinds.count > 1
        let wanted = min(count, k * approximate.info.candidatesPerResult * (mixed ? 4 : 1))
        let lists = try approximate.candidates(queries, count: wanted)
        var results = [[Match]](repeating: [], count: lists.count)
        results.withUnsafeMutableBufferPointer { results in
            let results = results
            DispatchQueue.concurrentPerform(iterations: min(Threads.count, lists.count)) { w in
                for i in stride(from: w, to: lists.count, by: Threads.count) {
                    results[i] = rescore(queries.data + i * dimension, lists[i].filter { kind == nil || kinds[$0] == kind }, k: k)
                }
            }
        }
        return results
    }

    /// The k best of `rows` by exact cosine with one query (ties: the earlier row). The rows are
    /// scored where they lie (`mmfs_dots`, prefetching ahead): pq-scan re-scores hundreds of
    /// scattered candidates a query.
    private func rescore(_ query: UnsafePointer<Float>, _ rows: [Int], k: Int) -> [Match] {
        guard !rows.isEmpty else { return [] }
        let k = min(k, rows.count)
        let which = rows.map { r -> Int64 in
            precondition(r >= 0 && r < count, "row out of range")
            return Int64(r)
        }
        var scores = [Float](repeating: 0, count: rows.count)
        var best = [Float](repeating: 0, count: k), at = [Int](repeating: 0, count: k), filled = 0
        withRows { all in mmfs_dots(query, all, Int64(dimension), which, Int32(which.count), &scores) }
        keepBest(scores, count: scores.count, rows: which, k: k, best: &best, at: &at, filled: &filled)
        return (0..<filled).map { j in Match(index: at[j], id: ids[at[j]], name: names[at[j]], score: best[j]) }
    }
}
