import Foundation
import MMCLIP
import MMTestSupport
import Testing

/// The real ViT-B-32 with every weight perturbed (`make fixtures-vitb32`, ≈600 MB, not committed):
/// normalised embeddings within 1e-4 of open_clip's.
@Suite struct ViTB32ParityTests {
    static let dir = ReferenceVenv.root.appendingPathComponent(".build/fixtures/vitb32")
    static let present = FileManager.default.fileExists(atPath: dir.appendingPathComponent("vitb32_io.safetensors").path)

    @Test(.enabled(if: present, "needs .build/fixtures/vitb32 (`make fixtures-vitb32`, which needs the reference venv)"))
    func embeddingsMatchOpenCLIP() throws {
        let loaded = try CLIPModel.load(from: Self.dir.appendingPathComponent("vitb32.safetensors"), config: try CLIPConfig(named: "ViT-B-32"))
        let io = try Safetensors(contentsOf: Self.dir.appendingPathComponent("vitb32_io.safetensors"))
        let images = try #require(io.tensors["in.images"]), text = try #require(io.ids["ids.text"])
        expectClose("ViT-B-32 image embeds", loaded.model.encodeImage(images), io.tensors["out.image_embeds"], atol: 1e-4, rtol: 0)
        expectClose("ViT-B-32 text embeds", loaded.model.encodeText(text), io.tensors["out.text_embeds"], atol: 1e-4, rtol: 0)
    }
}
