import Foundation
import MMEval
import MMTensor
import MMTestSupport
import Testing

/// A random gallery of `n` unit rows of dimension `d`, named img0.jpg…
private func gallery(_ n: Int, _ d: Int, seed: UInt64) -> EmbeddingIndex {
    var g = SeededGenerator(seed: seed)
    let e = withoutGradients { g.tensor([n, d], requiresGrad: false).l2Normalized() }
    return EmbeddingIndex(modelFingerprint: "model-a", names: (0..<n).map { "img\($0).jpg" }, embeddings: e)
}

private func temporaryFile() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("mm-index-\(UUID().uuidString).mmi")
}

@Suite struct EmbeddingIndexTests {
    @Test func searchEqualsBruteForce() {
        let index = gallery(300, 24, seed: 1)
        var g = SeededGenerator(seed: 2)
        let queries = withoutGradients { g.tensor([5, 24], requiresGrad: false).l2Normalized() }
        let results = index.search(queries, k: 7)
        for q in 0..<5 {
            // Brute force in Double: every score, fully sorted.
            let scores = (0..<300).map { i in
                (0..<24).reduce(0.0) { $0 + Double(queries.data[q * 24 + $1]) * Double(index.embeddings.data[i * 24 + $1]) }
            }
            let expected = Array(scores.indices.sorted { scores[$0] > scores[$1] }.prefix(7))
            #expect(results[q].map(\.index) == expected, "query \(q)")
            for r in results[q] { #expect(abs(Double(r.score) - scores[r.index]) < 1e-5) }
        }
        #expect(index.search(queries, k: 1000)[0].count == 300)
    }

    @Test func fileRoundTrip() throws {
        let base = gallery(50, 8, seed: 3)
        let index = EmbeddingIndex(
            modelFingerprint: base.modelFingerprint, names: base.names, embeddings: base.embeddings,
            modified: (0..<50).map { 1.7e9 + Double($0) / 4 })
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try index.save(to: url)
        let back = try EmbeddingIndex.load(from: url)
        #expect(back.names == index.names)
        #expect(back.modelFingerprint == "model-a")
        #expect(back.embeddings.shape == [50, 8])
        #expect(back.embeddings.scalars == index.embeddings.scalars)
        #expect(back.modified == index.modified)
    }

    @Test func corruptFilesAreDetected() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try gallery(20, 8, seed: 4).save(to: url)
        let good = try Data(contentsOf: url)

        var flipped = good
        flipped[flipped.count - 100] ^= 0x40
        try flipped.write(to: url)
        #expect(throws: EvalError.badIndex(file: url.path, reason: "checksum mismatch, the index is corrupt (rebuild it)")) {
            try EmbeddingIndex.load(from: url)
        }

        var version = good
        version[8] = 9
        try version.write(to: url)
        #expect(throws: EvalError.badIndex(file: url.path, reason: "index version 9, this mm reads versions 1–2")) {
            try EmbeddingIndex.load(from: url)
        }

        try Data("filepath\ttitle\n".utf8).write(to: url)
        #expect(throws: EvalError.badIndex(file: url.path, reason: "not an mm index (no MMINDEX magic)")) { try EmbeddingIndex.load(from: url) }

        try good.prefix(good.count - 30).write(to: url)
        #expect(throws: EvalError.self) { try EmbeddingIndex.load(from: url) }

        // A consistent checksum over an inconsistent header: the size check still catches it.
        var header = good
        let at = try #require(header.range(of: Data("\"dimension\":8".utf8)))
        header.replaceSubrange(at, with: Data("\"dimension\":9".utf8))
        header.replaceSubrange((header.count - 8)..., with: withUnsafeBytes(of: fnv(header.dropLast(8)).littleEndian) { Data($0) })
        try header.write(to: url)
        #expect(throws: EvalError.badIndex(file: url.path, reason: "index holds \(20 * 8 * 4) bytes of embeddings, expected \(20 * 9 * 4)")) {
            try EmbeddingIndex.load(from: url)
        }
    }
}

@Suite struct MappedIndexTests {
    /// A loaded (memory-mapped) index searched block by block gives the in-memory result, for
    /// blocks that split the rows unevenly, and rows start 64-byte aligned in the file.
    @Test func mappedBlockSearchEqualsInMemory() throws {
        let index = gallery(1000, 16, seed: 5)
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try index.save(to: url)
        let mapped = try EmbeddingIndex.load(from: url)
        var g = SeededGenerator(seed: 6)
        let queries = withoutGradients { g.tensor([7, 16], requiresGrad: false).l2Normalized() }
        let expected = index.search(queries, k: 12)
        for blockRows in [1, 5, 333, 1000, 5000] {
            // The same rows in the same order; scores to BLAS round-off (its kernels depend on the shape).
            let found = mapped.search(queries, k: 12, blockRows: blockRows)
            #expect(found.map { $0.map(\.index) } == expected.map { $0.map(\.index) }, "blocks of \(blockRows) rows")
            let worst = zip(found.joined(), expected.joined()).map { abs($0.score - $1.score) }.max() ?? 1
            #expect(worst < 1e-6, "blocks of \(blockRows) rows: scores differ by \(worst)")
        }
        #expect(mapped.search(queries, k: 12)[0].first?.name == expected[0].first?.name)
        let bytes = try Data(contentsOf: url)
        let headerLength = Int(bytes[12]) | Int(bytes[13]) << 8 | Int(bytes[14]) << 16 | Int(bytes[15]) << 24
        #expect((16 + headerLength) % 64 == 0, "rows start at \(16 + headerLength)")
        #expect(bytes.count == 16 + headerLength + 1000 * 16 * 4 + 8)
    }

    @Test func addReplacesByNameAndAppends() throws {
        var index = gallery(4, 3, seed: 8)
        let old = index.embeddings.scalars
        index.add(names: ["img2.jpg", "new.jpg"], embeddings: Tensor(shape: [2, 3], values: [1, 0, 0, 0, 1, 0]), modified: [5, 6])
        #expect(index.names == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg", "new.jpg"])
        #expect(index.modified == [-1, -1, 5, -1, 6])
        let e = index.embeddings.scalars
        #expect(Array(e[0..<6]) == Array(old[0..<6]) && Array(e[9..<12]) == Array(old[9..<12]))
        #expect(Array(e[6..<9]) == [1, 0, 0] && Array(e[12..<15]) == [0, 1, 0])
        // Adding to a mapped index, then saving over its own file.
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try index.save(to: url)
        var mapped = try EmbeddingIndex.load(from: url)
        mapped.add(names: ["newer.jpg"], embeddings: Tensor(shape: [1, 3], values: [0, 0, 1]), modified: [7])
        try mapped.save(to: url)
        let back = try EmbeddingIndex.load(from: url)
        #expect(back.names.last == "newer.jpg" && back.count == 6 && back.modified?.last == 7)
        #expect(Array(back.embeddings.scalars[0..<15]) == e)
        #expect(back.search(Tensor(shape: [1, 3], values: [0, 0, 1]), k: 1)[0].first?.name == "newer.jpg")
    }

    @Test func queriesFromAnotherModelAreRefused() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try gallery(3, 4, seed: 9).save(to: url)
        let index = try EmbeddingIndex.load(from: url)
        try index.requireModel("model-a")
        #expect(
            throws: EvalError.modelMismatch(
                file: url.path,
                reason: "built with another model (fingerprint model-a, this model has model-b); rebuild the index with this checkpoint")
        ) {
            try index.requireModel("model-b")
        }
    }

    @Test func emptyAndMissingFilesAreErrors() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try Data().write(to: url)
        #expect(throws: EvalError.badIndex(file: url.path, reason: "not an mm index (empty file)")) { try EmbeddingIndex.load(from: url) }
        #expect(throws: EvalError.unreadable(file: "/nonexistent/x.mmi", what: "index", reason: "No such file or directory")) {
            try EmbeddingIndex.load(from: URL(fileURLWithPath: "/nonexistent/x.mmi"))
        }
    }
}

/// Issue 16's index causes and issue 18's metadata, one test per behaviour.
@Suite struct IndexHardeningTests {
    /// A NaN (or infinite) embedding row never ranks, wherever it sits: not first, not at all.
    @Test func nanRowsNeverRank() {
        var values = [Float](repeating: 0, count: 4 * 3)
        values[0] = .nan; values[1] = 0; values[2] = 0  // row 0: NaN
        values[3] = 1; values[4] = 0; values[5] = 0  // row 1
        values[6] = 0; values[7] = 1; values[8] = 0  // row 2
        values[9] = .infinity; values[10] = 0; values[11] = 0  // row 3: inf·0 = NaN for some queries
        let index = EmbeddingIndex(modelFingerprint: "m", names: ["nan", "x", "y", "inf"], embeddings: Tensor(shape: [4, 3], values: values))
        let results = index.search(Tensor(shape: [2, 3], values: [1, 0, 0, 0, 1, 0]), k: 4)
        for r in results {
            #expect(!r.contains { $0.score.isNaN }, "\(r)")
            #expect(!r.contains { $0.name == "nan" })
        }
        #expect(results[0].first?.name == "inf" || results[0].first?.name == "x")
        #expect(results[1].first?.name == "y")
        #expect(!results[1].contains { $0.name == "inf" }, "inf · 0 is NaN: never ranks")
    }

    /// Equal scores are not wins: of tied rows the earlier one ranks first, and a row tied with
    /// the k-th does not displace it.
    @Test func tiesKeepTheEarlierRow() {
        let e = Tensor(shape: [4, 2], values: [0, 1, 1, 0, 1, 0, 1, 0])
        let index = EmbeddingIndex(modelFingerprint: "m", names: ["a", "b", "c", "d"], embeddings: e)
        #expect(index.search(Tensor(shape: [1, 2], values: [1, 0]), k: 2)[0].map(\.name) == ["b", "c"])
        #expect(index.search(Tensor(shape: [1, 2], values: [1, 0]), k: 1, blockRows: 1)[0].map(\.name) == ["b"])
    }

    /// A header whose dimension would overflow count × dimension × 4 (or is absurd) is an error
    /// naming the file, never a trap.
    @Test func headerDimensionIsBoundedBeforeArithmetic() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try gallery(3, 4, seed: 1).save(to: url)
        let good = try Data(contentsOf: url)
        for dimension in ["4611686018427387904", "9223372036854775807", "-4", "0", "70000"] {
            var bytes = good
            let at = try #require(bytes.range(of: Data("\"dimension\":4".utf8)))
            bytes.replaceSubrange(at, with: Data("\"dimension\":\(dimension)".utf8))
            // Keep the header length field and the checksum consistent with the edit.
            let headerLength = UInt32(bytes[12]) | UInt32(bytes[13]) << 8 | UInt32(bytes[14]) << 16 | UInt32(bytes[15]) << 24
            let grown = headerLength + UInt32(dimension.utf8.count - 1)
            withUnsafeBytes(of: grown.littleEndian) { bytes.replaceSubrange(12..<16, with: $0) }
            bytes.replaceSubrange((bytes.count - 8)..., with: withUnsafeBytes(of: fnv(bytes.dropLast(8)).littleEndian) { Data($0) })
            try bytes.write(to: url)
            #expect(throws: EvalError.self, "dimension \(dimension)") { try EmbeddingIndex.load(from: url) }
        }
    }

    /// An index whose dimension disagrees with the model's is refused even when it claims the model's fingerprint.
    @Test func dimensionMismatchWithTheModelIsAnError() {
        let index = gallery(3, 4, seed: 2)
        #expect(throws: EvalError.modelMismatch(file: "index", reason: "rows have dimension 4 but the model's embeddings have 8")) {
            try index.requireModel("model-a", dimension: 8)
        }
    }

    /// Saving over an index never leaves its path missing or half-written: a reader loading it in
    /// a loop while it is saved again and again always finds a whole index.
    @Test func savingNeverLeavesThePathMissing() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        let index = gallery(2000, 32, seed: 3)
        try index.save(to: url)
        let stop = Flag()
        let failures = Counter()
        let reader = Thread {
            while !stop.value {
                do { _ = try EmbeddingIndex.load(from: url) } catch { failures.add() }
            }
        }
        reader.start()
        for _ in 0..<150 { try index.save(to: url) }
        stop.set()
        while !reader.isFinished { usleep(1000) }
        #expect(failures.value == 0, "\(failures.value) loads found no whole index")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
            .filter { $0.hasPrefix(".\(url.lastPathComponent)") }
        #expect(leftovers.isEmpty, "temporary files left: \(leftovers)")
    }

    /// Version-1 files (no ids, kinds or metadata) are still read: ids are row numbers, rows images.
    @Test func version1FilesAreRead() throws {
        let header = Data(#"{"model":"m1","dimension":2,"names":["a.jpg","b.jpg"]}"#.utf8)
        var bytes = Data("MMINDEX\u{0}".utf8)
        bytes += withUnsafeBytes(of: UInt32(1).littleEndian) { Data($0) }
        let padded = header + Data(repeating: 0x20, count: (64 - (16 + header.count) % 64) % 64)
        bytes += withUnsafeBytes(of: UInt32(padded.count).littleEndian) { Data($0) }
        bytes += padded
        for v: Float in [1, 0, 0, 1] { bytes += withUnsafeBytes(of: v.bitPattern.littleEndian) { Data($0) } }
        bytes += withUnsafeBytes(of: fnv(bytes).littleEndian) { Data($0) }
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try bytes.write(to: url)
        let index = try EmbeddingIndex.load(from: url)
        #expect(index.ids == [0, 1] && index.kinds == [.image, .image] && index.columns.isEmpty)
        #expect(index.search(Tensor(shape: [1, 2], values: [0, 1]), k: 1)[0].first?.name == "b.jpg")
    }

    /// Ids are stable: re-embedding a row keeps its id, new rows get new ids; metadata, kinds and
    /// ids survive a save; a search can keep to one kind of row.
    @Test func idsMetadataAndKindsPersist() throws {
        var index = EmbeddingIndex(
            modelFingerprint: "m", names: ["a.jpg", "b.jpg"], embeddings: Tensor(shape: [2, 2], values: [1, 0, 0, 1]),
            columns: ["caption", "url"], metadata: [["an a", "http://a"], ["a b", ""]])
        index.add(names: ["b.jpg", "c.jpg"], embeddings: Tensor(shape: [2, 2], values: [0.6, 0.8, 0.8, 0.6]))
        index.add(names: ["a red circle"], embeddings: Tensor(shape: [1, 2], values: [1, 0]), kind: .text)
        #expect(index.ids == [0, 1, 2, 3] && index.kinds == [.image, .image, .image, .text] && index.presentKinds == [.image, .text])
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try index.save(to: url)
        let back = try EmbeddingIndex.load(from: url)
        #expect(back.ids == index.ids && back.kinds == index.kinds && back.presentKinds == [.image, .text] && back.columns == ["caption", "url"])
        #expect(back.field("url", row: 0) == "http://a" && back.field("url", row: 1) == nil && back.caption(row: 3) == "a red circle")
        #expect(back.row(id: 2) == 2 && back.row(id: 9) == nil)
        #expect(back.search(Tensor(shape: [1, 2], values: [1, 0]), k: 1, kind: .text)[0].map(\.id) == [3])
        #expect(back.search(Tensor(shape: [1, 2], values: [1, 0]), k: 1, kind: .image)[0].map(\.id) == [0])
    }

    /// The faiss indexes propose candidates that are re-scored exactly: on clustered data their
    /// top 10 matches exact search's (recall@10 ≥ 0.95) with true cosines, and a changed index
    /// file makes the saved approximate index stale (refused, not silently used).
    @Test(arguments: ApproximateIndex.Kind.buildable) func approximateSearchAgreesWithExact(kind: ApproximateIndex.Kind) throws {
        let n = ApproximateIndex.exactBelowRows + 1_000, d = 16
        var g = SeededGenerator(seed: 11)
        // 200 clusters of unit rows: the shape of real embeddings (uniform noise has no neighbours).
        let centres = g.tensor([200, d], requiresGrad: false)
        let noise = g.tensor([n, d], requiresGrad: false)
        let rows = Tensor.zeros([n, d])
        for i in 0..<n { for j in 0..<d { rows.data[i * d + j] = centres.data[(i % 200) * d + j] + 0.3 * noise.data[i * d + j] } }
        let index = EmbeddingIndex(modelFingerprint: "m", names: (0..<n).map { "r\($0)" }, embeddings: withoutGradients { rows.l2Normalized() })
        let url = temporaryFile()
        defer { for f in [url.path, url.path + ".ann", url.path + ".ann.json"] { try? FileManager.default.removeItem(atPath: f) } }
        try index.save(to: url)
        let saved = try EmbeddingIndex.load(from: url)
        try ApproximateIndex.build(saved, kind: kind).save(beside: url)
        let ann = try #require(try ApproximateIndex.load(beside: saved))
        // Queries from the data's distribution: a cluster centre plus fresh noise.
        let fresh = g.tensor([50, d], requiresGrad: false)
        let near = Tensor.zeros([50, d])
        for i in 0..<50 { for j in 0..<d { near.data[i * d + j] = centres.data[(i * 7 % 200) * d + j] + 0.3 * fresh.data[i * d + j] } }
        let queries = withoutGradients { near.l2Normalized() }
        let exact = saved.search(queries, k: 10)
        let approximate = try saved.search(queries, k: 10, approximate: ann)
        let found = zip(exact, approximate).map { e, a in Set(e.map(\.index)).intersection(a.map(\.index)).count }.reduce(0, +)
        #expect(Double(found) / 500 >= 0.95, "\(kind): recall@10 \(Double(found) / 500)")
        for (e, a) in zip(exact, approximate) where e.first?.index == a.first?.index { #expect(abs(e[0].score - a[0].score) < 1e-5) }
        // Saving other contents over the file: the approximate index beside it is stale.
        var changed = saved
        changed.add(names: ["extra"], embeddings: Tensor(shape: [1, d], values: Array(repeating: 0.25, count: d)))
        try changed.save(to: url)
        #expect(throws: EvalError.self) { try ApproximateIndex.load(beside: try EmbeddingIndex.load(from: url)) }
    }
}

extension IndexHardeningTests {
    /// The ivf kind scans its lists itself: a search of one kind of row (text rows among image
    /// rows) returns only that kind, with exact scores, and the same rows as exact search when
    /// every list is scanned; ties go to the earlier row as in exact search.
    @Test func ivfListsKeepToOneKindAndMatchExactWhenEveryListIsScanned() throws {
        let n = ApproximateIndex.exactBelowRows + 2_000, d = 8
        var g = SeededGenerator(seed: 5)
        let rows = withoutGradients { g.tensor([n, d], requiresGrad: false).l2Normalized() }
        // Row 1 repeats row 0 (a tie); the second half are text rows.
        for j in 0..<d { rows.data[d + j] = rows.data[j] }
        let half = n / 2
        func part(_ range: Range<Int>) -> Tensor {
            Tensor(shape: [range.count, d], values: Array(UnsafeBufferPointer(start: rows.data + range.lowerBound * d, count: range.count * d)))
        }
        var index = EmbeddingIndex(modelFingerprint: "m", names: (0..<half).map { "r\($0)" }, embeddings: part(0..<half))
        index.add(names: (half..<n).map { "r\($0)" }, embeddings: part(half..<n), kind: .text)
        let url = temporaryFile()
        defer { for f in [url.path, url.path + ".ann", url.path + ".ann.json"] { try? FileManager.default.removeItem(atPath: f) } }
        try index.save(to: url)
        let saved = try EmbeddingIndex.load(from: url)
        try ApproximateIndex.build(saved, kind: .ivf, nprobe: 65_536).save(beside: url)  // every list
        let ann = try #require(try ApproximateIndex.load(beside: saved))
        let queries = withoutGradients { g.tensor([20, d], requiresGrad: false).l2Normalized() }
        let zeroth = Tensor(shape: [1, d], values: Array(UnsafeBufferPointer(start: rows.data, count: d)))
        for kind in [EmbeddingIndex.RowKind.image, .text, nil] {
            let exact = saved.search(queries, k: 10, kind: kind)
            let found = try saved.search(queries, k: 10, kind: kind, approximate: ann)
            #expect(found.map { $0.map(\.index) } == exact.map { $0.map(\.index) }, "kind \(String(describing: kind))")
            for (e, f) in zip(exact, found) { for (a, b) in zip(e, f) { #expect(abs(a.score - b.score) < 1e-5) } }
            if let kind { #expect(found.allSatisfy { $0.allSatisfy { saved.kinds[$0.index] == kind } }) }
        }
        // Rows 0 and 1 are equal: searching by row 0 ranks row 0 first, as exact search does.
        #expect(try saved.search(zeroth, k: 2, approximate: ann)[0].map(\.index) == saved.search(zeroth, k: 2)[0].map(\.index))
    }
}

private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    var value: Bool { lock.withLock { raised } }
    func set() { lock.withLock { raised = true } }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    var value: Int { lock.withLock { n } }
    func add() { lock.withLock { n += 1 } }
}

/// The index checksum, written here independently: FNV-1a over little-endian 64-bit words, then
/// the trailing bytes one by one.
func fnv(_ data: Data) -> UInt64 {
    let bytes = [UInt8](data)
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    var i = 0
    while i + 8 <= bytes.count {
        var word: UInt64 = 0
        for j in 0..<8 { word |= UInt64(bytes[i + j]) << (8 * UInt64(j)) }
        h = (h ^ word) &* 0x100_0000_01b3
        i += 8
    }
    for b in bytes[i...] { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
