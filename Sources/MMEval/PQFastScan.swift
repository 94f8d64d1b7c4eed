import CFastScan
import Dispatch
import Foundation
import MMFoundation
import MMTensor

/// The codes of a `pq-scan` approximate index: every row product-quantised, each group of
/// `subDimension` dimensions to one of 2^`bits` centroids — 6 bits (64 centroids) for 4
/// dimensions where the CPU has AVX-512 VBMI, else 4 bits (16 centroids) for 2; 128 bytes a 512-d
/// row either way — and all of them scanned for each query with a look-up table of small integers
/// (`CFastScan`). Nothing is pruned, so it works on data without neighbourhoods (random vectors) as on real embeddings; the
/// scan is cheap because a row costs a few byte shuffles instead of 512 multiply-adds, and the
/// best candidates are re-scored exactly by `EmbeddingIndex`.
///
/// File (`gallery.mmi.ann`, little-endian): magic `MMPQSCAN`, UInt32 version, UInt32 dimension,
/// UInt32 dimensions per sub-quantiser, UInt32 centroids per sub-quantiser (16 or 64), UInt64 rows,
/// the centroids as float32 [sub-quantisers, centroids, dimensions per sub-quantiser] (zero past
/// the last dimension), the codes in blocks of 32 or 64 rows (layouts in fastscan.h), and a UInt64
/// FNV-1a checksum of everything before it.
final class PQFastScan: @unchecked Sendable {
    static let magic: [UInt8] = Array("MMPQSCAN".utf8)
    static let version: UInt32 = 1
    static let headerBytes = 32
    /// 6-bit codes where the CPU scans them with byte permutes (AVX-512 VBMI: 64 lookups of a
    /// 64-entry table an instruction), else 4-bit ones (AVX2's 16-entry byte shuffles). The
    /// 6-bit scan of a 512-d row is half as long and ranks a little worse (docs/serve.md).
    static var defaultBits: Int { mmfs_has_vbmi() == 1 ? 6 : 4 }
    /// Dimensions per sub-quantiser: for 4 bits 2 rather than 4 (twice the codes to scan) because
    /// the finer codes rank so much better that far fewer candidates need re-scoring; for 6 bits
    /// 4, the same 128 bytes a 512-d row (docs/serve.md).
    static func defaultSubDimension(bits: Int) -> Int { bits == 6 ? 4 : 2 }

    let rows: Int, dimension: Int, subDimension: Int, bits: Int
    /// [subquantizers, centroidCount, subDimension]
    let centroids: [Float]
    var centroidCount: Int { 1 << bits }
    var subquantizers: Int { (dimension + subDimension - 1) / subDimension }
    var groups: Int { Self.groups(subquantizers: subquantizers, bits: bits) }
    var groupBytes: Int { Int(mmfs_group_bytes(Int32(bits))) }
    /// Bytes of a query's look-up table (one block's worth of groups).
    var tableBytes: Int { groups * groupBytes }
    var blocks: Int {
        let blockRows = Int(mmfs_block_rows(Int32(bits)))
        return (rows + blockRows - 1) / blockRows
    }
    var codeBytes: Int { Self.codeBytes(rows: rows, subquantizers: subquantizers, bits: bits) }
    /// The codes: in memory after a build, in the mapped file after a load (never both).
    private let codes: UnsafeRawPointer
    private let allocated: UnsafeMutableRawPointer?
    private let map: MappedFile?

    /// The sub-quantiser count and bits in faiss's naming ("PQ128x4fs"; faiss's fast scan has
    /// 4 bits only).
    static func factory(dimension: Int, subDimension: Int, bits: Int) -> String {
        "PQ\((dimension + subDimension - 1) / subDimension)x\(bits)fs"
    }

    private init(
        rows: Int, dimension: Int, subDimension: Int, bits: Int, centroids: [Float], allocated: UnsafeMutableRawPointer?,
        map: MappedFile?, codes: UnsafeRawPointer
    ) {
        (self.rows, self.dimension, self.subDimension, self.bits, self.centroids) = (rows, dimension, subDimension, bits, centroids)
        (self.allocated, self.map, self.codes) = (allocated, map, codes)
    }

    deinit { allocated?.deallocate() }

    // MARK: Building

    /// Trains the sub-quantisers on an evenly spaced sample of `index`'s rows (k-means per
    /// sub-space, fixed seed) and encodes every row.
    static func build(_ index: EmbeddingIndex, subDimension: Int, bits: Int) -> PQFastScan {
        precondition(bits == 4 || bits == 6, "pq-scan codes have 4 or 6 bits")
        let d = index.dimension, s = min(subDimension, d), m = (d + s - 1) / s, k = 1 << bits
        let sampleSize = min(index.count, 65_536)
        let step = Double(index.count) / Double(sampleSize)
        let sample = index.embeddings(rows: (0..<sampleSize).map { Int(Double($0) * step) })
        var centroids = [Float](repeating: 0, count: m * k * s)
        centroids.withUnsafeMutableBufferPointer { c in
            let c = c, workers = max(1, min(Threads.count, m))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for j in stride(from: w, to: m, by: workers) {
                    let into = c.baseAddress! + j * k * s
                    kmeans(sample.data + j * s, count: sampleSize, stride: d, width: min(s, d - j * s), into: into, k: k, s: s, seed: j)
                }
            }
        }
        let bytes = PQFastScan.codeBytes(rows: index.count, subquantizers: m, bits: bits)
        let codes = UnsafeMutableRawPointer.allocate(byteCount: max(1, bytes), alignment: 64)
        codes.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let scan = PQFastScan(
            rows: index.count, dimension: d, subDimension: s, bits: bits, centroids: centroids, allocated: codes, map: nil, codes: codes)
        // Rows by blocks of 16,384 (32 MB of 512-d rows): a mapped index is never copied whole.
        for first in stride(from: 0, to: index.count, by: 16_384) {
            let block = index.embeddings(rows: Array(first..<min(index.count, first + 16_384)))
            scan.encode(block, firstRow: first, into: codes.assumingMemoryBound(to: UInt8.self))
        }
        return scan
    }

    /// Groups of a block and of a table (fastscan.h): pairs of sub-quantisers for 4 bits, one each for 6.
    static func groups(subquantizers m: Int, bits: Int) -> Int { bits == 6 ? m : (m + 1) / 2 }

    /// Bytes of the codes of `rows` rows (whole blocks).
    static func codeBytes(rows: Int, subquantizers m: Int, bits: Int) -> Int {
        let blockRows = Int(mmfs_block_rows(Int32(bits)))
        return (rows + blockRows - 1) / blockRows * groups(subquantizers: m, bits: bits) * Int(mmfs_group_bytes(Int32(bits)))
    }

    /// Lloyd's k-means of one sub-space: `count` points of `width` floats, `stride` apart, into `k`
    /// centroids (rows of `s` floats). Distances through BLAS: |x − c|² ranks as |c|²/2 − x·c.
    private static func kmeans(
        _ x: UnsafePointer<Float>, count n: Int, stride: Int, width w: Int, into c: UnsafeMutablePointer<Float>, k: Int, s: Int, seed: Int
    ) {
        var g = SeededGenerator(seed: 0x5043_5343_414E, index: seed)
        // Distinct sample points to start from (repeats only when there are fewer than k points).
        var start = Set<Int>()
        for j in 0..<k {
            var p = Int.random(in: 0..<n, using: &g)
            while n >= k && start.contains(p) { p = Int.random(in: 0..<n, using: &g) }
            start.insert(p)
            for t in 0..<w { c[j * s + t] = x[p * stride + t] }
        }
        let dots = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
        defer { dots.deallocate() }
        var sums = [Float](repeating: 0, count: k * w), counts = [Int](repeating: 0, count: k), half = [Float](repeating: 0, count: k)
        for _ in 0..<20 {
            sgemm(transA: false, transB: true, m: n, n: k, k: w, a: x, lda: stride, b: c, ldb: s, c: dots, ldc: k, parallel: false)
            for j in 0..<k { half[j] = (0..<w).reduce(0) { $0 + c[j * s + $1] * c[j * s + $1] } / 2 }
            for j in sums.indices { sums[j] = 0 }
            for j in 0..<k { counts[j] = 0 }
            for i in 0..<n where dots[i * k].isFinite {  // a NaN or infinite row trains nothing
                let best = nearest(dots + i * k, half, k: k)
                counts[best] += 1
                for t in 0..<w { sums[best * w + t] += x[i * stride + t] }
            }
            for j in 0..<k {
                if counts[j] > 0 {
                    for t in 0..<w { c[j * s + t] = sums[j * w + t] / Float(counts[j]) }
                } else {  // an empty cell restarts at a random point
                    let p = Int.random(in: 0..<n, using: &g)
                    for t in 0..<w { c[j * s + t] = x[p * stride + t] }
                }
            }
        }
        for i in 0..<(k * s) where !c[i].isFinite { c[i] = 0 }  // (a start or restart at such a row)
    }

    /// The centroid with the largest x·c − |c|²/2 (the nearest); a NaN row gets centroid 0.
    @inline(__always)
    private static func nearest(_ dots: UnsafePointer<Float>, _ half: [Float], k: Int) -> Int {
        var best = 0, score = dots[0] - half[0]
        for j in 1..<k where dots[j] - half[j] > score {
            best = j
            score = dots[j] - half[j]
        }
        return best
    }

    /// Encodes rows [n, D] starting at row `firstRow` into the block layout (sub-spaces over the cores).
    private func encode(_ block: Tensor, firstRow: Int, into codes: UnsafeMutablePointer<UInt8>) {
        let n = block.shape[0], d = dimension, s = subDimension, k = centroidCount, groupBytes = groupBytes, groups = groups
        let workers = max(1, min(Threads.count, subquantizers))
        centroids.withUnsafeBufferPointer { c in
            let c = c
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let dots = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
                defer { dots.deallocate() }
                var half = [Float](repeating: 0, count: k)
                for m in stride(from: w, to: subquantizers, by: workers) {
                    let width = min(s, d - m * s), centre = c.baseAddress! + m * k * s
                    sgemm(
                        transA: false, transB: true, m: n, n: k, k: width, a: block.data + m * s, lda: d, b: centre, ldb: s, c: dots, ldc: k,
                        parallel: false)
                    for j in 0..<k { half[j] = (0..<width).reduce(0) { $0 + centre[j * s + $1] * centre[j * s + $1] } / 2 }
                    if bits == 6 {
                        for i in 0..<n {
                            let row = firstRow + i
                            codes[(row / 64) * groups * 64 + m * 64 + row % 64] = UInt8(Self.nearest(dots + i * k, half, k: k))
                        }
                        continue
                    }
                    // Sub-quantisers 2p and 2p+1 fill different bytes, so the workers never share one.
                    let lane = (m / 2) * groupBytes + (m % 2) * 16
                    for i in 0..<n {
                        let row = firstRow + i, code = UInt8(Self.nearest(dots + i * k, half, k: k))
                        let byte = codes + (row / 32) * groups * groupBytes + lane + row % 16
                        byte.pointee |= row % 32 < 16 ? code : code << 4
                    }
                }
            }
        }
    }

    // MARK: Searching

    /// Each query's look-up table [Q, tableBytes] (fastscan.h layout): the inner products of its
    /// sub-vectors with the centroids (one BLAS product per sub-space), minus each sub-quantiser's
    /// smallest, times one scale for the whole table, rounded to integers 0…63 for 4 bits, 0…31 for
    /// 6 (fewer when the largest possible sum would reach 2¹⁶). The sum over a row's codes is then
    /// an increasing affine function of the row's approximate inner product, up to the rounding.
    func tables(_ queries: Tensor) -> [UInt8] {
        let q = queries.shape[0], d = dimension, s = subDimension, k = centroidCount, m = subquantizers
        let products = Tensor.zeros([q, m * k])
        centroids.withUnsafeBufferPointer { c in
            for j in 0..<m {
                sgemm(
                    transA: false, transB: true, m: q, n: k, k: min(s, d - j * s), a: queries.data + j * s, lda: d, b: c.baseAddress! + j * k * s,
                    ldb: s, c: products.data + j * k, ldc: m * k, parallel: false)
            }
        }
        let levels = Float(min(bits == 6 ? 31 : 63, 65_535 / m)), tableBytes = tableBytes
        var tables = [UInt8](repeating: 0, count: q * tableBytes)
        for i in 0..<q {
            let row = products.data + i * m * k
            var widest: Float = 0
            for j in 0..<m {
                let values = UnsafeBufferPointer(start: row + j * k, count: k)
                widest = max(widest, values.max()! - values.min()!)
            }
            let scale = levels / widest
            guard scale.isFinite else { continue }  // a constant, NaN or infinite query: all zero
            for j in 0..<m {
                let values = UnsafeBufferPointer(start: row + j * k, count: k), low = values.min()!
                let table = i * tableBytes + (bits == 6 ? j * 64 : (j / 2) * 32 + (j % 2) * 16)
                for t in 0..<k {
                    let v = ((values[t] - low) * scale).rounded()
                    tables[table + t] = v >= 0 ? UInt8(min(v, levels)) : 0
                }
            }
        }
        return tables
    }

    /// For each query [Q, D], the `count` rows with the largest table sums (in no particular
    /// order; among equal sums the earlier rows). The rows are split over the cores; each scans
    /// its share for a batch of queries at once, and the shares' best are merged.
    func candidates(_ queries: Tensor, count: Int) -> [[Int]] {
        let q = queries.shape[0], keep = min(count, rows)
        guard q > 0, keep > 0 else { return Array(repeating: [], count: q) }
        let tables = tables(queries), tableBytes = tableBytes
        let workers = max(1, min(Threads.count, blocks))
        // Queries per pass: the buffers (2 × keep keys a query and worker) stay within 32 MB.
        let batch = max(1, min(q, (1 << 21) / (keep * workers)))
        let kept = UnsafeMutablePointer<UInt64>.allocate(capacity: workers * batch * 2 * keep)
        let found = UnsafeMutablePointer<Int32>.allocate(capacity: 2 * workers * batch)  // counts, then thresholds
        defer { kept.deallocate(); found.deallocate() }
        var result: [[Int]] = []
        result.reserveCapacity(q)
        tables.withUnsafeBufferPointer { tables in
            let tables = tables
            for first in stride(from: 0, to: q, by: batch) {
                let n = min(batch, q - first)
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    let slot = w * batch
                    mmfs_scan(
                        codes.assumingMemoryBound(to: UInt8.self), Int64(blocks * w / workers), Int64(blocks * (w + 1) / workers), Int64(rows),
                        Int32(groups), tables.baseAddress! + first * tableBytes, Int32(n), Int32(keep), kept + slot * 2 * keep, found + slot,
                        found + workers * batch + slot, Int32(bits), 2)
                }
                for i in 0..<n {
                    for w in 1..<workers {
                        let other = w * batch + i
                        mmfs_merge(kept + i * 2 * keep, found + i, Int32(keep), kept + other * 2 * keep, found[other])
                    }
                    result.append((0..<Int(found[i])).map { Int(mmfs_row(kept[i * 2 * keep + $0])) })
                }
            }
        }
        return result
    }

    // MARK: Files

    /// Writes the file atomically (header, centroids, codes, checksum).
    func write(to path: String) throws {
        var head = Self.magic
        for value in [Self.version, UInt32(dimension), UInt32(subDimension), UInt32(centroidCount)] {
            withUnsafeBytes(of: value.littleEndian) { head += $0 }
        }
        withUnsafeBytes(of: UInt64(rows).littleEndian) { head += $0 }
        centroids.withUnsafeBytes { head += $0 }  // (x86-64 floats are little-endian)
        do {
            try AtomicFile.write(to: path) { out in
                var sum = FNV1a()
                head.withUnsafeBytes { sum.combine(words: $0) }  // 32 + a multiple of 64 bytes: whole words
                try out.write(head)
                let body = UnsafeRawBufferPointer(start: codes, count: codeBytes)
                sum.combine(words: body)
                try out.write(body)
                try withUnsafeBytes(of: sum.value.littleEndian) { try out.write($0) }
            }
        } catch let error as FileError {
            throw EvalError.unwritable(file: error.path, reason: error.reason)
        }
    }

    /// Maps and checks the file written for an index of `rows` rows of `dimension`: every header
    /// field against those and the file's size before anything is sized from it, then the checksum
    /// and the centroids (finite). The codes are searched in the map.
    static func load(_ path: String, rows: Int, dimension: Int) throws -> PQFastScan {
        let map: MappedFile
        do { map = try MappedFile(path) } catch let error as FileError {
            throw EvalError.unreadable(file: path, what: "approximate index", reason: error.reason)
        }
        let bytes = map.bytes
        func bad(_ reason: String) -> EvalError { .badIndex(file: path, reason: reason) }
        func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard bytes.count >= headerBytes + 8, Array(bytes[0..<8]) == magic else { throw bad("not a pq-scan index (no MMPQSCAN magic)") }
        let version = read(UInt32.self, at: 8)
        guard version == Self.version else { throw bad("pq-scan version \(version), this mm reads version \(Self.version)") }
        let fileDimension = Int(read(UInt32.self, at: 12)), s = Int(read(UInt32.self, at: 16))
        let k = Int(read(UInt32.self, at: 20)), fileRows = read(UInt64.self, at: 24)
        guard fileDimension == dimension else { throw bad("dimension \(fileDimension), the index has \(dimension)") }
        guard (1...dimension).contains(s) else { throw bad("dimensions per sub-quantiser \(s) is outside 1…\(dimension)") }
        guard k == 16 || k == 64 else { throw bad("centroids per sub-quantiser \(k), expected 16 or 64") }
        let bits = k == 64 ? 6 : 4
        guard fileRows == UInt64(rows), rows <= Int(UInt32.max) else { throw bad("rows \(fileRows), the index has \(rows)") }
        // Sizes from checked fields only: dimension ≤ the index's, rows = the index's.
        let m = (dimension + s - 1) / s, centroidFloats = m * k * s, codeBytes = codeBytes(rows: rows, subquantizers: m, bits: bits)
        let expected = headerBytes + centroidFloats * 4 + codeBytes + 8
        guard bytes.count == expected else { throw bad("file size \(bytes.count) bytes, expected \(expected) for its header") }
        var sum = FNV1a()
        sum.combine(words: UnsafeRawBufferPointer(rebasing: bytes[0..<(expected - 8)]))
        guard read(UInt64.self, at: expected - 8) == sum.value else { throw bad("checksum mismatch, the file is corrupt (rebuild it)") }
        let centroids = (0..<centroidFloats).map { Float(bitPattern: read(UInt32.self, at: headerBytes + 4 * $0)) }
        guard centroids.allSatisfy(\.isFinite) else { throw bad("a centroid is not finite") }
        return PQFastScan(
            rows: rows, dimension: dimension, subDimension: s, bits: bits, centroids: centroids, allocated: nil, map: map,
            codes: bytes.baseAddress! + headerBytes + centroidFloats * 4)
    }
}
