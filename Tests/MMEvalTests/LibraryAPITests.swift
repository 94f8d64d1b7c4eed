import Foundation
import MMCLIP
import MMEval
import MMTestSupport
import Testing

/// README's "From Swift" snippet, call for call, on a small random model and a few
/// datasets/shapes images (plus one unreadable file).
@Suite struct LibraryAPITests {
    static let shapes = ReferenceVenv.root.appendingPathComponent("datasets/shapes").path
    static let config = #"""
        {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 32},
         "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1}}
        """#

    func saveModel(seed: UInt64, in dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("model-\(seed).safetensors")
        try CLIPModel(try CLIPConfig(json: Data(Self.config.utf8), source: "test"), seed: seed).save(to: url)
        return url
    }

    @Test func readmeSnippet() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let checkpoint = try saveModel(seed: 1, in: dir)
        let a = "\(Self.shapes)/images/test/000000.jpg", b = "\(Self.shapes)/images/test/000001.jpg"
        let c = "\(Self.shapes)/images/test/000002.jpg", missing = dir.appendingPathComponent("gone.jpg").path
        let galleryFile = dir.appendingPathComponent("gallery.mmi")

        // --- README ---
        let embedder = try Embedder(checkpoint: checkpoint)
        let photos = embedder.embed(imageFiles: [a, missing, b])
        var index = EmbeddingIndex(modelFingerprint: embedder.fingerprint, names: photos.paths, embeddings: photos.embeddings)
        let more = embedder.embed(imageFiles: [c])
        index.add(names: more.paths, embeddings: more.embeddings)
        try index.save(to: galleryFile)

        let gallery = try EmbeddingIndex.load(from: galleryFile)
        let matches = try embedder.search(gallery, text: "a purple heart", k: 2)
        let texts = embedder.embed(texts: ["a purple heart", "an orange diamond"])
        let best = gallery.search(texts, k: 3)

        let classifier = ZeroShotClassifier(
            model: embedder.model, tokenizer: embedder.tokenizer,
            classes: [["purple heart"], ["orange diamond"]], templates: try PromptTemplates.named("simple"))
        let top = classifier.predictions(photos.embeddings, k: 1)
        // --- end ---

        #expect(photos.paths == [a, b] && photos.failures.map(\.path) == [missing])
        #expect(photos.embeddings.shape == [2, 32] && texts.shape == [2, 32])
        #expect(gallery.names == [a, b, c] && gallery.count == 3 && gallery.dimension == 32)
        // Search = brute-force cosine ranking.
        let rows = gallery.embeddings
        for (q, result) in best.enumerated() {
            let scores = (0..<3).map { i in (0..<32).reduce(Float(0)) { $0 + texts.data[q * 32 + $1] * rows.data[i * 32 + $1] } }
            #expect(result.map(\.index) == scores.indices.sorted { scores[$0] > scores[$1] }, "query \(q)")
            for m in result { #expect(abs(m.score - scores[m.index]) < 1e-5 && m.name == gallery.names[m.index]) }
        }
        #expect(matches.map(\.index) == best[0].prefix(2).map(\.index))
        #expect(top.count == 2 && top.allSatisfy { $0.count == 1 && $0[0].probability > 0.5 })
        #expect(try embedder.search(gallery, imageFile: c, k: 1).first?.name == c, "an image finds itself")

        // Bad input through the same API: another model's queries, an unreadable query image.
        let other = try Embedder(checkpoint: try saveModel(seed: 2, in: dir))
        #expect(other.fingerprint != embedder.fingerprint)
        #expect(throws: EvalError.self) { try other.search(gallery, text: "a purple heart", k: 2) }
        #expect(throws: EvalError.self) { try embedder.search(gallery, imageFile: missing, k: 1) }
    }

    /// Many images with unreadable ones among them: those are listed, the rest embedded as alone.
    @Test func unreadableImagesAmongMany() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let embedder = try Embedder(checkpoint: try saveModel(seed: 3, in: dir))
        let manifest = try String(contentsOfFile: "\(Self.shapes)/test_labels.tsv", encoding: .utf8)
        let good = manifest.split(separator: "\n").dropFirst().prefix(40).map { "\(Self.shapes)/" + $0.split(separator: "\t")[0] }
        let corrupt = dir.appendingPathComponent("corrupt.jpg").path
        try Data([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]).write(to: URL(fileURLWithPath: corrupt))
        var paths = good
        paths.insert(corrupt, at: 3)
        paths.insert(dir.appendingPathComponent("missing.jpg").path, at: 35)
        let all = embedder.embed(imageFiles: paths, batchSize: 16)
        #expect(all.paths == good)
        #expect(all.failures.map(\.path) == [corrupt, dir.appendingPathComponent("missing.jpg").path])
        #expect(all.failures.allSatisfy { !$0.error.isEmpty })
        let alone = embedder.embed(imageFiles: Array(good[30..<40]))
        let d = 32
        let worst = (0..<(10 * d)).map { abs(alone.embeddings.data[$0] - all.embeddings.data[30 * d + $0]) }.max()!
        #expect(worst < 1e-5, "max diff \(worst)")
    }
}
