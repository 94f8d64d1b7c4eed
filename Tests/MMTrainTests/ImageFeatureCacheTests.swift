import Foundation
import MMCLIP
import MMData
import MMDistributed
import MMImage
import MMTokenizer
import MMTrain
import Testing

/// LiT's cached image features (`TrainingOptions.imageFeatureCache`): a locked image tower on
/// the evaluation transform computes each sample's features once; later epochs neither decode
/// the image nor run the tower, and train exactly as the uncached path does.
@Suite(.serialized) struct ImageFeatureCacheTests {
    /// TrainingRunTests' scratch folder, with its training images copied into it (so that a test
    /// can delete them) and the 3-epoch LiT configuration: locked tower, cached features.
    static func scratch(memoryLimit: Int = 1 << 30) throws -> (dir: URL, configuration: RunConfiguration) {
        let dir = try TrainingRunTests.scratch()
        let images = dir.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let pairs = dir.appendingPathComponent("train.tsv")
        let lines = try String(contentsOf: pairs, encoding: .utf8).split(separator: "\n")
        let rows = try lines.dropFirst().enumerated().map { i, line -> String in
            let fields = line.split(separator: "\t", maxSplits: 1)
            let copy = images.appendingPathComponent("\(i)-" + URL(fileURLWithPath: String(fields[0])).lastPathComponent)
            try FileManager.default.copyItem(atPath: String(fields[0]), toPath: copy.path)
            return copy.path + "\t" + fields[1]
        }
        try ([String(lines[0])] + rows).joined(separator: "\n").appending("\n").write(to: pairs, atomically: true, encoding: .utf8)
        var c = TrainingRunTests.configuration(dir, epochs: 3)
        c.data.val = nil
        c.data.zeroshotLabels = nil
        c.data.zeroshotData = nil
        c.training.lockImage = true
        c.training.imageFeatureCache = ImageFeatureCacheSettings(memoryLimit: memoryLimit)
        return (dir, c)
    }

    static func losses(_ folder: RunFolder) -> [Double] {
        folder.readLog().compactMap { if case .step(let s) = $0 { return s.loss } else { return nil } }
    }

    /// The parameters of `a` and `b` that differ in any bit (by key).
    static func differences(_ a: CLIPModel, _ b: CLIPModel) -> [String] {
        zip(a.namedParameters(), b.namedParameters()).filter { $0.0.tensor.scalars != $0.1.tensor.scalars }.map(\.0.key)
    }

    /// The uncached path on the same data and transform: a `Trainer` fed by a plain
    /// `LoaderSource` with the evaluation transform, which decodes every image and runs the
    /// locked tower on it in every epoch.
    static func uncached(_ c: RunConfiguration, folder: URL) throws -> Trainer {
        var options = c.training
        options.imageFeatureCache = nil
        let model = CLIPModel(try CLIPConfig(named: c.model.name!), seed: options.seed)
        let preprocessing = Preprocessing(imageSize: model.config.vision.imageSize)
        let manifest = try Manifest(path: c.data.pairs)
        let source = LoaderSource(
            training: manifest, order: try EpochOrder(sampleCount: manifest.count, batchSize: options.batchSize, seed: options.seed),
            transform: .eval(size: preprocessing.imageSize), tokenizer: Tokenizer(vocabulary: try Vocabulary.clip(), contextLength: 32),
            epochs: options.epochs, threads: 2)
        let trainer = Trainer(model: model, options: options, run: RunFolder(folder), preprocessing: preprocessing, tokenizer: "clip-bpe")
        trainer.showsProgress = false
        try trainer.prepareRunFolder()
        _ = try trainer.train(source: source, validation: nil)
        return trainer
    }

    /// Every step's loss and the final weights are bitwise those of the uncached path — with
    /// gradient accumulation too, and with the cache in RAM or in a scratch file — and from the
    /// middle of epoch 2 on the run trains with its image files deleted: nothing decodes them.
    @Test(arguments: [(1, 1 << 30), (2, 0)])
    func cachedFeaturesTrainExactlyLikeTheUncachedPath(accumFreq: Int, memoryLimit: Int) throws {
        let (dir, saved) = try Self.scratch(memoryLimit: memoryLimit)
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = saved
        c.training.accumFreq = accumFreq
        c.training.batchSize = 16 / accumFreq
        let reference = try Self.uncached(c, folder: dir.appendingPathComponent("uncached"))

        let run = try TrainingRun(c, folder: dir.appendingPathComponent("cached"))
        run.trainer.showsProgress = false
        // The loader works up to three batches ahead: those of steps 7–9 may have been composed
        // before epoch 1's features were all stored; those of later steps never read an image.
        run.trainer.afterStep = { if $0.position.step == 9 { try? FileManager.default.removeItem(at: dir.appendingPathComponent("images")) } }
        let outcome = try run.train()
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("images").path))
        #expect(outcome.skipped == 0 && run.trainer.position.step == 18)
        let cache = try #require(run.trainer.imageFeatureCache)
        #expect(cache.count == 96 && cache.onDisk == (memoryLimit == 0))

        let (a, b) = (Self.losses(RunFolder(dir.appendingPathComponent("uncached"))), Self.losses(run.folder))
        #expect(a.count == 18 && a == b, "uncached \(a)\ncached   \(b)")
        #expect(Self.differences(reference.model, run.trainer.model).isEmpty)
        // The scratch file was unlinked when mapped: the run folder holds only the run's files.
        #expect(try FileManager.default.contentsOfDirectory(atPath: run.folder.url.path).allSatisfy { !$0.hasPrefix(".mm-scratch") })
    }

    /// A run stopped in epoch 2 and resumed recomputes its features (the cache is not saved) and
    /// ends bitwise where the straight run does, though epoch 3 then mixes cached and new rows.
    @Test func aResumedRunRecomputesAndMatchesTheStraightRun() throws {
        let (dir, c) = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let straight = try TrainingRun(c, folder: dir.appendingPathComponent("straight"))
        _ = try TrainingRunTests.train(straight)

        let folder = dir.appendingPathComponent("resumed")
        let stopped = try TrainingRun(c, folder: folder)
        stopped.trainer.afterStep = { if $0.position.step == 8 { $0.requestStop() } }
        #expect(try TrainingRunTests.train(stopped).interrupted)
        let resumed = try TrainingRun.resume(folder)
        #expect(resumed.trainer.imageFeatureCache?.count == 0 && resumed.configuration.training.imageFeatureCache != nil)
        _ = try TrainingRunTests.train(resumed)
        #expect(Self.losses(straight.folder) == Self.losses(resumed.folder))
        #expect(Self.differences(straight.trainer.model, resumed.trainer.model).isEmpty)
    }

    /// On two in-process ranks each rank stores the global batch's features, so both have every
    /// sample's after epoch 1 and read no image after that. 2 × 8 pairs take one process's 16-pair steps.
    @Test func twoThreadRanksTrainLikeOneProcess() throws {
        let (dir, saved) = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = saved
        let one = try TrainingRun(c, folder: dir.appendingPathComponent("one"))
        _ = try TrainingRunTests.train(one)
        c.training.batchSize = 8
        let folder = dir.appendingPathComponent("two")
        let images = dir.appendingPathComponent("images")
        let ranks = try ThreadGroup.run(size: 2) { group -> (cached: Int, skipped: Int) in
            let run = try TrainingRun(c, folder: folder, group: group)
            if group.rank == 0 { run.trainer.afterStep = { if $0.position.step == 9 { try? FileManager.default.removeItem(at: images) } } }
            let outcome = try TrainingRunTests.train(run)
            return (run.trainer.imageFeatureCache!.count, outcome.skipped)
        }
        #expect(!FileManager.default.fileExists(atPath: images.path))
        #expect(ranks.allSatisfy { $0.cached == 96 && $0.skipped == 0 }, "\(ranks)")
        let (a, b) = (Self.losses(one.folder), Self.losses(RunFolder(folder)))
        #expect(a.count == 18 && b.count == 18)
        for (step, (x, y)) in zip(a, b).enumerated() {
            #expect(abs(x - y) <= 1e-6 * abs(x), "step \(step + 1): loss \(x) on one process, \(y) on two ranks")
        }
    }

    /// What cached features cannot serve is refused up front, naming the option.
    @Test func whatTheCacheCannotServeIsRefused() throws {
        let (dir, c) = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        func refusal(_ change: (inout RunConfiguration) throws -> Void) throws -> String {
            var changed = c
            try change(&changed)
            do {
                _ = try TrainingRun(changed, folder: dir.appendingPathComponent("refused"), overwrite: true)
            } catch let error as TrainingError {
                return "\(error)"
            }
            return "accepted"
        }
        #expect(try refusal { $0.training.lockImage = false } == "cached image features must be used with a locked image tower, got on")
        #expect(
            try refusal {
                $0.training.contrastive = ContrastiveOptions()
                $0.training.contrastive!.queueSize = 16
            } == "queue size must be 0 with cached image features, got 16")
        #expect(
            try refusal { $0.training.imageFeatureCache = ImageFeatureCacheSettings(memoryLimit: -1) }.hasPrefix("feature cache memory must be ≥ 0"))
        #expect(
            try refusal {
                let config = dir.appendingPathComponent("dropout.json")
                try String(contentsOf: URL(fileURLWithPath: $0.model.name!), encoding: .utf8)
                    .replacingOccurrences(of: "\"mlp_ratio\": 2.0", with: "\"mlp_ratio\": 2.0, \"patch_dropout\": 0.5")
                    .write(to: config, atomically: true, encoding: .utf8)
                $0.model.name = config.path
            } == "cached image features must be used without patch dropout (it changes the features every step), got on")
        #expect(try refusal { _ in } == "accepted")
    }
}
