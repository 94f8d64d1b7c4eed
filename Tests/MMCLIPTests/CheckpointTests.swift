import Foundation
import MMCLIP
import MMTestSupport
import Testing

@Suite struct CheckpointTests {
    let dir: URL
    let config: CLIPConfig
    let fixture: Safetensors
    let scratch: URL

    init() throws {
        dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        config = try CLIPConfig(named: dir.appendingPathComponent("clip_small.json").path)
        fixture = try Safetensors(contentsOf: dir.appendingPathComponent("clip_small.safetensors"))
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mm-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    func reference() throws -> CLIPModel {
        let m = CLIPModel(config)
        try m.load(fixture.tensors.prefixed("param."))
        return m
    }

    var images: Tensor { fixture.tensors["in.images"]! }
    var text: IntTensor { fixture.ids["ids.text"]! }

    @Test func roundTripKeepsWeightsConfigAndPreprocessing() throws {
        let m = try reference()
        let url = scratch.appendingPathComponent("m.safetensors")
        let prep = Preprocessing(imageSize: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        // a vocabulary named relative to the checkpoint's folder comes back as its full path
        let vocab = scratch.appendingPathComponent("vocab/mine")
        try FileManager.default.createDirectory(at: vocab, withIntermediateDirectories: true)
        try m.save(to: url, preprocessing: prep, tokenizer: "vocab/mine")
        let loaded = try CLIPModel.load(from: url)  // config from the file's metadata
        #expect(loaded.model.config == config)
        #expect(loaded.preprocessing == prep && loaded.tokenizer == "vocab/mine")
        #expect(try loaded.vocabularyFolder() == vocab.resolvingSymlinksInPath().path)
        for ((k, a), (_, b)) in zip(m.namedParameters(), loaded.model.namedParameters()) {
            #expect(a.scalars == b.scalars, "\(k) changed in the round trip")
        }
    }

    @Test func huggingFaceExportReimports() throws {
        let m = try reference()
        let url = scratch.appendingPathComponent("model.safetensors")
        try m.save(to: url, layout: .huggingFace)
        let contents = try Safetensors(contentsOf: url)
        #expect(contents.tensors["vision_model.encoder.layers.1.self_attn.k_proj.weight"]?.shape == [64, 64])
        #expect(contents.tensors["visual_projection.weight"]?.shape == [32, 64])
        let back = try CLIPModel.load(from: url).model
        expectClose("re-imported image embeds", back.encodeImage(images), m.encodeImage(images), atol: 0, rtol: 0)
        expectClose("re-imported text embeds", back.encodeText(text), m.encodeText(text), atol: 0, rtol: 0)
    }

    /// A checkpoint written by mm loads in open_clip with strict=True and gives the same numbers
    /// (tools/make_model_fixtures.py verify-openclip); needs the reference venv.
    @Test(.enabled(if: ReferenceVenv.available, Comment(rawValue: ReferenceVenv.missingReason)))
    func openCLIPLoadsOurCheckpoint() throws {
        let url = scratch.appendingPathComponent("for_open_clip.safetensors")
        try reference().save(to: url)
        let result = try ReferenceVenv.run([
            "tools/make_model_fixtures.py", "verify-openclip", url.path,
            dir.appendingPathComponent("clip_small.json").path,
            dir.appendingPathComponent("clip_small.safetensors").path
        ])
        #expect(result.status == 0, "open_clip verification failed: \(result.output)")
    }

    /// Our Hugging Face export loads in transformers' CLIPModel and gives open_clip's numbers.
    @Test(.enabled(if: ReferenceVenv.available, Comment(rawValue: ReferenceVenv.missingReason)))
    func transformersLoadsOurHuggingFaceExport() throws {
        let hf = scratch.appendingPathComponent("hf")
        try FileManager.default.createDirectory(at: hf, withIntermediateDirectories: true)
        try reference().save(to: hf.appendingPathComponent("model.safetensors"), layout: .huggingFace)
        let result = try ReferenceVenv.run([
            "tools/make_model_fixtures.py", "verify-hf", hf.path,
            dir.appendingPathComponent("clip_small.safetensors").path
        ])
        #expect(result.status == 0, "transformers verification failed: \(result.output)")
    }

    @Test func activationMismatchIsRefused() throws {
        let url = scratch.appendingPathComponent("gelu.safetensors")
        try reference().save(to: url)
        var json = try #require(try JSONSerialization.jsonObject(with: Data(config.jsonString.utf8)) as? [String: Any])
        json["quick_gelu"] = true
        let quick = try CLIPConfig(json: try JSONSerialization.data(withJSONObject: json), source: "quick.json")
        #expect {
            try CLIPModel.load(from: url, config: quick)
        } throws: { "\($0)".contains("trained with gelu") && "\($0)".contains(url.path) }
    }

    @Test func badCheckpointsGiveErrorsNamingTheProblem() throws {
        // Weights that do not fit the config: the error names the key and both shapes.
        var json = try #require(try JSONSerialization.jsonObject(with: Data(config.jsonString.utf8)) as? [String: Any])
        json["embed_dim"] = 16
        let other = try CLIPConfig(json: try JSONSerialization.data(withJSONObject: json), source: "other.json")
        let url = scratch.appendingPathComponent("m.safetensors")
        try reference().save(to: url)
        #expect { try CLIPModel.load(from: url, config: other) } throws: {
            "\($0)".contains("text_projection") && "\($0)".contains("[64, 16]") && "\($0)".contains("[64, 32]")
        }
        // A missing parameter.
        var state = try reference().stateDict()
        state.removeValue(forKey: "ln_final.weight")
        let missing = scratch.appendingPathComponent("missing.safetensors")
        try Safetensors(tensors: state, metadata: ["model_config": config.jsonString]).write(to: missing)
        #expect { try CLIPModel.load(from: missing) } throws: { "\($0)".contains("missing key 'ln_final.weight'") }
        // A truncated file.
        let data = try Data(contentsOf: url)
        let truncated = scratch.appendingPathComponent("truncated.safetensors")
        try data.prefix(data.count / 2).write(to: truncated)
        #expect { try CLIPModel.load(from: truncated) } throws: { "\($0)".contains("truncated.safetensors") }
        // No config anywhere.
        let bare = scratch.appendingPathComponent("bare.safetensors")
        try Safetensors(tensors: try reference().stateDict()).write(to: bare)
        #expect { try CLIPModel.load(from: bare) } throws: { "\($0)".contains("no model config") }
    }

    @Test func nestedStateDictPrefixesAreUnwrapped() throws {
        let m = try reference()
        let url = scratch.appendingPathComponent("ddp.safetensors")
        let state = Dictionary(uniqueKeysWithValues: m.stateDict().map { ("module.\($0.key)", $0.value) })
        try Safetensors(tensors: state).write(to: url)
        let loaded = try CLIPModel.load(from: url, config: config).model
        expectClose("module.-prefixed", loaded.encodeText(text), m.encodeText(text), atol: 0, rtol: 0)
    }
}
