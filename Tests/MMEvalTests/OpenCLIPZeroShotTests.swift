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
    static let present = FileManager.default.fileExists(atPath: dir.appendingPathComponent("zeroshot.safetensors").path)

    @Test(.enabled(if: present, "needs .build/fixtures/zeroshot (`make fixtures-zeroshot`, which needs the reference venv)"))
    func predictionsMatchOpenCLIP() throws {
        let reference = try Safetensors(contentsOf: Self.dir.appendingPathComponent("zeroshot.safetensors"))
        let shapes = ReferenceVenv.root.appendingPathComponent("datasets/shapes").path
        let paths = try JSONDecoder().decode([String].self, from: Data(try #require(reference.metadata["images"]).utf8)).map { "\(shapes)/\($0)" }
        let embedder = try Embedder(checkpoint: Self.dir.appendingPathComponent("model.safetensors"),
                                    config: try CLIPConfig(named: Self.dir.appendingPathComponent("model.json").path))
        let labels = try ClassLabels(contentsOf: "\(shapes)/labels.txt")
        #expect(try JSONDecoder().decode([String].self, from: Data(try #require(reference.metadata["classes"]).utf8)) == labels.classes.map { $0[0] })
        let classifier = ZeroShotClassifier(model: embedder.model, tokenizer: embedder.tokenizer, classes: labels.classes,
                                            templates: try PromptTemplates.named("openai"))
        let images = embedder.embed(imageFiles: paths, batchSize: 256)
        try #require(images.failures.isEmpty && images.paths.count == 1024)

        // Where differences would come from: class weights and image embeddings.
        expectClose("class weights", classifier.weights, reference.tensors["classifier"], atol: 1e-5, rtol: 0)
        expectClose("image embeddings", images.embeddings, reference.tensors["image_embeds"], atol: 1e-4, rtol: 0)

        let logits = classifier.logits(images.embeddings)
        let probabilities = withoutGradients { logits.softmax() }
        expectClose("logits (100 · cosine)", logits, reference.tensors["logits"], atol: 1e-2, rtol: 0)
        expectClose("probabilities", probabilities, reference.tensors["probabilities"], atol: 1e-3, rtol: 0)
        let theirs = try #require(reference.ids["predicted"]).values.map(Int.init)
        let ours = classifier.ranking(images.embeddings).map { $0[0] }
        let differing = zip(ours, theirs).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        #expect(differing.isEmpty, "top-1 differs on \(differing.count) of 1024 images, first \(differing.prefix(5).map { paths[$0] })")
        #expect(Set(theirs).count > 10, "open_clip's predictions should not be degenerate")
    }
}
