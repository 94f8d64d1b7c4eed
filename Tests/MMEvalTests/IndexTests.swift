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
            let scores = (0..<300).map { i in (0..<24).reduce(0.0) { $0 + Double(queries.data[q * 24 + $1]) * Double(index.embeddings.data[i * 24 + $1]) } }
            let expected = Array(scores.indices.sorted { scores[$0] > scores[$1] }.prefix(7))
            #expect(results[q].map(\.index) == expected, "query \(q)")
            for r in results[q] { #expect(abs(Double(r.score) - scores[r.index]) < 1e-5) }
        }
        #expect(index.search(queries, k: 1000)[0].count == 300)
    }

    @Test func fileRoundTrip() throws {
        let base = gallery(50, 8, seed: 3)
        let index = EmbeddingIndex(modelFingerprint: base.modelFingerprint, names: base.names, embeddings: base.embeddings,
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
        #expect(throws: EvalError("\(url.path): checksum mismatch, the index is corrupt (rebuild it)")) { try EmbeddingIndex.load(from: url) }

        var version = good
        version[8] = 9
        try version.write(to: url)
        #expect(throws: EvalError("\(url.path): index version 9, this mm reads version 1")) { try EmbeddingIndex.load(from: url) }

        try Data("filepath\ttitle\n".utf8).write(to: url)
        #expect(throws: EvalError("\(url.path): not an mm index (no MMINDEX magic)")) { try EmbeddingIndex.load(from: url) }

        try good.prefix(good.count - 30).write(to: url)
        #expect(throws: EvalError.self) { try EmbeddingIndex.load(from: url) }

        // A consistent checksum over an inconsistent header: the size check still catches it.
        var header = good
        let at = try #require(header.range(of: Data("\"dimension\":8".utf8)))
        header.replaceSubrange(at, with: Data("\"dimension\":9".utf8))
        header.replaceSubrange((header.count - 8)..., with: withUnsafeBytes(of: fnv(header.dropLast(8)).littleEndian) { Data($0) })
        try header.write(to: url)
        #expect(throws: EvalError("\(url.path): index holds \(20 * 8 * 4) bytes of embeddings, expected \(20 * 9 * 4)")) {
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
        #expect(throws: EvalError("\(url.path): built with another model (fingerprint model-a, this model has model-b); rebuild the index with this checkpoint")) {
            try index.requireModel("model-b")
        }
    }

    @Test func emptyAndMissingFilesAreErrors() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try Data().write(to: url)
        #expect(throws: EvalError("\(url.path): not an mm index (empty file)")) { try EmbeddingIndex.load(from: url) }
        #expect(throws: EvalError("/nonexistent/x.mmi: cannot read the index (No such file or directory)")) {
            try EmbeddingIndex.load(from: URL(fileURLWithPath: "/nonexistent/x.mmi"))
        }
    }
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
