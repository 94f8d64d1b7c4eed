import Foundation
import MMCLIP
import MMTestSupport
import Testing

/// The small open_clip model of Fixtures/ (every weight perturbed; written by
/// tools/make_model_fixtures.py) against ours: embeddings, InfoNCE gradients, ten AdamW steps.
@Suite struct ParityTests {
    let fixture: Safetensors
    let config: CLIPConfig
    let dir: URL

    init() throws {
        dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        fixture = try Safetensors(contentsOf: dir.appendingPathComponent("clip_small.safetensors"))
        config = try CLIPConfig(named: dir.appendingPathComponent("clip_small.json").path)
    }

    func model() throws -> CLIPModel {
        let m = CLIPModel(config)
        try m.load(fixture.tensors.prefixed("param."))
        return m
    }

    var images: Tensor { fixture.tensors["in.images"]! }
    var text: IntTensor { fixture.ids["ids.text"]! }

    /// Embeddings within 1e-4 absolute (the issue's bar); observed differences are ~1e-6.
    @Test func embeddingsMatchOpenCLIP() throws {
        let m = try model()
        expectClose("image features", m.encodeImage(images, normalize: false), fixture.tensors["out.image_features"], atol: 1e-4, rtol: 0)
        expectClose("text features", m.encodeText(text, normalize: false), fixture.tensors["out.text_features"], atol: 1e-4, rtol: 0)
        expectClose("image embeds", m.encodeImage(images), fixture.tensors["out.image_embeds"], atol: 1e-4, rtol: 0)
        expectClose("text embeds", m.encodeText(text), fixture.tensors["out.text_embeds"], atol: 1e-4, rtol: 0)
    }

    /// Rows encoded alone are cut after their end-of-text token (the padding cannot affect it
    /// through the causal mask); they must still match open_clip's full-length computation.
    @Test func shortCaptionsSkipPaddingWithTheSameResult() throws {
        let m = try model()
        let reference = try #require(fixture.tensors["out.text_features"])
        let (b, l) = (text.shape[0], text.shape[1])
        for row in 0..<b {
            let ids = IntTensor(shape: [1, l], values: Array(text.values[(row * l)..<((row + 1) * l)]))
            expectClose("text row \(row) alone", m.encodeText(ids, normalize: false), reference.slice(axis: 0, row..<(row + 1)), atol: 1e-4, rtol: 0)
        }
    }

    /// One forward/backward of the symmetric InfoNCE loss: the loss to 1e-5 relative and every
    /// parameter's gradient to 1e-4 absolute + 1e-3 relative.
    @Test func infoNCEGradientsMatchOpenCLIP() throws {
        let m = try model()
        let tape = Tape()
        let loss = tape.record {
            ContrastiveLoss.infoNCE(image: m.encodeImage(images), text: m.encodeText(text), logitScale: m.logitScale)
        }
        let reference = try #require(fixture.tensors["out.loss"])
        expectClose("loss", loss, reference, atol: 0, rtol: 1e-5)
        tape.backward(loss)
        for (key, p) in m.namedParameters() {
            expectClose("∂\(key)", p.grad, fixture.tensors["grad.\(key)"], atol: 1e-4, rtol: 1e-3)
        }
    }

    /// Ten AdamW steps (lr 1e-3, β 0.9/0.98, eps 1e-6, wd 0.2 on all but gains, biases,
    /// embeddings and logit_scale; logit_scale clamped) reproduce open_clip's losses to 1e-4 relative.
    @Test func tenAdamWStepsFollowOpenCLIP() throws {
        let m = try model()
        let opt = AdamW(m, weightDecay: 0.2)
        let losses = try #require(fixture.tensors["train.loss"])
        for step in 0..<losses.count {
            opt.zeroGradients()
            let tape = Tape()
            let loss = tape.record {
                ContrastiveLoss.infoNCE(image: m.encodeImage(images), text: m.encodeText(text), logitScale: m.logitScale)
            }
            let expected = losses.data[step]
            #expect(abs(loss.item() - expected) <= 1e-4 * abs(expected), "step \(step): loss \(loss.item()) vs open_clip \(expected)")
            tape.backward(loss)
            opt.update(lr: 1e-3)
            m.clampLogitScale()
        }
        for (key, p) in m.namedParameters() {
            guard let reference = fixture.tensors["train.final.\(key)"] else {
                Issue.record("no reference for \(key)")
                continue
            }
            if key.hasSuffix("attn.in_proj_bias") {
                // The key bias adds the same q·b to every logit of a row, so softmax cancels it: its
                // true gradient is 0 and Adam turns round-off into lr-sized steps in both frameworks.
                // Compare the query and value thirds only.
                let third = p.count / 3
                for part in [0, 2] {
                    let range = (part * third)..<((part + 1) * third)
                    expectClose("after 10 steps \(key)[\(range)]", p.slice(axis: 0, range), reference.slice(axis: 0, range), atol: 1e-4, rtol: 1e-3)
                }
            } else {
                expectClose("after 10 steps \(key)", p, reference, atol: 1e-4, rtol: 1e-3)
            }
        }
    }

    @Test func parameterKeysAreOpenCLIPs() throws {
        let ours = Set(CLIPModel(config).namedParameters().map(\.key))
        let theirs = Set(fixture.tensors.keys.filter { $0.hasPrefix("param.") }.map { String($0.dropFirst(6)) })
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs).sorted()), only open_clip's: \(theirs.subtracting(ours).sorted())")
    }

    @Test func huggingFaceLayoutLoadsToTheSameModel() throws {
        let hfDir = dir.appendingPathComponent("clip_small_hf")
        let loaded = try CLIPModel.load(from: hfDir.appendingPathComponent("model.safetensors"))
        let outputs = try Safetensors(contentsOf: hfDir.appendingPathComponent("hf_outputs.safetensors"))
        expectClose(
            "HF image features", loaded.model.encodeImage(images, normalize: false), outputs.tensors["out.image_features"], atol: 1e-4, rtol: 0)
        expectClose("HF text features", loaded.model.encodeText(text, normalize: false), outputs.tensors["out.text_features"], atol: 1e-4, rtol: 0)
    }
}

extension Dictionary where Key == String, Value == Tensor {
    /// The entries under `prefix`, with it removed.
    func prefixed(_ prefix: String) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: compactMap { k, v in k.hasPrefix(prefix) ? (String(k.dropFirst(prefix.count)), v) : nil })
    }
}
