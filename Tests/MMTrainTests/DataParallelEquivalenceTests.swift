import Foundation
import MMCLIP
import MMData
import MMDistributed
import MMTestSupport
import MMTrain
import Testing

extension Toy {
    /// Rank `rank` of `ranks`'s share of each global batch of a `Source`: rows r, r + R, r + 2R, …
    /// as `EpochOrder` deals them.
    final class ShardedSource: BatchSource {
        let global: Source
        let rank: Int, ranks: Int

        init(_ global: Source, rank: Int, of ranks: Int) {
            self.global = global
            self.rank = rank
            self.ranks = ranks
        }

        var batchesPerEpoch: Int { global.batchesPerEpoch }
        var cursor: Int { global.cursor }
        func start(epoch: Int, batch: Int, cursor: Int?) throws { try global.start(epoch: epoch, batch: batch, cursor: cursor) }
        func drainSkipped() -> [SkippedImage] { [] }

        func next() throws -> PairBatch? {
            guard let b = try global.next() else { return nil }
            let rows = Array(stride(from: rank, to: b.count, by: ranks))
            func pick(_ t: Tensor) -> Tensor {
                let width = t.count / t.shape[0], out = Tensor.zeros([rows.count] + t.shape.dropFirst())
                for (i, r) in rows.enumerated() { (out.data + i * width).update(from: t.data + r * width, count: width) }
                return out
            }
            let length = b.ids.shape[1]
            return PairBatch(
                images: pick(b.images),
                ids: IntTensor(shape: [rows.count, length], values: rows.flatMap { b.ids.values[($0 * length)..<($0 * length + length)] }),
                views: b.views.map(pick), labels: b.labels.map { l in rows.map { l[$0] } })
        }
    }
}

/// Every contrastive option on 2 in-process ranks (threads) × batch b takes the same 20 steps as
/// one process × 2b: the loss module scores each rank's rows against the gathered columns, the
/// queue receives every rank's momentum features in one process's order, multi-positive keys are
/// gathered, dropout masks follow the sample, and the stop decision is shared.
@Suite struct DataParallelEquivalenceTests {
    enum Case: String, CaseIterable, Sendable {
        case clip, siglip, accumulation, queue, multiPositive, multiPositiveLabels, queueMultiPositive, siglipMultiPositive
        case simclr, byol, simcse, everything
    }

    static func options(_ c: Case) -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = 6
        o.maxSteps = 20
        o.batchSize = 8
        o.warmup = 3
        o.learningRate = 1e-3
        var k = ContrastiveOptions()
        switch c {
        case .clip: break
        case .siglip: o.loss = .siglip
        case .accumulation: o.accumFreq = 2; o.batchSize = 4
        case .queue: k.queueSize = 12
        case .multiPositive: k.multiPositive = true
        case .multiPositiveLabels: k.multiPositive = true; k.usesLabels = true
        case .queueMultiPositive: k.queueSize = 12; k.multiPositive = true
        case .siglipMultiPositive: o.loss = .siglip; k.multiPositive = true
        case .simclr: k.imageSSL = .simclr
        case .byol: k.imageSSL = .byol
        case .simcse: k.textSSL = .simcse; k.textDropout = 0.1
        case .everything:
            (k.queueSize, k.multiPositive, k.usesLabels, k.imageSSL, k.textSSL, k.textDropout) = (12, true, true, .simclr, .simcse, 0.1)
            o.accumFreq = 2
            o.batchSize = 4
        }
        if k != ContrastiveOptions() { o.contrastive = k }
        return o
    }

    /// Trains `options` (batch per rank) on `ranks` threads; rank 0's step losses and final state.
    static func train(_ options: TrainingOptions, ranks: Int) throws -> (losses: [Double], state: [String: [Float]], position: TrainingPosition) {
        let config = options.loss == .siglip ? Toy.siglipConfig() : Toy.config
        let k = options.contrastive ?? ContrastiveOptions()
        return try ThreadGroup.run(size: ranks) { group in
            let run = try Toy.scratch()
            let t = Trainer(
                model: CLIPModel(config, seed: 5), options: options, run: run, preprocessing: Preprocessing(imageSize: 16),
                tokenizer: "toy", group: group)
            t.showsProgress = false
            if group.rank == 0 { try t.prepareRunFolder() }
            let global = Toy.Source(count: 64, batch: options.batchSize * ranks, views: k.imageSSL != nil, duplicates: true, labels: k.usesLabels)
            _ = try t.train(source: Toy.ShardedSource(global, rank: group.rank, of: ranks), validation: nil)
            let losses = run.readLog().compactMap { record -> Double? in
                if case .step(let s) = record { return s.loss }
                return nil
            }
            return (losses, t.stateForTesting().mapValues(\.scalars), t.position)
        }[0]
    }

    @Test(arguments: Case.allCases)
    func twoRanksOfHalfTheBatchTakeTheSameStepsAsOne(_ c: Case) throws {
        var options = Self.options(c)
        let half = options.batchSize
        options.batchSize = 2 * half
        let one = try Self.train(options, ranks: 1)
        options.batchSize = half
        let two = try Self.train(options, ranks: 2)
        try #require(one.losses.count == 20 && two.losses.count == 20, "\(one.losses.count) and \(two.losses.count) steps")
        var worst = 0.0
        for (step, (x, y)) in zip(one.losses, two.losses).enumerated() {
            worst = max(worst, abs(x - y) / abs(x))
            #expect(abs(x - y) <= 1e-6 * abs(x), "\(c) step \(step + 1): loss \(x) on one process, \(y) on two ranks")
        }
        print("\(c): worst relative loss difference over 20 steps \(worst)")
        #expect(one.position.step == two.position.step && one.position.epoch == two.position.epoch && one.position.batch == two.position.batch)
        #expect(Set(one.state.keys) == Set(two.state.keys))
        for (key, a) in one.state {
            let b = try #require(two.state[key])
            let d = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            // Round-off through 20 Adam steps; the attention key bias has a zero true gradient,
            // so Adam turns its round-off into steps of up to the learning rate.
            #expect(d <= (key.hasSuffix("in_proj_bias") ? 20 * options.learningRate : 2e-5), "\(c) \(key): max difference \(d)")
        }
    }

    /// A time budget spent on one rank stops every rank at the same step.
    @Test func theTimeBudgetStopsAllRanksTogether() throws {
        let steps = try ThreadGroup.run(size: 2) { group -> Int in
            var options = Self.options(.clip)
            options.batchSize = 4
            if group.rank == 1 { options.maxSeconds = 1e-9 }  // only rank 1 is out of time
            let run = try Toy.scratch()
            let t = Trainer(
                model: CLIPModel(Toy.config, seed: 5), options: options, run: run, preprocessing: Preprocessing(imageSize: 16),
                tokenizer: "toy", group: group)
            t.showsProgress = false
            if group.rank == 0 { try t.prepareRunFolder() }
            _ = try t.train(source: Toy.ShardedSource(Toy.Source(count: 48, batch: 8), rank: group.rank, of: 2), validation: nil)
            return t.position.step
        }
        #expect(steps == [1, 1])
    }

    /// A 2-rank run with a queue, momentum copies and SSL heads, stopped mid-epoch and resumed
    /// (rank 0 alone reads the checkpoint and sends its state to rank 1), ends bitwise where the
    /// uninterrupted run does, on both ranks.
    @Test func aStoppedTwoRankRunResumesExactly() throws {
        var options = Self.options(.everything)
        options.maxSteps = nil
        options.epochs = 2
        let run = try Toy.scratch()
        func ranks(_ folder: RunFolder, stopAt: Int?, resume: Bool) throws -> [[String: [Float]]] {
            try ThreadGroup.run(size: 2) { group in
                let t = Trainer(
                    model: CLIPModel(Toy.config, seed: 5), options: options, run: folder, preprocessing: Preprocessing(imageSize: 16),
                    tokenizer: "toy", group: group)
                t.showsProgress = false
                if group.rank == 0 { try resume ? t.resume() : t.prepareRunFolder() }
                if let stopAt, group.rank == 1 { t.afterStep = { if $0.position.step == stopAt { $0.requestStop() } } }
                let global = Toy.Source(count: 64, batch: options.batchSize * 2, views: true, duplicates: true, labels: true)
                let outcome = try t.train(source: Toy.ShardedSource(global, rank: group.rank, of: 2), validation: nil)
                #expect(outcome.interrupted == (stopAt != nil))
                return t.stateForTesting().mapValues(\.scalars)
            }
        }
        let straight = try ranks(try Toy.scratch(), stopAt: nil, resume: false)
        _ = try ranks(run, stopAt: 3, resume: false)
        let resumed = try ranks(run, stopAt: nil, resume: true)
        for rank in 0..<2 {
            #expect(straight[rank].keys.sorted() == resumed[rank].keys.sorted())
            for (key, a) in straight[rank] { #expect(a == resumed[rank][key], "rank \(rank): \(key) differs after resume") }
        }
        #expect(straight[0]["queue.image"] != nil)
    }
}
