import Foundation
import MMCLIP
import MMData
import MMTestSupport
import MMTrain
import Testing

/// The contrastive family against the reference (Fixtures/contrastive.safetensors, written by
/// tools/make_contrastive_fixtures.py from open_clip's ClipLoss/SigLipLoss and PyTorch versions of
/// SLIP's, ALBEF's, BYOL's and MoCo's code). Tolerance: 1e-5 + 1e-4·|ref|, float32 round-off.
@Suite struct ContrastiveGoldenTests {
    let fixture: Safetensors
    init() throws { fixture = try loadFixture("contrastive.safetensors", bundle: .module) }

    func inputs(_ name: String) -> [String: Tensor] {
        let prefix = "\(name).in."
        return Dictionary(
            uniqueKeysWithValues: fixture.tensors.filter { $0.key.hasPrefix(prefix) }.map {
                (String($0.key.dropFirst(prefix.count)), $0.value.copy(requiresGrad: true))
            })
    }

    func keys(_ name: String, _ caption: String = "caption", _ label: String = "label") -> PositiveKeys? {
        guard let c = fixture.ids["\(name).ids.\(caption)"] else { return nil }
        return PositiveKeys(caption: c.values.map(Int64.init), label: fixture.ids["\(name).ids.\(label)"]?.values.map(Int64.init))
    }

    func queued(_ name: String) -> ContrastiveLoss.Queued {
        ContrastiveLoss.Queued(
            image: fixture.tensors["\(name).const.queue_image"]!, text: fixture.tensors["\(name).const.queue_text"]!,
            keys: keys(name, "queue_caption", "queue_label"))
    }

    /// Our loss of a case from its inputs.
    func loss(_ name: String, _ x: [String: Tensor]) -> Tensor {
        let t = Attributes(fixture, name).float("temperature")
        switch name {
        case "infonce": return ContrastiveLoss.infoNCE(image: x["image"]!, text: x["text"]!, logitScale: x["logit_scale"]!)
        case "infonce_queue":
            return ContrastiveLoss.infoNCE(image: x["image"]!, text: x["text"]!, logitScale: x["logit_scale"]!, queued: queued(name))
        case "infonce_multi", "infonce_multi_labels", "infonce_multi_unique":
            return ContrastiveLoss.infoNCE(image: x["image"]!, text: x["text"]!, logitScale: x["logit_scale"]!, positives: keys(name))
        case "infonce_queue_multi":
            return ContrastiveLoss.infoNCE(
                image: x["image"]!, text: x["text"]!, logitScale: x["logit_scale"]!,
                queued: queued(name), positives: keys(name))
        case "ntxent", "ntxent_multi": return ContrastiveLoss.ntXent(x["a"]!, x["b"]!, temperature: t, positives: keys(name))
        case "sigmoid", "sigmoid_multi":
            return ContrastiveLoss.sigmoid(
                image: x["image"]!, text: x["text"]!, logitScale: x["logit_scale"]!,
                logitBias: x["logit_bias"]!, positives: keys(name))
        case "byol": return ContrastiveLoss.byol(prediction: x["prediction"]!, target: x["target"]!)
        default: preconditionFailure("unknown case \(name)")
        }
    }

    static let lossCases = [
        "infonce", "infonce_queue", "infonce_multi", "infonce_multi_labels", "infonce_multi_unique",
        "infonce_queue_multi", "ntxent", "ntxent_multi", "sigmoid", "sigmoid_multi", "byol"
    ]

    @Test(arguments: lossCases)
    func lossAndGradients(_ name: String) throws {
        let x = inputs(name)
        try #require(!x.isEmpty, "case \(name) missing from the fixture")
        let tape = Tape()
        let l = tape.record { loss(name, x) }
        tape.backward(l)
        expectClose("\(name) value", l, fixture.tensors["\(name).out"], atol: 1e-5, rtol: 1e-5)
        for (k, t) in x {
            expectClose("\(name) ∂\(k)", t.grad ?? .zeros(t.shape), fixture.tensors["\(name).grad.\(k)"], atol: 1e-5, rtol: 1e-4)
        }
    }

    /// θk ← m θk + (1 − m) θq three times, against the in-place update of MoCo's code.
    @Test func momentumUpdate() throws {
        let m = Attributes(fixture, "momentum").float("momentum")
        let target = ["weight", "bias"].map { fixture.tensors["momentum.in.target.\($0)"]!.copy() }
        for step in 0..<3 {
            for (t, k) in zip(target, ["weight", "bias"]) {
                t.moveAverage(toward: fixture.tensors["momentum.in.online\(step).\(k)"]!, momentum: m)
            }
        }
        expectClose("momentum weight", target[0], fixture.tensors["momentum.out.weight"], atol: 1e-6, rtol: 1e-6)
        expectClose("momentum bias", target[1], fixture.tensors["momentum.out.bias"], atol: 1e-6, rtol: 1e-6)
    }

    /// Enqueue order, wrap-around and a batch larger than the queue, row for row and key for key.
    @Test func queueBookkeeping() throws {
        let attrs = Attributes(fixture, "queue")
        let first = try #require(fixture.tensors["queue.in.batch0"])
        let queue = FeatureQueue(capacity: attrs.int("capacity"), dimension: first.shape[1])
        for i in 0..<attrs.int("batches") {
            let batch = fixture.tensors["queue.in.batch\(i)"]!
            let keys = PositiveKeys(caption: fixture.ids["queue.ids.keys\(i)"]!.values.map(Int64.init))
            queue.enqueue(image: batch, text: batch.scaled(by: 2), keys: keys)
            expectClose("queue after batch \(i)", queue.image, fixture.tensors["queue.out.image\(i)"], atol: 0, rtol: 0)
            expectClose("text queue after batch \(i)", queue.text, fixture.tensors["queue.out.image\(i)"]!.scaled(by: 2), atol: 0, rtol: 0)
            #expect(queue.captionKeys == fixture.ids["queue.ids.out_keys\(i)"]!.values.map(Int64.init), "keys after batch \(i)")
            let after = try #require(try JSONSerialization.jsonObject(with: Data(fixture.metadata["queue.after\(i)"]!.utf8)) as? [String: Int])
            #expect(queue.pointer == after["pointer"] && queue.count == after["count"], "pointer/count after batch \(i)")
        }
    }
}

@Suite struct ContrastiveGradientTests {
    @Test func reluAndDropout() {
        var g = SeededGenerator(seed: 4)
        // Kept a finite-difference step away from ReLU's kink at 0.
        let x = Tensor(shape: [3, 10], values: g.tensor([3, 10]).scalars.map { $0 + ($0 < 0 ? -0.1 : 0.1) }, requiresGrad: true)
        checkGradients("relu", [x]) { $0[0].relu() }
        checkGradients("dropout", [x]) { $0[0].dropout(rate: 0.3, seed: 77) }
    }

    @Test func lossesByFiniteDifferences() {
        var g = SeededGenerator(seed: 5)
        let a = g.tensor([5, 6]), b = g.tensor([5, 6]), scale = Tensor.scalar(1.5, requiresGrad: true)
        let keys = PositiveKeys(caption: [1, 2, 1, 3, 2], label: [0, 0, 1, 1, 2])
        let queueImage = g.tensor([4, 6], requiresGrad: false).l2Normalized(), queueText = g.tensor([4, 6], requiresGrad: false).l2Normalized()
        let queued = ContrastiveLoss.Queued(image: queueImage, text: queueText, keys: PositiveKeys(caption: [2, 9, 9, 1], label: [2, -1, 0, 5]))
        checkGradients("infoNCE queue + multi-positive", [a, b, scale]) {
            ContrastiveLoss.infoNCE(image: $0[0].l2Normalized(), text: $0[1].l2Normalized(), logitScale: $0[2], queued: queued, positives: keys)
        }
        checkGradients("NT-Xent multi-positive", [a, b]) { ContrastiveLoss.ntXent($0[0], $0[1], temperature: 0.5, positives: keys) }
        checkGradients("BYOL", [a]) { ContrastiveLoss.byol(prediction: $0[0], target: b) }
    }

    /// The mask is a function of (seed, index): same seed same mask, the rate is kept, survivors are scaled.
    @Test func dropoutMask() {
        let ones = Tensor.filled([200, 50], with: 1)
        let a = ones.dropout(rate: 0.25, seed: 3), b = ones.dropout(rate: 0.25, seed: 3), c = ones.dropout(rate: 0.25, seed: 4)
        #expect(a.scalars == b.scalars)
        #expect(a.scalars != c.scalars)
        let dropped = a.scalars.filter { $0 == 0 }.count
        #expect(abs(Double(dropped) / 10_000 - 0.25) < 0.02, "dropped \(dropped) of 10,000")
        #expect(a.scalars.allSatisfy { $0 == 0 || abs($0 - 1 / 0.75) < 1e-6 })

        // Per sample: the rate is kept, and a sample's mask is the same wherever its row sits
        // and however long the rows are (the first 50 of a sample's elements).
        let bySample = ones.dropout(rate: 0.25, seed: 3, samples: Array(0..<200))
        let droppedBySample = bySample.scalars.filter { $0 == 0 }.count
        #expect(abs(Double(droppedBySample) / 10_000 - 0.25) < 0.02, "dropped \(droppedBySample) of 10,000")
        let moved = Tensor.filled([2, 80], with: 1).dropout(rate: 0.25, seed: 3, samples: [7, 1])
        #expect(Array(moved.scalars[0..<50]) == Array(bySample.scalars[350..<400]))
        #expect(Array(moved.scalars[80..<130]) == Array(bySample.scalars[50..<100]))
        // Another seed draws an independent mask: they agree on 0.75² + 0.25² of the elements.
        let other = ones.dropout(rate: 0.25, seed: 4, samples: Array(0..<200))
        let agree = zip(bySample.scalars, other.scalars).filter { $0 == $1 }.count
        #expect(abs(Double(agree) / 10_000 - 0.625) < 0.02, "masks of two seeds agree on \(agree) of 10,000")
    }

    /// Without duplicates, multi-positive targets are the plain one-hot ones.
    @Test func multiPositiveWithoutDuplicatesIsPlain() {
        var g = SeededGenerator(seed: 6)
        let i = g.tensor([4, 8], requiresGrad: false).l2Normalized(), t = g.tensor([4, 8], requiresGrad: false).l2Normalized()
        let s = Tensor.scalar(2)
        let plain = ContrastiveLoss.infoNCE(image: i, text: t, logitScale: s).item()
        let multi = ContrastiveLoss.infoNCE(image: i, text: t, logitScale: s, positives: PositiveKeys(caption: [5, 6, 7, 8])).item()
        #expect(abs(plain - multi) < 1e-5)
        #expect(
            abs(
                ContrastiveLoss.ntXent(i, t, temperature: 0.2).item()
                    - ContrastiveLoss.ntXent(i, t, temperature: 0.2, positives: .unique(count: 4)).item()) < 1e-5)
    }
}

@Suite struct ContrastiveTrainerTests {
    static func options(_ configure: (inout ContrastiveOptions) -> Void) -> TrainingOptions {
        var o = TrainingOptions()
        o.batchSize = 4
        o.warmup = 2
        o.learningRate = 1e-3
        var c = ContrastiveOptions()
        configure(&c)
        o.contrastive = c
        return o
    }

    /// With a (filled) queue and multi-positive targets, k micro-batches still give the gradient
    /// of one batch of k·N.
    @Test func accumulationWithQueueAndMultiPositive() throws {
        let source = Toy.Source(count: 8, batch: 4, duplicates: true)
        try source.start(epoch: 0, batch: 0, cursor: nil)
        let a = try #require(try source.next()), b = try #require(try source.next())
        let big = PairBatch(
            images: .concatenate([a.images, b.images], axis: 0),
            ids: IntTensor(shape: [8, 8], values: a.ids.values + b.ids.values))
        let options = Self.options {
            $0.queueSize = 6; $0.multiPositive = true
        }
        func gradients(_ micro: [PairBatch]) throws -> (Float, [String: Tensor]) {
            let model = CLIPModel(Toy.config, seed: 1)
            let trainer = Trainer(
                model: model, options: options, run: try Toy.scratch(), preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
            trainer.afterStepForTesting([b, a])  // fills the queue (6 of these 8 rows, so some duplicates)
            let value = trainer.gradientsForTesting(micro)
            return (value, Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.key, $0.tensor.grad!) }))
        }
        let (accumulatedLoss, accumulated) = try gradients([a, b])
        let (bigLoss, reference) = try gradients([big])
        #expect(abs(accumulatedLoss - bigLoss) <= 1e-5 * abs(bigLoss))
        for (key, g) in reference { expectClose("∂\(key)", accumulated[key], g, atol: 2e-5, rtol: 1e-4) }
    }

    /// Two epochs straight, and one epoch + resume + one epoch, end with bitwise equal weights,
    /// momentum copies, heads and queue, for every option at once (SimCLR and BYOL in turn).
    @Test(arguments: [ContrastiveOptions.ImageSSL.byol, .simclr])
    func resumeContinuesExactly(imageSSL: ContrastiveOptions.ImageSSL) throws {
        var options = Self.options {
            $0.queueSize = 6
            $0.imageSSL = imageSSL
            $0.textSSL = .simcse
            $0.textDropout = 0.1
            $0.multiPositive = true
        }
        options.epochs = 2
        options.accumFreq = 2
        options.batchSize = 2
        func trainer(_ run: RunFolder, _ o: TrainingOptions) -> Trainer {
            let t = Trainer(
                model: CLIPModel(Toy.config, seed: 5), options: o, run: run, preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
            t.showsProgress = false
            return t
        }
        let straight = trainer(try Toy.scratch(), options)
        try straight.prepareRunFolder()
        _ = try straight.train(source: Toy.Source(count: 12, batch: 2, views: true, duplicates: true), validation: nil)

        let runURL = try Toy.scratch()
        var first = options
        first.epochs = 1
        let half = trainer(runURL, first)
        try half.prepareRunFolder()
        _ = try half.train(source: Toy.Source(count: 12, batch: 2, views: true, duplicates: true), validation: nil)
        // The epoch checkpoint is a plain model (open_clip loads strictly); the extras live in latest.
        _ = try CLIPModel.load(from: runURL.epochCheckpoint(1))
        let latest = try Safetensors(contentsOf: runURL.latest)
        #expect(
            latest.tensors.keys.contains { $0.hasPrefix("momentum.") } && latest.tensors["queue.image"] != nil
                && latest.tensors.keys.contains { $0.hasPrefix("ssl.projection.") }
                && latest.tensors.keys.contains { $0.hasPrefix("optimizer.m.ssl.") })

        let resumed = trainer(runURL, options)
        try resumed.resume()
        _ = try resumed.train(source: Toy.Source(count: 12, batch: 2, views: true, duplicates: true), validation: nil)
        #expect(resumed.position == straight.position)
        let a = straight.stateForTesting(), b = resumed.stateForTesting()
        #expect(a.keys.sorted() == b.keys.sorted())
        for (key, t) in a { #expect(t.scalars == b[key]?.scalars, "\(key) differs after resume") }
        #expect(a.keys.contains("queue.image") && a.keys.contains { $0.hasPrefix("momentum.") })
    }

    /// --max-minutes: the run stops after the step that used up the budget, then validates and
    /// writes its checkpoints as at the end of an epoch — but keeps its true position (one step
    /// into epoch 1), so that a resume continues the epoch instead of skipping the rest of it.
    @Test func timeBudgetStopsAndEvaluates() throws {
        var options = TrainingOptions()
        options.epochs = 3
        options.batchSize = 4
        options.maxSeconds = 1e-9
        let run = try Toy.scratch()
        let t = Trainer(
            model: CLIPModel(Toy.config, seed: 5), options: options, run: run, preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
        t.showsProgress = false
        try t.prepareRunFolder()
        _ = try t.train(source: Toy.Source(count: 12, batch: 4), validation: Toy.Source(count: 8, batch: 4))
        #expect(t.position.step == 1 && t.position.epoch == 0 && t.position.batch == 1)
        let log = try String(contentsOf: run.url.appendingPathComponent("log.jsonl"), encoding: .utf8)
        #expect(log.contains("\"val_loss\"") && log.contains("train_seconds") && log.contains("\"partial\":true"))
        #expect(FileManager.default.fileExists(atPath: run.epochCheckpoint(1).path))
        // The saved position is the true one.
        var longer = options
        longer.maxSeconds = nil
        let resumed = Trainer(
            model: CLIPModel(Toy.config, seed: 5), options: longer, run: run, preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
        try resumed.resume()
        #expect(resumed.position == t.position)
    }

    /// A latest checkpoint without the options' state is a clear error, not a crash.
    @Test func resumeWithoutQueueStateFails() throws {
        var plain = TrainingOptions()
        plain.epochs = 1
        plain.batchSize = 4
        let run = try Toy.scratch()
        let t = Trainer(
            model: CLIPModel(Toy.config, seed: 5), options: plain, run: run, preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
        t.showsProgress = false
        try t.prepareRunFolder()
        _ = try t.train(source: Toy.Source(count: 8, batch: 4), validation: nil)
        var queued = plain
        queued.contrastive = ContrastiveOptions()
        queued.contrastive!.queueSize = 4
        let other = Trainer(
            model: CLIPModel(Toy.config, seed: 5), options: queued, run: run, preprocessing: Preprocessing(imageSize: 16), tokenizer: "toy")
        #expect(throws: TrainingError.self) { try other.resume() }
    }
}
