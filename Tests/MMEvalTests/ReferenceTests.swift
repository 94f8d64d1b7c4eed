import Foundation
import MMEval
import MMTensor
import MMTestSupport
import Testing

/// Our zero-shot ensembling, accuracy and retrieval metrics against open_clip's own code
/// (tools/check_eval_metrics.py) on the same random embeddings.
@Suite struct ReferenceMetricsTests {
    @Test(.enabled(if: ReferenceVenv.available, Comment(rawValue: ReferenceVenv.missingReason)))
    func zeroShotAndRetrievalMatchOpenCLIP() throws {
        let (c, t, d, n) = (12, 4, 16, 200)
        var g = SeededGenerator(seed: 2024)
        let prompts = g.tensor([c * t, d], requiresGrad: false)
        let truth = (0..<n).map { _ in Int(g.next() % UInt64(c)) }
        // Images near their class's first prompt, captions near their image: hard enough that
        // neither accuracy nor recall is trivially 0 or 1.
        let noise = g.tensor([n, d], scale: 1.2, requiresGrad: false)
        let raw = Tensor.zeros([n, d])
        for i in 0..<n { for j in 0..<d { raw.data[i * d + j] = prompts.data[truth[i] * t * d + j] + noise.data[i * d + j] } }
        let images = withoutGradients { raw.l2Normalized() }
        let jitter = g.tensor([n, d], scale: 0.15, requiresGrad: false)
        let texts = withoutGradients { (images + jitter).l2Normalized() }

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-eval-ref-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try writeNPY(prompts, to: dir.appendingPathComponent("prompts.npy"))
        try writeNPY(images, to: dir.appendingPathComponent("images.npy"))
        try writeNPY(texts, to: dir.appendingPathComponent("texts.npy"))
        try writeNPY(truth, to: dir.appendingPathComponent("truth.npy"))
        try Data(#"{"classes": \#(c), "templates": \#(t)}"#.utf8).write(to: dir.appendingPathComponent("meta.json"))

        let result = try ReferenceVenv.run(["tools/check_eval_metrics.py", dir.path])
        try #require(result.status == 0, "check_eval_metrics.py failed: \(result.output)")
        let line = try #require(result.output.split(separator: "\n").last)
        let reference = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])

        // Class weights: open_clip's build_zero_shot_classifier.
        let weights = ZeroShotClassifier.classWeights(prompts, promptsPerClass: [Int](repeating: t, count: c))
        let expected = try #require(reference["weights"] as? [Double])
        let worst = zip(weights.scalars, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(
            expected.count == c * d && worst < 1e-6,
            "class weights: max diff \(worst), first ours \(Array(weights.scalars.prefix(3))) vs \(Array(expected.prefix(3)))")

        // Accuracy: open_clip_train.zero_shot.accuracy on 100 · images @ weights.
        let classifier = ZeroShotClassifier(classNames: (0..<c).map { "c\($0)" }, weights: weights)
        let report = try ZeroShotReport(logits: classifier.logits(images), truth: truth, classNames: classifier.classNames)
        let ranking = classifier.ranking(images)
        for (name, ours, k) in [("top1", report.top1, 1), ("top5", report.top5, 5)] {
            let theirs = try #require(reference[name] as? Double)
            #expect(abs(ours - theirs) < 1e-12, "\(name): ours \(ours), open_clip \(theirs)")
            #expect(abs(topKAccuracy(ranking, truth, k: k) - theirs) < 1e-12, "\(name) from rankings")
        }
        #expect(report.top1 > 0.1 && report.top1 < 0.95, "the data should make accuracy informative, got \(report.top1)")

        // Retrieval: open_clip_train.train.get_clip_metrics.
        let metrics = try RetrievalMetrics(images: images, texts: texts, imageOfText: Array(0..<n))
        let theirs = try #require(reference["retrieval"] as? [String: Double])
        for (name, direction) in [("image_to_text", metrics.imageToText), ("text_to_image", metrics.textToImage)] {
            var ours = ["\(name)_mean_rank": direction.meanRank, "\(name)_median_rank": direction.medianRank]
            for (k, r) in direction.recall { ours["\(name)_R@\(k)"] = r }
            for (key, value) in ours {
                let reference = try #require(theirs[key], "open_clip reports no \(key)")
                #expect(abs(value - reference) < 1e-9, "\(key): ours \(value), open_clip \(reference)")
            }
        }
        #expect(metrics.imageToText.recall[1]! < 1, "the data should make recall informative")
    }
}

/// A minimal .npy writer (little-endian float32 or int64, C order).
func writeNPY(_ tensor: Tensor, to url: URL) throws {
    var bytes = npyHeader(descr: "<f4", shape: tensor.shape)
    for v in tensor.scalars { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
    try Data(bytes).write(to: url)
}

func writeNPY(_ values: [Int], to url: URL) throws {
    var bytes = npyHeader(descr: "<i8", shape: [values.count])
    for v in values { withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) } }
    try Data(bytes).write(to: url)
}

private func npyHeader(descr: String, shape: [Int]) -> [UInt8] {
    let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    let length = UInt16(header.utf8.count)
    return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + Array(header.utf8)
}

@Suite struct ReferenceSearchTests {
    /// Index search against brute force in numpy (tools/check_eval_metrics.py), on a gallery
    /// large enough that the BLAS product is blocked and the partial selection is exercised.
    @Test(.enabled(if: ReferenceVenv.available, Comment(rawValue: ReferenceVenv.missingReason)))
    func searchMatchesNumpyBruteForce() throws {
        let (n, d, q, k) = (5000, 64, 20, 10)
        var g = SeededGenerator(seed: 99)
        let gallery = withoutGradients { g.tensor([n, d], requiresGrad: false).l2Normalized() }
        let queries = withoutGradients { g.tensor([q, d], requiresGrad: false).l2Normalized() }
        let index = EmbeddingIndex(modelFingerprint: "m", names: (0..<n).map(String.init), embeddings: gallery)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-eval-search-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try writeNPY(gallery, to: dir.appendingPathComponent("gallery.npy"))
        try writeNPY(queries, to: dir.appendingPathComponent("queries.npy"))
        try Data(#"{"k": \#(k)}"#.utf8).write(to: dir.appendingPathComponent("meta.json"))
        let result = try ReferenceVenv.run(["tools/check_eval_metrics.py", dir.path])
        try #require(result.status == 0, "check_eval_metrics.py failed: \(result.output)")
        let line = try #require(result.output.split(separator: "\n").last)
        let reference = try #require((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["search"] as? [[Int]])

        let ours = index.search(queries, k: k)
        for i in 0..<q {
            #expect(ours[i].map(\.index) == reference[i], "query \(i): ours \(ours[i].map(\.index)), numpy \(reference[i])")
        }
    }
}
