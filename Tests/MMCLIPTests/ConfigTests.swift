import Foundation
import MMCLIP
import Testing

@Suite struct ConfigTests {
    @Test func bundledConfigsParse() throws {
        #expect(Set(CLIPConfig.bundledNames).isSuperset(of: ["ViT-B-32", "ViT-B-16", "ViT-L-14", "mm-tiny"]))
        for name in CLIPConfig.bundledNames { _ = try CLIPConfig(named: name) }
        let b32 = try CLIPConfig(named: "ViT-B-32")
        #expect(b32.vision.transformer?.heads == 12 && b32.vision.transformer?.gridSize == 7 && !b32.quickGelu && b32.text.contextLength == 77)
        #expect(try CLIPConfig(named: "ViT-B-32-quickgelu").quickGelu)
    }

    /// DESIGN.md §4: ViT-B-32 has 151,277,313 parameters in open_clip.
    @Test func vitB32HasOpenCLIPsParameterCount() throws {
        #expect(CLIPModel(try CLIPConfig(named: "ViT-B-32")).parameterCount == 151_277_313)
    }

    @Test func unsupportedFieldsAreRejectedByName() throws {
        func parse(_ json: String) throws -> CLIPConfig { try CLIPConfig(json: Data(json.utf8), source: "x.json") }
        let base = #""embed_dim": 8, "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8"#
        let text = #""text_cfg": {"context_length": 8, "vocab_size": 10, "width": 16, "heads": 2, "layers": 1}"#
        _ = try parse("{\(base), \"pool_type\": \"tok\"}, \(text)}")
        #expect { try parse("{\(base), \"pool_type\": \"avg\"}, \(text)}") } throws: { "\($0)".contains("vision_cfg.pool_type") }
        #expect { try parse("{\(base), \"timm_model_name\": \"resnet50\"}, \(text)}") } throws: { "\($0)".contains("vision_cfg.timm_model_name") }
        #expect { try parse("{\(base)}, \(text), \"custom_text\": true}") } throws: { "\($0)".contains("custom_text") }
        #expect { try parse("{\(base)}, \(text), \"multimodal_cfg\": {}}") } throws: { "\($0)".contains("multimodal_cfg") }
        #expect { try parse("{\(base), \"patch_size\": 5}, \(text)}") } throws: { "\($0)".contains("patch_size") }
        #expect { try parse("[1, 2]") } throws: { "\($0)".contains("not a JSON object") }
        #expect { try CLIPConfig(named: "ViT-Q-99") } throws: { "\($0)".contains("no such model") && "\($0)".contains("ViT-B-32") }
    }
}
