import Foundation
import MMCLIP
import MMTestSupport
import Testing

/// PyTorch checkpoints, hub folders and reduced-precision safetensors against the embeddings the
/// reference computes from the same files (tools/make_torch_fixtures.py; Fixtures/torch/).
@Suite struct TorchCheckpointTests {
    let dir: URL
    let io: Safetensors
    let tiny: CLIPConfig
    let scratch: URL

    init() throws {
        dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("torch")
        io = try Safetensors(contentsOf: dir.appendingPathComponent("io.safetensors"))
        tiny = try CLIPConfig(named: dir.appendingPathComponent("tiny.json").path)
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mm-torch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    /// Largest |Δ| of the model's normalised embeddings against the reference's for `fixture`.
    func worst(_ model: CLIPModel, _ fixture: String) -> Float {
        let image = model.encodeImage(io.tensors["in.images"]!)
        let text = model.encodeText(io.ids["ids.text"]!)
        let a = maxAbsDiff(image, io.tensors["\(fixture).image_embeds"]!)
        let b = maxAbsDiff(text, io.tensors["\(fixture).text_embeds"]!)
        print("\(fixture): max|Δ| image \(a), text \(b)")
        return max(a, b)
    }

    func maxAbsDiff(_ x: Tensor, _ y: Tensor) -> Float {
        guard x.shape == y.shape else { return .infinity }
        return zip(x.scalars, y.scalars).map { abs($0 - $1) }.max() ?? 0
    }

    func load(_ name: String, config: CLIPConfig? = nil) throws -> LoadedModel {
        try CLIPModel.load(from: dir.appendingPathComponent(name), config: config)
    }

    /// The error text of loading `name`, which must fail.
    func failure(_ url: URL, config: CLIPConfig? = nil) -> String {
        do {
            _ = try CLIPModel.load(from: url, config: config)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }

    // MARK: - Formats people hold, against the reference

    @Test func openCLIPTrainingCheckpointLoadsWithItsNumbers() throws {
        let loaded = try load("epoch_3.pt")  // no config: inferred from shapes (GELU, noted)
        #expect(loaded.model.config == tiny)
        #expect(loaded.notes.count == 1)
        #expect(worst(loaded.model, "epoch_3") <= 1e-6)
        #expect(worst(try load("epoch_3.pt", config: tiny).model, "epoch_3") <= 1e-6)
    }

    @Test func openCLIPRunParamsNameTheActivation() throws {
        // logs/run/params.txt beside logs/run/checkpoints/epoch_3.pt, as open_clip_train writes it
        let run = scratch.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        let checkpoint = run.appendingPathComponent("checkpoints/epoch_3.pt")
        try FileManager.default.copyItem(at: dir.appendingPathComponent("epoch_3.pt"), to: checkpoint)
        try "batch_size: 4\nforce_quick_gelu: True\nmodel: tiny-custom\n".write(
            to: run.appendingPathComponent("params.txt"), atomically: true, encoding: .utf8)
        let loaded = try CLIPModel.load(from: checkpoint)
        #expect(loaded.model.config.quickGelu && loaded.notes.isEmpty)
        try "model: mm-tiny\n".write(to: run.appendingPathComponent("params.txt"), atomically: true, encoding: .utf8)
        let message = failure(checkpoint)  // the named config does not fit these weights: both named
        #expect(message.contains("params.txt (model mm-tiny)") && message.contains("epoch_3.pt"), "\(message)")
    }

    @Test func plainStateDictLoadsWithItsNumbers() throws {
        #expect(worst(try load("plain.pt", config: tiny).model, "plain") <= 1e-6)
    }

    @Test func stridedOffsetAndSharedStorageViewsAreMaterialised() throws {
        #expect(worst(try load("views.pt", config: tiny).model, "views") <= 1e-6)
        // the same values as the contiguous file, bit for bit
        let a = try load("views.pt", config: tiny).model.stateDict(), b = try load("plain.pt", config: tiny).model.stateDict()
        for (k, t) in a { #expect(t.scalars == b[k]!.scalars, "\(k)") }
    }

    @Test func openAITorchScriptArchiveLoadsWithQuickGELUAndItsNumbers() throws {
        let loaded = try load("openai_jit.pt")
        #expect(loaded.model.config.quickGelu)
        #expect(loaded.model.config.vision.transformer?.heads == 1 && loaded.model.config.text.layers == 1)
        #expect(worst(loaded.model, "openai_jit") <= 1e-6)
    }

    @Test func openCLIPHubFolderLoadsWithItsPreprocessing() throws {
        let loaded = try load("hub")
        #expect(loaded.preprocessing.mean == [0.5, 0.5, 0.5] && loaded.preprocessing.std == [0.25, 0.25, 0.25])
        #expect(worst(loaded.model, "hub") <= 1e-6)
    }

    @Test func openCLIPHubFolderPrefersSafetensorsWithoutMetadata() throws {
        // open_clip_model.safetensors as open_clip's hub export writes it: keys only, no metadata
        let hub = scratch.appendingPathComponent("hub")
        try FileManager.default.copyItem(at: dir.appendingPathComponent("hub"), to: hub)
        let state = try load("hub").model.stateDict()
        try Safetensors(tensors: state).write(to: hub.appendingPathComponent("open_clip_model.safetensors"))
        try FileManager.default.removeItem(at: hub.appendingPathComponent("open_clip_pytorch_model.bin"))
        let loaded = try CLIPModel.load(from: hub)
        #expect(loaded.preprocessing.mean == [0.5, 0.5, 0.5])
        #expect(worst(loaded.model, "hub") <= 1e-6)
    }

    @Test func transformersFolderWithSafetensorsLoads() throws {
        let folder = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("clip_small_hf")
        let outputs = try Safetensors(contentsOf: folder.appendingPathComponent("hf_outputs.safetensors"))
        let model = try CLIPModel.load(from: folder).model
        let image = model.encodeImage(outputs.tensors["in.images"]!, normalize: false)
        #expect(maxAbsDiff(image, outputs.tensors["out.image_features"]!) <= 1e-5)
    }

    @Test func transformersFolderLoadsWithItsNumbers() throws {
        #expect(worst(try load("transformers").model, "transformers") <= 1e-5)
    }

    @Test func runFolderLoadsItsLatestEpoch() throws {
        let run = scratch.appendingPathComponent("run/checkpoints")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let m = try load("plain.pt", config: tiny).model
        try m.save(to: run.appendingPathComponent("epoch_2.safetensors"))
        try CLIPModel(tiny, seed: 9).save(to: run.appendingPathComponent("epoch_1.safetensors"))
        try CLIPModel(tiny, seed: 8).save(to: run.appendingPathComponent("epoch_10.safetensors"))
        let loaded = try CLIPModel.load(from: scratch.appendingPathComponent("run"))
        #expect(loaded.model.stateDict()["logit_scale"]!.scalars == CLIPModel(tiny, seed: 8).stateDict()["logit_scale"]!.scalars)
        let latest = try CLIPModel.load(from: run.appendingPathComponent("epoch_10.safetensors")).model
        #expect(maxAbsDiff(loaded.model.stateDict()["visual.proj"]!, latest.stateDict()["visual.proj"]!) == 0)
    }

    @Test func folderConfigDisagreeingWithWeightsNamesBoth() throws {
        let hub = scratch.appendingPathComponent("hub")
        try FileManager.default.copyItem(at: dir.appendingPathComponent("hub"), to: hub)
        let configURL = hub.appendingPathComponent("open_clip_config.json")
        var top = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        var model = try #require(top["model_cfg"] as? [String: Any])
        model["embed_dim"] = 8
        top["model_cfg"] = model
        try JSONSerialization.data(withJSONObject: top).write(to: configURL)
        let message = failure(hub)
        #expect(
            message.contains("open_clip_config.json") && message.contains("open_clip_pytorch_model.bin") && message.contains("text_projection"),
            "\(message)")
    }

    // MARK: - Hostile and broken files

    @Test(arguments: ["os_system", "posix_system", "builtins_eval", "subprocess", "unknown_class", "nested_os_system"])
    func codeInAPickleIsRefusedWithoutSideEffects(_ name: String) throws {
        let marker = "/tmp/mm-torch-marker-\(name)"
        unlink(marker)
        let message = failure(dir.appendingPathComponent("hostile/\(name).pt"))
        let global = [
            "os_system": "os.system", "posix_system": "posix.system", "builtins_eval": "builtins.eval",
            "subprocess": "subprocess.getoutput", "unknown_class": "__main__.Payload", "nested_os_system": "os.system"
        ][name]!
        #expect(message.contains("refusing global \(global)") && message.contains("\(name).pt"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the payload ran: \(marker) exists")
    }

    @Test(arguments: [
        ("truncated", "no end of central directory"), ("wrong_magic", "neither safetensors nor a PyTorch checkpoint"),
        ("huge_declared_size", "past the data's end"), ("missing_storage", "is missing from the archive"),
        ("big_endian", "big-endian")
    ])
    func brokenArchiveIsOneClearError(_ name: String, _ expected: String) throws {
        let message = failure(dir.appendingPathComponent("hostile/\(name).pt"), config: tiny)
        #expect(message.contains(expected) && message.contains("\(name).pt") && !message.contains("\n"), "\(message)")
    }

    @Test func specialFilesAreRefusedWithoutReadingOrBlocking() throws {
        let fifo = scratch.appendingPathComponent("fifo.pt")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        for url in [fifo, URL(fileURLWithPath: "/dev/zero")] {
            let message = failure(url, config: tiny)
            #expect(message.contains("not a regular file") && message.contains(url.path), "\(message)")
        }
    }

    @Test func pickleNestingAndSelfReferenceAreBounded() throws {
        // 10,000 nested empty lists appended into each other
        var deep: [UInt8] = [0x80, 0x02]
        for _ in 0..<10_000 { deep.append(0x5D) }
        for _ in 0..<9_999 { deep.append(0x61) }
        deep.append(0x2E)
        let cases: [(String, [UInt8], String)] = [
            ("deep", deep, "nest deeper"),
            ("self", [0x80, 0x02, 0x5D, 0x32, 0x61, 0x2E], "cannot hold itself"),  // l = []; l.append(l)
            ("memo", [0x80, 0x02, 0x68, 0x07, 0x2E], "memo slot 7"),  // a memo slot never written
            ("long", [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F, 0x2E], "truncated pickle"),  // a string past the end
            ("opcode", [0x80, 0x02, 0x69, 0x2E], "unsupported pickle opcode 0x69")  // INST (protocol 0 calls)
        ]
        for (name, pickle, expected) in cases {
            let url = scratch.appendingPathComponent("\(name).pt")
            try storedZip(["archive/data.pkl": pickle, "archive/byteorder": Array("little".utf8)]).write(to: url)
            let message = failure(url, config: tiny)
            #expect(message.contains(expected), "\(name): \(message)")
        }
    }

    // MARK: - Untrusted metadata

    /// A safetensors file whose metadata records `config` over the tiny weights.
    func withRecordedConfig(_ changes: [String: Any]) throws -> URL {
        let m = try load("plain.pt", config: tiny).model
        let url = scratch.appendingPathComponent("claims-\(UUID().uuidString).safetensors")
        try m.save(to: url)
        var file = try Safetensors(contentsOf: url)
        var top = try #require(try JSONSerialization.jsonObject(with: Data(file.metadata["model_config"]!.utf8)) as? [String: Any])
        for (path, value) in changes {
            let parts = path.split(separator: ".").map(String.init)
            if parts.count == 2 {
                var section = top[parts[0]] as! [String: Any]
                section[parts[1]] = value
                top[parts[0]] = section
            } else {
                top[path] = value
            }
        }
        file.metadata["model_config"] = String(decoding: try JSONSerialization.data(withJSONObject: top), as: UTF8.self)
        try file.write(to: url)
        return url
    }

    @Test func configClaimsAreBoundedBeforeAllocating() throws {
        for (field, value) in [("vision_cfg.layers", 1_000_000_000), ("vision_cfg.width", 1 << 40), ("text_cfg.vocab_size", 1 << 40)]
            as [(String, Any)]
        {
            let message = failure(try withRecordedConfig([field: value]))
            #expect(message.contains(field.split(separator: ".").last!) && message.contains("limit"), "\(message)")
        }
        // within the limits, but more than the file holds: refused before the model is built
        let message = failure(try withRecordedConfig(["text_cfg.layers": 1000, "vision_cfg.layers": 1000]))
        #expect(message.contains("implies") && message.contains("holds only"), "\(message)")
    }

    @Test func parameterCountIsKnownWithoutBuildingTheModel() throws {
        for config in [tiny, try CLIPConfig(named: "mm-tiny")] {
            #expect(config.parameterCount == CLIPModel(config).parameterCount)
        }
        #expect(try CLIPConfig(named: "ViT-B-32").parameterCount == 151_277_313)
    }

    @Test func nonFiniteWeightsAreRefusedNamingTheTensor() throws {
        let m = try load("plain.pt", config: tiny).model
        m.stateDict()["visual.transformer.resblocks.0.mlp.c_fc.bias"]!.data[3] = .nan
        let url = scratch.appendingPathComponent("nan.safetensors")
        try m.save(to: url)
        let message = failure(url)
        #expect(message.contains("visual.transformer.resblocks.0.mlp.c_fc.bias") && message.contains("finite"), "\(message)")
    }

    @Test func tokenizerPathsFromMetadataStayInsideTheCheckpointFolder() throws {
        let m = try load("plain.pt", config: tiny).model
        let folder = scratch.appendingPathComponent("ckpt")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("vocab"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("escape").path, withDestinationPath: "/etc")
        for hostile in ["/dev/zero", "../../etc/passwd", "vocab/../../x", "escape", "/etc"] {
            let url = folder.appendingPathComponent("m.safetensors")
            try m.save(to: url, tokenizer: hostile)
            let loaded = try CLIPModel.load(from: url)  // the weights are fine; the name is never opened
            #expect { try loaded.vocabularyFolder() } throws: { "\($0)".contains("tokenizer") && "\($0)".contains(url.path) }
        }
        let url = folder.appendingPathComponent("ok.safetensors")
        try m.save(to: url, tokenizer: "vocab")
        #expect(try CLIPModel.load(from: url).vocabularyFolder() == folder.appendingPathComponent("vocab").resolvingSymlinksInPath().path)
    }

    // MARK: - Reduced precision and conversion

    @Test(arguments: [SafetensorsFloat.f16, .bf16])
    func halfPrecisionSafetensorsLoadWidened(_ floats: SafetensorsFloat) throws {
        let m = try load("plain.pt", config: tiny).model
        let url = scratch.appendingPathComponent("half.safetensors")
        try m.save(to: url, floats: floats)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int)
        let full = scratch.appendingPathComponent("full.safetensors")
        try m.save(to: full)
        let fullSize = try #require(try FileManager.default.attributesOfItem(atPath: full.path)[.size] as? Int)
        #expect(Double(size) < 0.6 * Double(fullSize))  // headers weigh on a file this small
        let half = try CLIPModel.load(from: url).model
        let change = worst(half, "plain")
        print("\(floats.rawValue) weights: max|Δ| embeddings vs the f32 reference \(change)")
        #expect(change > 0 && change <= (floats == .f16 ? 1e-3 : 1e-2))
    }

    @Test(.enabled(if: ReferenceVenv.available, Comment(rawValue: ReferenceVenv.missingReason)))
    func convertedTorchCheckpointLoadsStrictlyInOpenCLIP() throws {
        let out = scratch.appendingPathComponent("converted.safetensors")
        let loaded = try load("epoch_3.pt")
        try loaded.model.save(to: out, preprocessing: loaded.preprocessing)
        let result = try ReferenceVenv.run([
            "tools/make_torch_fixtures.py", "verify-strict", out.path,
            dir.appendingPathComponent("tiny.json").path,
            dir.appendingPathComponent("io.safetensors").path, "epoch_3", "1e-6"
        ])
        #expect(result.status == 0, "\(result.output)")
    }
}

/// A zip of stored members, as PyTorch writes them (no ZIP64, no alignment), for hand-made pickles.
func storedZip(_ members: [String: [UInt8]]) -> Data {
    var out = [UInt8](), directory = [UInt8]()
    func le(_ v: Int, _ n: Int, _ into: inout [UInt8]) { for i in 0..<n { into.append(UInt8((v >> (8 * i)) & 0xFF)) } }
    for (name, data) in members.sorted(by: { $0.key < $1.key }) {
        let offset = out.count, nameBytes = Array(name.utf8)
        le(0x0403_4B50, 4, &out); le(20, 2, &out); le(0, 2, &out); le(0, 2, &out); le(0, 4, &out); le(0, 4, &out)
        le(data.count, 4, &out); le(data.count, 4, &out); le(nameBytes.count, 2, &out); le(0, 2, &out)
        out += nameBytes + data
        le(0x0201_4B50, 4, &directory); le(20, 2, &directory); le(20, 2, &directory); le(0, 2, &directory); le(0, 2, &directory)
        le(0, 4, &directory); le(0, 4, &directory); le(data.count, 4, &directory); le(data.count, 4, &directory)
        le(nameBytes.count, 2, &directory); le(0, 2, &directory); le(0, 2, &directory); le(0, 2, &directory); le(0, 2, &directory)
        le(0, 4, &directory); le(offset, 4, &directory)
        directory += nameBytes
    }
    let start = out.count
    out += directory
    le(0x0605_4B50, 4, &out); le(0, 2, &out); le(0, 2, &out); le(members.count, 2, &out); le(members.count, 2, &out)
    le(directory.count, 4, &out); le(start, 4, &out); le(0, 2, &out)
    return Data(out)
}
