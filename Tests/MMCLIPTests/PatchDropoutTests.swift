import Foundation
import MMCLIP
import MMTestSupport
import Testing

/// Patch dropout against open_clip's VisionTransformer + PatchDropout in training mode, fed the
/// patches open_clip kept (Fixtures/patch_dropout.safetensors, tools/make_patch_dropout_fixture.py).
@Suite struct PatchDropoutTests {
    let fixture: Safetensors
    let tower: VisionTransformer

    init() throws {
        let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        fixture = try Safetensors(contentsOf: dir.appendingPathComponent("patch_dropout.safetensors"))
        tower = VisionTransformer(.init(imageSize: 32, patchSize: 8, width: 64, layers: 2, heads: 2, outputDim: 32, patchDropout: 0.5))
        try tower.load(fixture.tensors.prefixed("param."))
    }

    var images: Tensor { fixture.tensors["in.images"]! }

    /// Features and every gradient given open_clip's kept patches. Observed: features ≤ 1.4e-6,
    /// gradients ≤ 7.6e-6 on entries up to ~16.
    @Test func keptPatchesMatchOpenCLIP() throws {
        let kept = try #require(fixture.ids["ids.kept"])
        let upstream = try #require(fixture.tensors["grad_out"])
        let leaf = Tensor(shape: images.shape, values: images.scalars, requiresGrad: true)
        let tape = Tape()
        var out: Tensor?
        let loss = tape.record {
            out = tower(leaf, keeping: kept)
            return (out! * upstream).sum()
        }
        expectClose("features with patch dropout", out, fixture.tensors["out.train"], atol: 5e-6, rtol: 0)
        tape.backward(loss)
        expectClose("∂images", leaf.grad, fixture.tensors["grad.images"], atol: 1e-5, rtol: 1e-5)
        for (key, p) in tower.namedParameters() {
            expectClose("∂\(key)", p.grad, fixture.tensors["grad.\(key)"], atol: 1e-5, rtol: 1e-5)
        }
    }

    @Test func evaluationDropsNothing() {
        expectClose("features without patch dropout", tower(images), fixture.tensors["out.eval"], atol: 5e-6, rtol: 0)
    }

    /// The kept count rounds n·(1 − p) in double precision, as Python does (10 · 0.9 keeps 9).
    @Test func keptCountsAreOpenCLIPs() throws {
        let table = try #require(fixture.ids["ids.kept_counts"])
        #expect(table.shape[0] >= 8)
        for row in 0..<table.shape[0] {
            let (n, rate, expected) = (Int(table.values[3 * row]), Double(table.values[3 * row + 1]) / 1000, Int(table.values[3 * row + 2]))
            #expect(PatchDropout(rate: rate, seed: 0).keptCount(of: n) == expected, "\(n) patches at rate \(rate)")
        }
    }

    /// A seed gives one subset per image, independent of the batch around it; different seeds differ.
    @Test func keptSubsetsComeFromTheSeed() {
        let d = PatchDropout(rate: 0.5, seed: 7)
        let four = d.keptPatches(batch: 4, patches: 16), two = d.keptPatches(batch: 2, patches: 16)
        #expect(four.shape == [4, 8])
        #expect(Array(four.values[0..<16]) == two.values)
        for i in 0..<4 {
            let row = Array(four.values[(8 * i)..<(8 * i + 8)])
            #expect(row == row.sorted() && Set(row).count == 8 && row.allSatisfy { (0..<16).contains($0) })
        }
        #expect(PatchDropout(rate: 0.5, seed: 8).keptPatches(batch: 4, patches: 16).values != four.values)
    }

    @Test func configReadsPatchDropout() throws {
        let json =
            #"{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "patch_dropout": 0.1}, "text_cfg": {"width": 64, "heads": 2, "layers": 1}}"#
        #expect(try CLIPConfig(json: Data(json.utf8), source: "t.json").vision.patchDropout == 0.1)
        let bad = json.replacingOccurrences(of: "0.1}", with: "1.0}")
        #expect(throws: ConfigError.self) { try CLIPConfig(json: Data(bad.utf8), source: "t.json") }
    }
}
