import Foundation
import MMCLIP
import MMEval
import MMTestSupport
import Testing

/// Zero-shot predictions of an open_clip model, converted by loading its state dict, equal
/// open_clip's own (tools/make_zeroshot_fixture.py: open_clip.build_zero_shot_classifier with the
/// 80 OpenAI templates, open_clip's preprocess, all 1,024 datasets/shapes test images).
@Suite struct OpenCLIPZeroShotTests {
    static let dir = ReferenceVenv.root.appendingPathComponent(".build/fixtures/zeroshot")
    /// Logits are 100 · cosine: float32 round-off of the embeddings, times 100.
    static let logitTolerance: Float = 1e-3
    static let present = FileManager.default.fileExists(atPath: dir.appendingPathComponent("zeroshot.safetensors").path)

    @Test(.enabled(if: present, "needs .build/fixtures/zeroshot (`make fixtures-zeroshot`, which needs the reference venv)"))
    func predictionsMatchOpenCLIP() throws {
        let reference = try Safetensors(contentsOf: Self.dir.appendingPathComponent("zeroshot.safetensors"))
        let shapes = ReferenceVenv.root.appendingPathComponent("datasets/shapes").path
        let paths = try JSONDecoder().decode([String].self, from: Data(try #require(reference.metadata["images"]).utf8)).map { "\(shapes)/\($0)" }
        let embedder = try Embedder(
            checkpoint: Self.dir.appendingPathComponent("model.safetensors"),
            config: try CLIPConfig(named: Self.dir.appendingPathComponent("model.json").path))
        let labels = try ClassLabels(contentsOf: "\(shapes)/labels.txt")
        #expect(try JSONDecoder().decode([String].self, from: Data(try #require(reference.metadata["classes"]).utf8)) == labels.classes.map { $0[0] })
        let classifier = ZeroShotClassifier(
            model: embedder.model, tokenizer: embedder.tokenizer, classes: labels.classes,
            templates: try PromptTemplates.named("openai"))
        let images = embedder.embed(imageFiles: paths, batchSize: 256)
        try #require(images.failures.isEmpty && images.paths.count == 1024)

        // Where differences would come from: class weights and image embeddings.
        expectClose("class weights", classifier.weights, reference.tensors["classifier"], atol: 1e-6, rtol: 0)
        expectClose("image embeddings", images.embeddings, reference.tensors["image_embeds"], atol: 1e-5, rtol: 0)

        let logits = classifier.logits(images.embeddings)
        let probabilities = withoutGradients { logits.softmax() }
        expectClose("logits (100 · cosine)", logits, reference.tensors["logits"], atol: Self.logitTolerance, rtol: 0)
        expectClose("probabilities", probabilities, reference.tensors["probabilities"], atol: 1e-4, rtol: 0)

        // Top-1: identical wherever open_clip's best class leads its second by more than the logit
        // tolerance; in a near-tie (both within round-off of each other) either is correct.
        let theirLogits = try #require(reference.tensors["logits"])
        let c = theirLogits.shape[1]
        let theirs = try #require(reference.ids["predicted"]).values.map(Int.init)
        #expect(Set(theirs).count > 10, "open_clip's predictions should not be degenerate")
        let ours = classifier.ranking(images.embeddings).map { $0[0] }
        var differing: [Int] = [], nearTies = 0
        for i in 0..<theirs.count {
            let row = theirLogits.data + i * c
            let tied = (0..<c).filter { row[$0] >= row[theirs[i]] - Self.logitTolerance }
            if tied.count > 1 { nearTies += 1 }
            if ours[i] != theirs[i] && !tied.contains(ours[i]) { differing.append(i) }
        }
        #expect(differing.isEmpty, "top-1 differs on \(differing.count) of \(theirs.count) images, first \(differing.prefix(5).map { paths[$0] })")

        func maxDiff(_ a: Tensor, _ key: String) -> Float { zip(a.scalars, reference.tensors[key]!.scalars).map { abs($0 - $1) }.max()! }
        let identical = zip(ours, theirs).filter { $0 == $1 }.count
        print(
            "zero-shot vs open_clip on \(theirs.count) images: top-1 identical on \(identical) (\(nearTies) near-ties within \(Self.logitTolerance)); "
                + "max |Δ| class weights \(maxDiff(classifier.weights, "classifier")), image embeddings \(maxDiff(images.embeddings, "image_embeds")), "
                + "logits \(maxDiff(logits, "logits")), probabilities \(maxDiff(probabilities, "probabilities"))")
    }
}
