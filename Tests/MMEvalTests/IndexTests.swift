import Foundation
import MMEval
import MMTensor
import MMTestSupport
import Testing

@Suite struct EmbeddingIndexTests {
    func gallery(_ n: Int, _ d: Int, seed: UInt64) -> EmbeddingIndex {
        var g = SeededGenerator(seed: seed)
        let e = withoutGradients { g.tensor([n, d], requiresGrad: false).l2Normalized() }
        return EmbeddingIndex(modelFingerprint: "model-a", names: (0..<n).map { "img\($0).jpg" }, embeddings: e)
    }

    func temporaryFile() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("mm-index-\(UUID().uuidString).mmi")
    }

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
        try index.write(to: url)
        let back = try EmbeddingIndex(contentsOf: url)
        #expect(back.names == index.names)
        #expect(back.modelFingerprint == "model-a")
        #expect(back.embeddings.shape == [50, 8])
        #expect(back.embeddings.scalars == index.embeddings.scalars)
        #expect(back.modified == index.modified)
    }

    @Test func corruptFilesAreDetected() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try gallery(20, 8, seed: 4).write(to: url)
        let good = try Data(contentsOf: url)

        var flipped = good
        flipped[flipped.count - 100] ^= 0x40
        try flipped.write(to: url)
        #expect(throws: EvalError("\(url.path): checksum mismatch, the index is corrupt (rebuild it)")) { try EmbeddingIndex(contentsOf: url) }

        var version = good
        version[8] = 9
        try version.write(to: url)
        #expect(throws: EvalError("\(url.path): index version 9, this mm reads version 1")) { try EmbeddingIndex(contentsOf: url) }

        try Data("filepath\ttitle\n".utf8).write(to: url)
        #expect(throws: EvalError("\(url.path): not an mm index (no MMINDEX magic)")) { try EmbeddingIndex(contentsOf: url) }

        try good.prefix(good.count - 30).write(to: url)
        #expect(throws: EvalError.self) { try EmbeddingIndex(contentsOf: url) }
    }
}
