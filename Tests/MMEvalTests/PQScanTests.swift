import CFastScan
import Foundation
import MMEval
import MMTensor
import MMTestSupport
import Testing

/// Random `bits`-bit codes (4 or 6) of `rows` rows and `subquantizers` sub-quantisers, random
/// 8-bit tables of `tables` queries (values ≤ 63 for 4 bits, ≤ 31 for 6, fastscan.h), and both
/// packed into fastscan.h's block layouts (written here from the header's description,
/// independently of the index's encoder).
private struct Codes {
    let rows: Int, subquantizers: Int, bits: Int
    let codes: [[UInt8]]  // [row][sub-quantiser]
    let tables: [[[UInt8]]]  // [query][sub-quantiser][centroid]
    var groups: Int { bits == 6 ? subquantizers : (subquantizers + 1) / 2 }
    var blockRows: Int { bits == 6 ? 64 : 32 }
    var blocks: Int { (rows + blockRows - 1) / blockRows }
    var blockBytes: Int { groups * (bits == 6 ? 64 : 32) }

    init(rows: Int, subquantizers: Int, tables queries: Int, bits: Int = 4, seed: UInt64) {
        var g = SeededGenerator(seed: seed)
        (self.rows, self.subquantizers, self.bits) = (rows, subquantizers, bits)
        let top: UInt8 = bits == 6 ? 63 : 15, most: UInt8 = bits == 6 ? 31 : 63
        codes = (0..<rows).map { _ in (0..<subquantizers).map { _ in UInt8.random(in: 0...top, using: &g) } }
        tables = (0..<queries).map { _ in (0..<subquantizers).map { _ in (0...Int(top)).map { _ in UInt8.random(in: 0...most, using: &g) } } }
    }

    var packed: [UInt8] {
        var out = [UInt8](repeating: 0, count: blocks * blockBytes)
        for r in 0..<rows {
            for m in 0..<subquantizers {
                if bits == 6 {
                    // The two bits above a code are not read: set them to prove it.
                    out[(r / 64) * blockBytes + m * 64 + r % 64] = codes[r][m] | 0xC0
                    continue
                }
                let byte = (r / 32) * blockBytes + (m / 2) * 32 + (m % 2) * 16 + r % 16
                out[byte] |= r % 32 < 16 ? codes[r][m] : codes[r][m] << 4
            }
        }
        return out
    }

    /// Query q's table in the block layout (a missing odd sub-quantiser's values stay 0).
    func packedTable(_ q: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: blockBytes)
        for m in 0..<subquantizers {
            for (c, value) in tables[q][m].enumerated() { out[bits == 6 ? m * 64 + c : (m / 2) * 32 + (m % 2) * 16 + c] = value }
        }
        return out
    }

    /// The sum over sub-quantisers of the table at the row's codes, the brute-force way.
    func naive(_ q: Int, row: Int) -> Int { (0..<subquantizers).reduce(0) { $0 + Int(tables[q][$1][Int(codes[row][$1])]) } }
}

/// Every query's sums by the kernels of `level` (fastscan.h): [query][row].
private func sums(_ c: Codes, level: Int32) -> [[UInt16]] {
    let q = c.tables.count
    let stride = c.blocks * c.blockRows
    var out = [UInt16](repeating: 0, count: q * stride)
    mmfs_sums(c.packed, Int64(c.blocks), Int32(c.groups), (0..<q).flatMap { c.packedTable($0) }, Int32(q), &out, Int32(c.bits), level)
    return (0..<q).map { Array(out[($0 * stride)..<($0 * stride + c.rows)]) }
}

/// The kept rows of `mmfs_scan` for every query, sorted by (sum descending, row); with `split`,
/// two scans of blocks [0, split) and [split, end) merged.
private func scan(_ c: Codes, keep: Int, level: Int32, split: Int? = nil) -> [[Int]] {
    let q = c.tables.count, tables = (0..<q).flatMap { c.packedTable($0) }, codes = c.packed
    var kept = [UInt64](repeating: 0, count: 2 * q * 2 * keep)
    var count = [Int32](repeating: 0, count: 2 * q), above = [Int32](repeating: 0, count: q)
    let end = Int64(c.blocks), middle = Int64(split ?? c.blocks)
    kept.withUnsafeMutableBufferPointer { k in
        count.withUnsafeMutableBufferPointer { n in
            let (k, n) = (k.baseAddress!, n.baseAddress!)
            let (groups, bits) = (Int32(c.groups), Int32(c.bits))
            mmfs_scan(codes, 0, middle, Int64(c.rows), groups, tables, Int32(q), Int32(keep), k, n, &above, bits, level)
            let other = k + q * 2 * keep
            mmfs_scan(codes, middle, end, Int64(c.rows), groups, tables, Int32(q), Int32(keep), other, n + q, &above, bits, level)
            for i in 0..<q { mmfs_merge(k + i * 2 * keep, n + i, Int32(keep), other + i * 2 * keep, n[q + i]) }
        }
    }
    return (0..<q).map { i -> [Int] in
        let keys = kept[(i * 2 * keep)..<(i * 2 * keep + Int(count[i]))]
        return ranked(keys.map { (sum: Int(mmfs_sum($0)), row: Int(mmfs_row($0))) })
    }
}

/// Rows by sum, largest first, ties by row.
private func ranked(_ entries: [(sum: Int, row: Int)]) -> [Int] {
    entries.sorted { (a: (sum: Int, row: Int), b: (sum: Int, row: Int)) -> Bool in a.sum > b.sum || (a.sum == b.sum && a.row < b.row) }.map(\.row)
}

private func temporaryFile() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("mm-pqscan-\(UUID().uuidString).mmi")
}

/// Rows around 200 cluster centres (the shape of real embeddings), and queries from the same
/// distribution; as in IndexTests' approximate-search test.
private func clustered(rows n: Int, queries: Int, dimension d: Int, seed: UInt64) -> (EmbeddingIndex, Tensor) {
    var g = SeededGenerator(seed: seed)
    let centres = g.tensor([200, d], requiresGrad: false), noise = g.tensor([n + queries, d], requiresGrad: false)
    let rows = Tensor.zeros([n, d]), near = Tensor.zeros([queries, d])
    for i in 0..<n { for j in 0..<d { rows.data[i * d + j] = centres.data[(i % 200) * d + j] + 0.3 * noise.data[i * d + j] } }
    for i in 0..<queries { for j in 0..<d { near.data[i * d + j] = centres.data[(i * 7 % 200) * d + j] + 0.3 * noise.data[(n + i) * d + j] } }
    let index = EmbeddingIndex(modelFingerprint: "m", names: (0..<n).map { "r\($0)" }, embeddings: withoutGradients { rows.l2Normalized() })
    return (index, withoutGradients { near.l2Normalized() })
}

@Suite struct PQScanTests {
    /// mm is built for Haswell and later (Package.swift), so the AVX2 kernels are the ones compared;
    /// this machine also has AVX-512VL, which the four-query kernel needs, and VBMI, which the
    /// 6-bit kernel needs.
    @Test func simdAndPortableKernelsEqualTheNaiveSum() {
        #expect(mmfs_has_avx2() == 1)
        #expect(mmfs_has_avx512vl() == 1)
        #expect(mmfs_has_vbmi() == 1)
        // 128 sub-quantisers (512-d) and odd counts (a pair padded, a last group of fewer than four
        // pairs); 6 queries: one group of four, then two alone.
        for (rows, subquantizers) in [(200, 128), (32, 4), (45, 7), (1, 1), (70, 256)] {
            let c = Codes(rows: rows, subquantizers: subquantizers, tables: 6, seed: UInt64(rows))
            let portable = sums(c, level: 0)
            #expect(portable == (0..<6).map { q in (0..<rows).map { UInt16(c.naive(q, row: $0)) } }, "\(rows) rows × \(subquantizers)")
            #expect(sums(c, level: 1) == portable, "\(rows) rows × \(subquantizers)")
            #expect(sums(c, level: 2) == portable, "\(rows) rows × \(subquantizers)")
        }
        // 6 bits: 5 queries (two pairs, then one alone); blocks in fours and a tail (9 blocks; 11
        // blocks of 256 sub-quantisers in chunks of 8 and 3); lookups in eights and a remainder.
        for (rows, subquantizers) in [(200, 128), (576, 9), (704, 256), (45, 7), (1, 1)] {
            let c = Codes(rows: rows, subquantizers: subquantizers, tables: 5, bits: 6, seed: UInt64(rows))
            let portable = sums(c, level: 0)
            #expect(portable == (0..<5).map { q in (0..<rows).map { UInt16(c.naive(q, row: $0)) } }, "6 bits, \(rows) rows × \(subquantizers)")
            #expect(sums(c, level: 2) == portable, "6 bits, \(rows) rows × \(subquantizers)")
        }
    }

    /// The scan keeps each query's best rows by sum (ties: the earlier row), with every kernel of
    /// both code widths, and two scans of halves merged keep the same rows as one scan of all.
    @Test func scanKeepsTheBestRowsAndMergesHalves() {
        // Small sums (many ties), and sums over several high bytes (the trims' histograms).
        let cases = [
            (Codes(rows: 1_000, subquantizers: 6, tables: 5, seed: 3), 50), (Codes(rows: 1_000, subquantizers: 6, tables: 5, bits: 6, seed: 3), 50),
            (Codes(rows: 3_000, subquantizers: 64, tables: 3, bits: 6, seed: 5), 300)
        ]
        for (c, keep) in cases {
            let expected = (0..<c.tables.count).map { q in Array(ranked((0..<c.rows).map { (sum: c.naive(q, row: $0), row: $0) }).prefix(keep)) }
            for level: Int32 in [0, 1, 2] {
                #expect(scan(c, keep: keep, level: level) == expected, "\(c.bits) bits, level \(level)")
                #expect(scan(c, keep: keep, level: level, split: 13) == expected, "\(c.bits) bits, level \(level)")
            }
        }
        // More kept than rows: every row.
        #expect(scan(Codes(rows: 40, subquantizers: 3, tables: 1, seed: 4), keep: 64, level: 2)[0].count == 40)
    }

    /// The re-scoring's dot products equal a plain sum for every tail of the vector loop (lengths
    /// not a multiple of 32 or 8), in any row order and with repeated rows.
    @Test func rescoringDotsEqualAPlainSum() {
        var g = SeededGenerator(seed: 8)
        for dimension in [1, 7, 8, 13, 40, 64, 77] {
            let rows = (0..<(20 * dimension)).map { _ in Float.random(in: -1...1, using: &g) }
            let query = (0..<dimension).map { _ in Float.random(in: -1...1, using: &g) }
            let which: [Int64] = [19, 0, 7, 7, 3, 12, 5, 18, 1, 9, 9, 4]  // more than the rows prefetched ahead
            var out = [Float](repeating: .nan, count: which.count)
            mmfs_dots(query, rows, Int64(dimension), which, Int32(which.count), &out)
            for (i, r) in which.enumerated() {
                let plain = (0..<dimension).reduce(Float(0)) { $0 + query[$1] * rows[Int(r) * dimension + $1] }
                #expect(abs(out[i] - plain) <= 1e-5 * Float(dimension), "dimension \(dimension), row \(r)")
            }
        }
    }

    /// On clustered data pq-scan finds exact search's top 10 (recall@10 ≥ 0.95), every score is
    /// the exact cosine, a search of one row kind returns only that kind, and the saved file
    /// loads to the same results.
    @Test func recallExactScoresKindsAndRoundTrip() throws {
        let n = ApproximateIndex.exactBelowRows + 1_000, d = 64
        var (index, queries) = clustered(rows: n, queries: 50, dimension: d, seed: 21)
        let texts = index.embeddings(rows: Array(0..<1_000))
        index.add(names: (0..<1_000).map { "t\($0)" }, embeddings: texts, kind: .text)
        let url = temporaryFile()
        defer { for f in [url.path, url.path + ".ann", url.path + ".ann.json"] { try? FileManager.default.removeItem(atPath: f) } }
        try index.save(to: url)
        let saved = try EmbeddingIndex.load(from: url)
        for (bits, factory) in [(6, "PQ16x6fs"), (4, "PQ32x4fs")] {
            let built = try ApproximateIndex.build(saved, kind: .pqScan, pqBits: bits)
            #expect(built.info.factory == factory && built.info.candidatesPerResult == ApproximateIndex.defaultScanCandidates(bits: bits))
            #expect(built.info.scanBits == bits)
            try built.save(beside: url)
            let loaded = try #require(try ApproximateIndex.load(beside: saved))
            #expect(loaded.info == built.info)
            let exact = saved.search(queries, k: 10)
            let found = try saved.search(queries, k: 10, approximate: loaded)
            #expect(try saved.search(queries, k: 10, approximate: built).map { $0.map(\.index) } == found.map { $0.map(\.index) })
            let hits = zip(exact, found).map { e, f in Set(e.map(\.index)).intersection(f.map(\.index)).count }.reduce(0, +)
            #expect(Double(hits) / 500 >= 0.95, "\(factory): recall@10 \(Double(hits) / 500)")
            for (i, matches) in found.enumerated() {
                let rows = saved.embeddings(rows: matches.map(\.index))
                for (j, match) in matches.enumerated() {
                    let cosine = (0..<d).reduce(Float(0)) { $0 + queries.data[i * d + $1] * rows.data[j * d + $1] }
                    #expect(abs(cosine - match.score) < 1e-5)
                }
            }
            let textsOnly = try saved.search(queries, k: 10, kind: .text, approximate: loaded)
            #expect(textsOnly.allSatisfy { $0.count == 10 && $0.allSatisfy { saved.kinds[$0.index] == .text } })
        }
    }

    /// A truncated, tampered or mislabelled `.ann` is one clear error naming the file and what is
    /// wrong, never a trap; so is one left from other contents of the index (stale).
    @Test func damagedAndStaleFilesAreErrors() throws {
        let (index, _) = clustered(rows: 3_000, queries: 1, dimension: 16, seed: 5)
        let url = temporaryFile()
        let ann = url.path + ".ann"
        defer { for f in [url.path, ann, url.path + ".ann.json"] { try? FileManager.default.removeItem(atPath: f) } }
        try index.save(to: url)
        let saved = try EmbeddingIndex.load(from: url)
        for bits in [4, 6] {
            try ApproximateIndex.build(saved, kind: .pqScan, pqBits: bits).save(beside: url)
            let good = try Data(contentsOf: URL(fileURLWithPath: ann))
            func refused(_ bytes: Data, _ reason: String) throws {
                try bytes.write(to: URL(fileURLWithPath: ann))
                do {
                    _ = try ApproximateIndex.load(beside: saved)
                    Issue.record("accepted: expected \(reason)")
                } catch let error as EvalError {
                    #expect("\(error)".hasPrefix(ann + ": ") && "\(error)".contains(reason), "\(error)")
                }
            }
            func patched(_ offset: Int, _ value: UInt32) -> Data {
                var d = good
                withUnsafeBytes(of: value.littleEndian) { d.replaceSubrange(offset..<(offset + 4), with: $0) }
                return d
            }
            try refused(good.prefix(good.count - 1), "file size")
            try refused(good.prefix(20), "no MMPQSCAN magic")
            try refused(Data(), "no MMPQSCAN magic")
            try refused(patched(8, 9), "version 9")
            try refused(patched(12, 1 << 30), "dimension")
            try refused(patched(16, 0), "dimensions per sub-quantiser 0")
            try refused(patched(16, 8), "file size")  // a valid field that sizes the file otherwise
            try refused(patched(20, 256), "centroids per sub-quantiser 256")
            try refused(patched(20, bits == 6 ? 16 : 64), "file size")  // codes read as the other width
            try refused(patched(24, 7), "rows 7")
            var flipped = good
            flipped[good.count / 2] ^= 0x10
            try refused(flipped, "checksum mismatch")
            // A centroid of NaN with a matching checksum (a file written wrongly, not damaged).
            var nan = patched(32, Float.nan.bitPattern)
            var sum: UInt64 = fnv(nan.prefix(nan.count - 8))
            nan.replaceSubrange((nan.count - 8)..<nan.count, with: Data(bytes: &sum, count: 8))
            try refused(nan, "not finite")
            try good.write(to: URL(fileURLWithPath: ann))
            #expect(try ApproximateIndex.load(beside: saved) != nil)
        }
        // Other contents saved over the index: the pq-scan file beside it is stale.
        var changed = saved
        changed.add(names: ["extra"], embeddings: Tensor(shape: [1, 16], values: Array(repeating: 0.25, count: 16)))
        try changed.save(to: url)
        #expect(throws: EvalError.self) { try ApproximateIndex.load(beside: try EmbeddingIndex.load(from: url)) }
    }
}
