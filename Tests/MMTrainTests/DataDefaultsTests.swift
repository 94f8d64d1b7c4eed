import Foundation
import MMCLIP
import MMTestSupport
import MMTrain
import Testing

/// The settings chosen from the data (issue 17) and patch dropout in the training step.
@Suite struct DataDefaultsTests {
    /// From 100,000 pairs on, every value is today's open_clip-like default.
    @Test(arguments: [100_000, 400_000, 10_000_000])
    func largeDataKeepsTodaysValues(pairs: Int) {
        let d = DataDefaults(pairs: pairs), today = TrainingOptions()
        #expect(d.model == "mm-tiny")
        #expect(d.batchSize == today.batchSize && d.epochs == today.epochs && d.weightDecay == today.weightDecay)
        #expect(abs(d.learningRate - today.learningRate) <= 1e-9)
        // Long runs: the warm-up is today's 100 steps.
        #expect(d.warmupSteps(totalSteps: d.epochs * pairs / d.batchSize) == today.warmup)
        // No held-out share and no early stopping.
        #expect(d.heldOutShare == nil && d.patience == nil && today.patience == nil)
    }

    /// Small data: the small model, batch 64, many epochs, a warm-up that is a share of the run.
    @Test func smallDataGetsMoreSmallerSteps() {
        let shapes = DataDefaults(pairs: 6_016)
        #expect(shapes.model == "mm-small-rn" && shapes.batchSize == 64)
        #expect(shapes.epochs == Int((Double(DataDefaults.smallDataSamples) / 6_016).rounded()))
        #expect(shapes.learningRate == DataDefaults.smallLearningRate)
        #expect(shapes.warmupSteps(totalSteps: 400) == 20)
        #expect(shapes.reason == "small data (6,016 pairs)")
        // Tiny data: epochs capped.
        #expect(DataDefaults(pairs: 300).epochs == DataDefaults.maxEpochs)
        // Early stopping on 10 % of the images, at most 2,000 pairs, none below 1,000 pairs.
        #expect(shapes.heldOutShare == 0.1 && shapes.patience == DataDefaults.earlyStoppingPatience)
        #expect(DataDefaults(pairs: 50_000).heldOutShare == 0.04 && DataDefaults(pairs: 99_999).patience == 5)
        #expect(DataDefaults(pairs: 999).heldOutShare == nil && DataDefaults(pairs: 999).patience == 5)
    }

    /// Validation is held out only without a validation manifest, and early stopping is on only
    /// when there is validation and the run's length is left to the data; what the user set stays.
    @Test func earlyStoppingNeedsValidation() {
        let all = Set(DataDefaults.Setting.allCases)
        var c = RunConfiguration(data: .init(pairs: "p.tsv"), fromData: all)
        _ = c.choose(DataDefaults(pairs: 6_016), ranks: 1)
        #expect(c.data.holdOut == 0.1 && c.training.patience == 5)
        c = RunConfiguration(data: .init(pairs: "p.tsv", val: "v.tsv"), fromData: all.subtracting([.holdOut]))
        let said = c.choose(DataDefaults(pairs: 6_016), ranks: 1)
        #expect(c.data.holdOut == nil && c.training.patience == 5)
        #expect(said.last == "early stopping after 5 epochs without a better validation loss")
        c = RunConfiguration(data: .init(pairs: "p.tsv"), fromData: all)
        _ = c.choose(DataDefaults(pairs: 500), ranks: 1)  // too small to hold out: no validation
        #expect(c.data.holdOut == nil && c.training.patience == nil)
        c = RunConfiguration(data: .init(pairs: "p.tsv"), fromData: all.subtracting([.holdOut, .patience]))
        _ = c.choose(DataDefaults(pairs: 6_016), ranks: 1)
        #expect(c.data.holdOut == nil && c.training.patience == nil)
        c = RunConfiguration(data: .init(pairs: "p.tsv"), fromData: all)
        _ = c.choose(DataDefaults(pairs: 200_000), ranks: 1)
        #expect(c.data.holdOut == nil && c.training.patience == nil)
        // A length given (epochs or steps) is kept as it is.
        c = RunConfiguration(data: .init(pairs: "p.tsv"), fromData: all.subtracting([.epochs]))
        _ = c.choose(DataDefaults(pairs: 6_016), ranks: 1)
        #expect(c.data.holdOut == nil && c.training.patience == nil)
        c = RunConfiguration(data: .init(pairs: "p.tsv"), fromData: all)
        c.training.maxSteps = 300
        _ = c.choose(DataDefaults(pairs: 6_016), ranks: 1)
        #expect(c.data.holdOut == nil && c.training.patience == nil)
    }

    /// Between 10,000 and 100,000 pairs every value moves monotonically from the small-data one
    /// to today's.
    @Test func valuesMoveMonotonicallyWithSize() {
        let sizes = [1_000, 10_000, 20_000, 30_000, 50_000, 70_000, 100_000, 200_000]
        let all = sizes.map { DataDefaults(pairs: $0) }
        for (a, b) in zip(all, all.dropFirst()) {
            #expect(a.batchSize <= b.batchSize && a.epochs >= b.epochs && a.learningRate >= b.learningRate)
        }
        #expect(all.map(\.model) == ["mm-small-rn", "mm-small-rn", "mm-small-rn", "mm-tiny", "mm-tiny", "mm-tiny", "mm-tiny", "mm-tiny"])
    }

    /// Only the settings left to the data change; the chosen ones are recorded and the set emptied
    /// (so a saved configuration resumes with its values); the batch is split over ranks.
    @Test func chooseSetsOnlyWhatWasLeft() throws {
        var c = RunConfiguration(data: .init(pairs: "p.tsv"), fromData: [.batchSize, .warmup, .model])
        c.training.epochs = 3
        let said = c.choose(DataDefaults(pairs: 6_400), ranks: 2)
        #expect(c.model.name == "mm-small-rn" && c.training.batchSize == 32 && c.training.epochs == 3)
        #expect(c.training.learningRate == TrainingOptions().learningRate)
        #expect(c.training.warmup == 15)  // 5 % of 3 epochs × 100 steps
        #expect(c.training.contrastive == nil)
        #expect(c.fromData.isEmpty && c.dataDefaults?.pairs == 6_400)
        #expect(said == ["model mm-small-rn", "batch 64", "warm-up 15 steps (5 %, at most 100)"])
        let saved = try JSONDecoder().decode(RunConfiguration.self, from: try JSONEncoder().encode(c))
        #expect(saved == c)
    }

    /// With patch dropout in the model config, two epochs straight and one epoch + resume + one
    /// end with bitwise equal weights, and accumulation recomputes each micro-batch with the
    /// patches its cached pass kept.
    @Test func patchDropoutResumesExactlyAndAccumulates() throws {
        let config = try Toy.config.updating(["vision_cfg.patch_dropout": 0.5])
        var options = TrainingOptions()
        options.epochs = 2
        options.batchSize = 4
        options.warmup = 2
        options.learningRate = 1e-3
        func trainer(_ run: RunFolder, _ o: TrainingOptions) -> Trainer {
            let t = Trainer(model: CLIPModel(config, seed: 5), options: o, run: run, preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
            t.showsProgress = false
            return t
        }
        let straight = trainer(try Toy.scratch(), options)
        try straight.prepareRunFolder()
        _ = try straight.train(source: Toy.Source(count: 12, batch: 4), validation: nil)
        var first = options
        first.epochs = 1
        let runURL = try Toy.scratch()
        let half = trainer(runURL, first)
        try half.prepareRunFolder()
        _ = try half.train(source: Toy.Source(count: 12, batch: 4), validation: nil)
        let resumed = trainer(runURL, options)
        try resumed.resume()
        _ = try resumed.train(source: Toy.Source(count: 12, batch: 4), validation: nil)
        #expect(resumed.position == straight.position)
        for ((key, a), (_, b)) in zip(straight.model.namedParameters(), resumed.model.namedParameters()) {
            #expect(a.scalars == b.scalars, "\(key) differs after resume")
        }
        // Patch dropout is on: the run differs from one without it.
        let plain = Trainer(
            model: CLIPModel(Toy.config, seed: 5), options: options, run: try Toy.scratch(),
            preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
        plain.showsProgress = false
        try plain.prepareRunFolder()
        _ = try plain.train(source: Toy.Source(count: 12, batch: 4), validation: nil)
        let plainWeights = Dictionary(uniqueKeysWithValues: plain.model.namedParameters().map { ($0.key, $0.tensor.scalars) })
        #expect(straight.model.namedParameters().contains { plainWeights[$0.key] != $0.tensor.scalars })

        // Accumulation: k micro-batches, each recomputed with the patches its cached pass kept,
        // give the gradient of the k·N problem in which micro-batch j keeps the patches of (step, j).
        let source = Toy.Source(count: 8, batch: 4)
        try source.start(epoch: 0, batch: 0, cursor: nil)
        let a = try #require(try source.next()), b = try #require(try source.next())
        var accumulated = options
        accumulated.accumFreq = 2
        let t = trainer(try Toy.scratch(), accumulated)
        let value = t.gradientsForTesting([a, b])
        let got = Dictionary(uniqueKeysWithValues: t.model.namedParameters().map { ($0.key, $0.tensor.grad!.copy()) })
        let reference = trainer(try Toy.scratch(), accumulated)
        let expected = reference.oneTapeGradientsForTesting([a, b])
        #expect(abs(value - expected) <= 1e-6 * abs(expected))
        for (key, p) in reference.model.namedParameters() { expectClose("patch dropout ∂\(key)", got[key], p.grad!, atol: 2e-5, rtol: 1e-4) }
    }
}
