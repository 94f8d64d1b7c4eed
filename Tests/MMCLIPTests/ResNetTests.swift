import Foundation
import MMCLIP
import MMTestSupport
import Testing

/// The ResNet image tower against open_clip's ModifiedResNet (Fixtures/resnet*.safetensors,
/// tools/make_resnet_fixture.py): features in both modes, every gradient, the running statistics
/// a training pass leaves, and a whole open_clip checkpoint with int64 batch counters.
@Suite struct ResNetTests {
    let fixtures: URL
    let fixture: Safetensors
    let tower: ModifiedResNet

    init() throws {
        fixtures = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        fixture = try Safetensors(contentsOf: fixtures.appendingPathComponent("resnet.safetensors"))
        tower = ModifiedResNet(.init(imageSize: 64, layers: [1, 2, 1, 1], width: 8, heads: 4, outputDim: 32))
        try tower.load(fixture.tensors.prefixed("param."))
    }

    var images: Tensor { fixture.tensors["in.images"]! }

    @Test func evaluationMatchesOpenCLIP() {
        expectClose(
            "features (running statistics)", tower(images, patchDropout: nil, training: false), fixture.tensors["out.eval"], atol: 2e-5, rtol: 0)
    }

    @Test func trainingMatchesOpenCLIP() throws {
        let upstream = try #require(fixture.tensors["grad_out"])
        let leaf = Tensor(shape: images.shape, values: images.scalars, requiresGrad: true)
        let tape = Tape()
        var out: Tensor?
        let loss = tape.record {
            out = tower(leaf, patchDropout: nil, training: true)
            return (out! * upstream).sum()
        }
        expectClose("features (batch statistics)", out, fixture.tensors["out.train"], atol: 2e-5, rtol: 0)
        tape.backward(loss)
        expectClose("∂images", leaf.grad, fixture.tensors["grad.images"], atol: 2e-5, rtol: 1e-4)
        for (key, p) in tower.namedParameters(includingBuffers: false) {
            expectClose("∂\(key)", p.grad, fixture.tensors["grad.\(key)"], atol: 2e-5, rtol: 1e-4)
        }
        let buffers = tower.namedParameters().filter { !$0.tensor.requiresGrad }
        #expect(buffers.count == 3 * 22)  // 22 batch norms: 3 in the stem, 3 in each of 5 blocks, 1 per downsample (4)
        for (key, b) in buffers {
            expectClose("running \(key)", b, fixture.tensors["after.\(key)"], atol: 1e-6, rtol: 1e-5)
        }
    }

    @Test func parameterCountIsTorchs() {
        let torchParameters = fixture.tensors.keys.filter { $0.hasPrefix("grad.") && $0 != "grad.images" }
            .reduce(0) { $0 + fixture.tensors[$1]!.count }
        #expect(tower.parameterCount == torchParameters)
        #expect(tower.configuration.parameterCount == torchParameters)
    }

    /// open_clip's own RN50 config (recorded by the fixture script) reads as a ResNet with the
    /// parameter count open_clip's model has.
    @Test func openCLIPsRN50ConfigReads() throws {
        let json = try #require(fixture.metadata["rn50_config"]), count = try #require(fixture.metadata["rn50_parameters"].flatMap { Int($0) })
        let rn50 = try CLIPConfig(json: Data(json.utf8), source: "RN50")
        guard case let .resnet(c) = rn50.vision else { Issue.record("RN50 not read as a ResNet"); return }
        #expect(c.layers == [3, 4, 6, 3] && c.heads == 32 && c.gridSize == 7)
        #expect(rn50.parameterCount == count)
    }

    /// An open_clip state_dict as torch holds it (int64 `num_batches_tracked`), loaded with its config.
    @Test func openCLIPCheckpointLoads() throws {
        let file = fixtures.appendingPathComponent("resnet_clip.safetensors")
        let json = try #require(Safetensors(contentsOf: file).metadata["config"])
        let config = try CLIPConfig(json: Data(json.utf8), source: "resnet_clip")
        guard case let .resnet(c) = config.vision else { Issue.record("not read as a ResNet: \(config.vision)"); return }
        #expect(c.layers == [1, 2, 1, 1] && c.heads == 4 && c.embedDim == 256)
        let loaded = try CLIPModel.load(from: file, config: config)
        #expect(loaded.model.parameterCount == config.parameterCount)
        let io = try Safetensors(contentsOf: fixtures.appendingPathComponent("resnet_clip_io.safetensors"))
        expectClose("embeddings", loaded.model.encodeImage(io.tensors["in.images"]!), io.tensors["out.eval"], atol: 2e-6, rtol: 0)
    }

    /// mm's own checkpoint keeps the running statistics; Hugging Face's layout has no ResNet.
    @Test func checkpointsKeepRunningStatistics() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-resnet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = try #require(Safetensors(contentsOf: fixtures.appendingPathComponent("resnet_clip.safetensors")).metadata["config"])
        let model = CLIPModel(try CLIPConfig(json: Data(json.utf8), source: "resnet_clip"), seed: 3)
        _ = model.encodeImage(images, training: true)  // moves the running statistics
        let url = dir.appendingPathComponent("m.safetensors")
        try model.save(to: url)
        let back = try CLIPModel.load(from: url).model
        expectClose("embeddings after a round trip", back.encodeImage(images), model.encodeImage(images), atol: 0, rtol: 0)
        #expect(back.stateDict()["visual.bn1.num_batches_tracked"]?.item() == 1)
        #expect(throws: CheckpointError.self) { try model.save(to: dir.appendingPathComponent("hf.safetensors"), layout: .huggingFace) }
    }

    @Test func configErrorsNameTheField() {
        func config(_ vision: String) throws -> CLIPConfig {
            try CLIPConfig(
                json: Data(#"{"embed_dim": 32, "vision_cfg": \#(vision), "text_cfg": {"width": 64, "heads": 2, "layers": 1}}"#.utf8),
                source: "t.json")
        }
        #expect(throws: Never.self) { try config(#"{"image_size": 64, "layers": [1, 1, 1, 1], "width": 16}"#) }
        for (vision, field) in [
            (#"{"image_size": 64, "layers": [1, 1, 1], "width": 16}"#, "vision_cfg.layers"),
            (#"{"image_size": 64, "layers": [1, 0, 1, 1], "width": 16}"#, "vision_cfg.layers"),
            (#"{"image_size": 64, "layers": [1, "2", 1, 1], "width": 16}"#, "vision_cfg.layers"),
            (#"{"image_size": 100, "layers": [1, 1, 1, 1], "width": 16}"#, "vision_cfg.image_size"),
            (#"{"image_size": 64, "layers": [1, 1, 1, 1], "width": 15}"#, "vision_cfg.width"),
            (#"{"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 48}"#, "vision_cfg.head_width"),
            (#"{"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "patch_dropout": 0.5}"#, "vision_cfg.patch_dropout")
        ] {
            #expect {
                try config(vision)
            } throws: { error in
                (error as? ConfigError)?.key == field
            }
        }
    }
}
