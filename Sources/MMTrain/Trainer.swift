import Foundation
import MMCLIP
import MMData
import MMDistributed
import MMFoundation

/// How a `train` call ended.
public struct TrainingOutcome: Sendable, Equatable {
    /// Stopped on a request (SIGINT/SIGTERM) after writing `latest`.
    public var interrupted: Bool
    /// Images the loader skipped (on this rank).
    public var skipped: Int
}

/// The zero-shot check run after each epoch: top-1 and top-5 accuracy of a model, or nil when it
/// cannot be measured (e.g. no readable image).
public typealias ZeroShotEvaluation = (CLIPModel) -> (top1: Double, top5: Double)?

/// The contrastive training loop: batches → both towers → loss → AdamW, with open_clip's
/// gradient accumulation, LiT-style image locking, validation, logging and resumable,
/// atomically written checkpoints. A run is a sequence of two phases: `step` (one optimizer
/// step over some micro-batches) and `endEpoch` (checkpoints, validation, zero-shot, log);
/// `train` drives them from a `BatchSource`. `TrainingRun` builds one from a `RunConfiguration`.
public final class Trainer {
    public let model: CLIPModel
    public let options: TrainingOptions
    public let run: RunFolder
    public private(set) var position = TrainingPosition()
    /// Whether to show the progress bar and per-epoch summary on standard error.
    public var showsProgress = true
    let optimizer: AdamW
    /// The loss and the modules and state of the contrastive options.
    let objective: Objective
    /// What the optimizer updates: the model and the objective's heads.
    let trainable: TrainableModules
    /// Written into checkpoints so that they carry their preprocessing and tokenizer.
    let preprocessing: Preprocessing
    let tokenizer: String
    private var trainLosses: [(step: Int, loss: Double)] = []
    private var validationLosses: [(step: Int, loss: Double)] = []
    /// Set when this process is one rank of a data-parallel job.
    let parallel: DataParallel?
    /// Whether this process writes logs, checkpoints and progress (rank 0 of a job).
    public var isLeader: Bool { parallel?.isLeader ?? true }
    /// Set by `step` when a stop was requested on any rank (all ranks agree on it).
    public private(set) var stopRequested = false
    /// Set by `step` when the time budget is spent on any rank (all ranks agree on it).
    public private(set) var outOfTime = false
    /// Seconds spent loading data and stepping (the time budget's clock).
    public private(set) var trainSeconds = 0.0
    /// Images skipped by the loader so far (on this rank).
    public private(set) var skipped = 0
    /// The epoch checkpoint written last (by this process).
    public private(set) var lastEpochCheckpoint: URL?
    /// The epoch checkpoint of the current position: the last one written, or on a resumed run
    /// with nothing left to do, the one of the epoch it ended in.
    public var epochCheckpoint: URL {
        lastEpochCheckpoint ?? run.epochCheckpoint(position.batch > 0 ? position.epoch + 1 : position.epoch)
    }
    /// Where the locked image tower's features are kept once computed (`TrainingOptions.imageFeatureCache`):
    /// batches then carry their sample indices, and images only for samples not cached yet.
    public var imageFeatureCache: ImageFeatureCache?
    /// Called after each step, once it is logged (e.g. to report progress, or to `requestStop`).
    public var afterStep: ((Trainer) -> Void)?
    private let stopLock = NSLock()
    private var stopAsked = false

    /// Asks the run to stop after its next step and write `latest`, as SIGINT does (from any thread).
    public func requestStop() { stopLock.withLock { stopAsked = true } }

    /// With `group`, this trainer is one rank of a data-parallel job: its batches are its shard
    /// of each global batch, and the loss and gradients are those of the global batch.
    public init(
        model: CLIPModel, options: TrainingOptions, run: RunFolder, preprocessing: Preprocessing, tokenizer: String,
        group: ProcessGroup? = nil
    ) {
        precondition(options.loss == .clip || model.logitBias != nil, "the sigmoid loss needs a model with logit_bias")
        self.model = model
        self.options = options
        self.run = run
        self.preprocessing = preprocessing
        self.tokenizer = tokenizer
        parallel = group.flatMap { $0.size > 1 ? DataParallel($0) : nil }
        if options.lockImage { model.visual.setRequiresGrad(false) }
        objective = Objective(model: model, options: options, parallel: parallel)
        trainable = TrainableModules(model: model, heads: objective.heads)
        optimizer = AdamW(trainable, weightDecay: options.weightDecay, beta1: options.beta1, beta2: options.beta2, eps: options.eps)
    }

    // MARK: - One optimizer step

    /// Accumulates into the parameters' `grad` the gradient of the objective over all `micro`
    /// batches together, and returns its value. With one micro-batch this is plain backprop;
    /// with k it is open_clip's accumulation: features of all k are computed without a tape,
    /// then each micro-batch is recomputed with one and its rows replaced in the full
    /// k·N × k·N problem, so the gradient is the big batch's at one micro-batch's memory.
    /// Self-supervised terms (per micro-batch) are averaged over the k micro-batches.
    func accumulateGradients(_ micro: [PairBatch]) -> Float {
        let step = position.step, k = micro.count
        let keys = objective.keys(micro)
        if k == 1 {
            let tape = Tape()
            let l = tape.record { () -> Tensor in
                let f = objective.encode(micro[0], step: step, micro: 0)
                let l = objective.contrastive(image: f.image, text: f.text, keys: keys, detachTemperature: false)
                return objective.selfSupervised(micro[0], f, keys: keys, step: step, micro: 0).map { l + $0 } ?? l
            }
            tape.backward(l)
            return l.item()
        }
        let cached = withoutGradients { micro.enumerated().map { objective.encode($1, step: step, micro: $0) } }
        var contrastiveValue: Float = 0, selfSupervisedValue: Float = 0
        var offset = 0
        for (j, batch) in micro.enumerated() {
            let tape = Tape()
            let l = tape.record { () -> Tensor in
                var images = cached.map(\.image), texts = cached.map(\.text)
                let f = objective.encode(batch, step: step, micro: j)
                images[j] = f.image
                texts[j] = f.text
                // logit_scale (and bias) enter the big-batch loss once: only the first pass carries
                // their gradient. (open_clip lets every pass add it: k times the true value.)
                let c = objective.contrastive(
                    image: .concatenate(images, axis: 0), text: .concatenate(texts, axis: 0),
                    keys: keys, detachTemperature: j > 0)
                contrastiveValue = c.item()
                let own = keys.map {
                    PositiveKeys(
                        caption: Array($0.caption[offset..<(offset + batch.count)]),
                        label: $0.label.map { Array($0[offset..<(offset + batch.count)]) })
                }
                guard let s = objective.selfSupervised(batch, f, keys: own, step: step, micro: j) else { return c }
                selfSupervisedValue += s.item() / Float(k)
                return c + s.scaled(by: 1 / Float(k))
            }
            tape.backward(l)
            offset += batch.count
        }
        return contrastiveValue + selfSupervisedValue
    }

    /// One optimizer step over `micro` batches; returns the loss before the update (over the
    /// global batch on several ranks). `started` (when the step's data was asked for) counts the
    /// step against the time budget; whether a stop was requested or the budget is spent is then
    /// decided for all ranks together (`stopRequested`, `outOfTime`).
    @discardableResult
    public func step(_ micro: [PairBatch], started: Date? = nil) throws -> Float {
        let micro = try imageFeatureCache.map { cache in try micro.map { try withImageFeatures($0, from: cache) } } ?? micro
        optimizer.zeroGradients()
        var value = accumulateGradients(micro)
        let spent = trainSeconds + (started.map { Date().timeIntervalSince($0) } ?? 0)
        stopRequested = Interruption.requested || stopLock.withLock { stopAsked }
        outOfTime = options.maxSeconds.map { spent >= $0 } ?? false
        if let parallel {
            // One round carries the gradients, the ranks' losses and their stop decisions.
            let sums = try parallel.averageGradients(
                optimizer.groups.flatMap(\.parameters),
                scalars: [value, stopRequested ? 1 : 0, outOfTime ? 1 : 0])
            value = sums[0] / Float(parallel.size)
            stopRequested = sums[1] > 0
            outOfTime = sums[2] > 0
        }
        if let clip = options.gradClip { clipGradientNorm(optimizer.groups.flatMap(\.parameters), maxNorm: clip) }
        optimizer.update(lr: learningRate(at: position.step))
        model.clampLogitScale()
        objective.afterStep(micro)
        try parallel?.checkFailure()
        position.step += 1
        return value
    }

    /// `b` with its image features from `cache`. When some of its samples are not cached yet, the
    /// tower runs on the whole batch and their rows are stored: a row's value depends on how many
    /// rows the tower sees (BLAS blocking), so a feature is bitwise the uncached path's whatever
    /// else its batch held. On several ranks every rank stores the global batch's rows, so the
    /// ranks' caches stay equal (and agree on when they are complete) and fill in one epoch.
    func withImageFeatures(_ b: PairBatch, from cache: ImageFeatureCache) throws -> PairBatch {
        let samples = b.indices
        let share = parallel != nil && !cache.isComplete  // the same on every rank: their caches are equal here
        if !samples.allSatisfy(cache.contains) {
            try cache.store(withoutGradients { model.encodeImage(b.images, normalize: false) }, samples: samples)
        }
        if share, let parallel {
            let features = withoutGradients { parallel.gathered(cache.features(samples)) }
            let gathered = parallel.gatheredValues(samples)
            try parallel.checkFailure()
            try cache.store(features, samples: gathered)
        }
        var out = b
        out.imageFeatures = cache.features(samples)
        return out
    }

    func learningRate(at step: Int) -> Float {
        LearningRateSchedule(
            base: options.learningRate, warmup: options.warmup, total: totalSteps,
            shape: options.schedule
        ).rate(at: step)
    }

    /// Optimizer steps the whole run takes (sets the cosine schedule's length).
    public private(set) var totalSteps = 1

    // MARK: - The loop

    /// Steps per epoch of `source`; throws when it gives less than one step.
    func stepsPerEpoch(_ source: BatchSource) throws -> Int {
        let steps = source.batchesPerEpoch / options.accumFreq
        guard steps > 0 else {
            throw TrainingError.tooFewBatches(batches: source.batchesPerEpoch, batchSize: options.batchSize, accumFreq: options.accumFreq)
        }
        return steps
    }

    /// Whether the run has nothing left to do.
    public var isFinished: Bool {
        position.epoch >= options.epochs || position.step >= totalSteps || outOfTime || position.stoppedEarly == true
    }

    /// Trains from the current position to the end, validating and checkpointing each epoch.
    /// Returns normally at the end or after writing a checkpoint on SIGINT/SIGTERM
    /// (`interrupted` is then true).
    public func train(source: BatchSource, validation: BatchSource?, evaluate: ZeroShotEvaluation? = nil) throws -> TrainingOutcome {
        let stepsPerEpoch = try stepsPerEpoch(source)
        totalSteps = min(options.epochs * stepsPerEpoch, options.maxSteps ?? .max)
        try Interruption.install(
            notice: parallel.map {
                "mm rank \($0.rank): stopping (Ctrl-C, or mpirun ending the job because a rank or host failed); \($0.isLeader ? "" : "rank 0's ")last checkpoint \(run.latest.path) stays intact"
            })
        if let parallel { try synchronize(parallel) }
        while !isFinished {
            if try trainEpoch(source, stepsPerEpoch: stepsPerEpoch) == .interrupted { return TrainingOutcome(interrupted: true, skipped: skipped) }
            // Stopped by the step limit or the time budget with batches left: a partial epoch.
            let partial = position.batch / options.accumFreq < stepsPerEpoch && (outOfTime || position.step >= totalSteps)
            try endEpoch(validation: validation, evaluate: evaluate, partial: partial)
        }
        return TrainingOutcome(interrupted: false, skipped: skipped)
    }

    enum EpochEnd { case completed, interrupted }

    /// The steps of the current epoch from the current position, logging each; stops early at
    /// the step limit, when out of time, or on a stop request (then writes `latest`).
    func trainEpoch(_ source: BatchSource, stepsPerEpoch: Int) throws -> EpochEnd {
        let epoch = position.epoch
        try source.start(epoch: epoch, batch: position.batch, cursor: position.cursor)
        let progress = Progress(
            label: "epoch \(epoch + 1)/\(options.epochs)", total: stepsPerEpoch,
            initial: position.batch / options.accumFreq, enabled: showsProgress && isLeader)
        var window: (samples: Int, start: Date) = (0, Date())
        while position.batch / options.accumFreq < stepsPerEpoch && position.step < totalSteps && !outOfTime {
            let started = Date()  // the time budget counts waiting for data too
            var micro: [PairBatch] = []
            while micro.count < options.accumFreq, let b = try Interruption.whileWaiting({ try source.next() }) { micro.append(b) }
            let dataWait = Date().timeIntervalSince(started)  // blocked on the loader
            guard micro.count == options.accumFreq else { break }
            let lr = learningRate(at: position.step)
            let (stepStart, communicationBefore) = (Date(), parallel?.communicationSeconds ?? 0)
            let value = try step(micro, started: started)
            trainSeconds += Date().timeIntervalSince(started)
            guard value.isFinite else {
                // The update already used the non-finite gradient: keep `latest` as it was.
                throw TrainingError.diverged(
                    loss: value, step: position.step,
                    lastGood: FileManager.default.fileExists(atPath: run.latest.path) ? run.latest.path : nil)
            }
            position.batch += micro.count
            position.cursor = source.cursor
            window.samples += micro.reduce(0) { $0 + $1.count }
            let rate = Double(window.samples) / max(Date().timeIntervalSince(window.start), 1e-9) * Double(parallel?.size ?? 1)
            trainLosses.append((position.step, Double(value)))
            for s in source.drainSkipped() {
                skipped += 1
                if isLeader {
                    run.append(.skipped(.init(path: s.path, reason: s.detail, step: position.step)))
                } else {
                    FileHandle.standardError.write(Data("mm rank \(parallel!.rank): skipped \(s.path): \(s.detail)\n".utf8))
                }
            }
            if isLeader {
                run.append(
                    .step(
                        .init(
                            step: position.step, epoch: epoch, loss: Double(value), lr: Double(lr),
                            logitScale: Double(Foundation.exp(model.logitScale.item())), samplesPerSecond: rate,
                            communicationShare: parallel.map {
                                ($0.communicationSeconds - communicationBefore) / Date().timeIntervalSince(stepStart)
                            }, dataWaitSeconds: dataWait, stepSeconds: Date().timeIntervalSince(started))))
            }
            progress.update(
                position.batch / options.accumFreq,
                [
                    ("loss", String(format: "%.4f", value)), ("lr", String(format: "%.2e", lr)),
                    ("samples/s", String(format: "%.1f", rate)), ("skipped", "\(skipped)")
                ])
            afterStep?(self)
            if stopRequested {
                progress.finish()
                try saveLatest()
                progress.message("interrupted: checkpoint written to \(run.latest.path)")
                return .interrupted
            }
        }
        progress.finish()
        return .completed
    }

    /// The end of an epoch: the epoch checkpoint, validation and zero-shot results in the log,
    /// the loss curve, then `latest` — in that order, so that a kill in between leaves `latest`
    /// at the epoch's start and a resume redoes it, never a `latest` past an epoch checkpoint
    /// that was not written. A `partial` epoch (stopped by the step limit or the time budget)
    /// is evaluated and checkpointed the same way (`epoch_N` for the epoch N it stopped in), but
    /// its position stays where it stopped, so a resume continues it. Collective on several ranks.
    @discardableResult
    public func endEpoch(validation: BatchSource?, evaluate: ZeroShotEvaluation? = nil, partial: Bool = false) throws -> LogRecord.Epoch? {
        let number = position.epoch + 1
        if !partial {
            position.epoch += 1
            position.batch = 0
            position.cursor = 0
        }
        lastEpochCheckpoint = run.epochCheckpoint(number)
        var record: LogRecord.Epoch?
        if isLeader {
            try model.save(to: run.epochCheckpoint(number), preprocessing: preprocessing, tokenizer: tokenizer)
            var r = LogRecord.Epoch(epoch: number, step: position.step, trainSeconds: trainSeconds)
            if partial { r.partial = true }
            if let validation {
                let v = try validate(validation)
                validationLosses.append((position.step, v.loss))
                r.valLoss = v.loss
                if v.loss < position.bestValLoss ?? .infinity {
                    (position.bestEpoch, position.bestValLoss) = (number, v.loss)
                    try run.keepBest(run.epochCheckpoint(number))
                    r.best = true
                }
                // Patience counts whole epochs since the best one; the last epoch ends the run anyway.
                let remaining = number < options.epochs
                if let patience = options.patience, !partial, remaining, let best = position.bestEpoch, number - best >= patience {
                    position.stoppedEarly = true
                    r.stoppedEarly = true
                }
                (r.imageToTextR1, r.imageToTextR5, r.imageToTextR10) = (
                    v.metrics.imageToText.recall[1], v.metrics.imageToText.recall[5], v.metrics.imageToText.recall[10]
                )
                (r.textToImageR1, r.textToImageR5, r.textToImageR10) = (
                    v.metrics.textToImage.recall[1], v.metrics.textToImage.recall[5], v.metrics.textToImage.recall[10]
                )
            }
            if let evaluate, let score = withoutGradients({ evaluate(model) }) {
                (r.zeroshotTop1, r.zeroshotTop5) = (score.top1, score.top5)
            }
            run.append(.epoch(r))
            Progress(label: "", total: 0, enabled: showsProgress).message(Self.summary(r))
            try AtomicFile.write(LossCurve.svg(train: trainLosses, validation: validationLosses), to: run.lossCurveURL.path)
            record = r
        }
        // Rank 0 alone evaluates and decides to stop early; the others hear it, and wait for it
        // here (without spinning).
        if let parallel, options.patience != nil {
            position.stoppedEarly = try parallel.group.broadcast([position.stoppedEarly == true ? 1 : 0])[0] == 1 ? true : nil
        }
        try saveLatest()
        return record
    }

    /// "key value" pairs of an epoch record, sorted by key (counts as integers, measures to 4 digits).
    static func summary(_ r: LogRecord.Epoch) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(LogRecord.epoch(r).jsonLine.utf8)) as? [String: Any] else { return "" }
        return object.filter { $0.key != "event" }.sorted { $0.key < $1.key }.map { key, value in
            if key == "partial" || key == "best" || key == "stopped_early" { return "(\(key.replacingOccurrences(of: "_", with: " ")))" }
            guard key != "epoch" && key != "step", let n = value as? NSNumber else { return "\(key) \(value)" }
            return "\(key) \(String(format: "%.4g", n.doubleValue))"
        }.joined(separator: "  ")
    }

    /// Full-set InfoNCE loss and retrieval recall on held-out pairs (eval transform, no tape).
    func validate(_ source: BatchSource) throws -> (loss: Double, metrics: RetrievalMetrics) {
        try source.start(epoch: 0, batch: 0, cursor: nil)
        var images: [Tensor] = [], texts: [Tensor] = []
        try withoutGradients {
            while let b = try Interruption.whileWaiting({ try source.next() }) {
                images.append(model.encodeImage(b.images))
                texts.append(model.encodeText(b.ids))
            }
        }
        guard !images.isEmpty else { throw TrainingError.emptyValidation }
        let i = Tensor.concatenate(images, axis: 0), t = Tensor.concatenate(texts, axis: 0)
        let l = withoutGradients { ContrastiveLoss.infoNCE(image: i, text: t, logitScale: model.logitScale) }
        return (Double(l.item()), try RetrievalMetrics(images: i, texts: t, imageOfText: Array(0..<t.shape[0])))
    }

    // MARK: - Checkpoints

    /// Weights, optimizer moments and position, atomically, for --resume. Collective on several
    /// ranks: rank 0 writes, with every rank's data cursor.
    func saveLatest() throws {
        var position = position
        if let parallel { position.rankCursors = try parallel.group.allGather([position.cursor]) }
        guard isLeader else { return }
        var extra: [String: String] = [:]
        extra[Self.positionKey] = String(decoding: try JSONEncoder().encode(position), as: UTF8.self)
        extra[Self.optimizerStepKey] = "\(optimizer.step)"
        extra.merge(objective.stateMetadata()) { a, _ in a }
        var tensors = optimizerState().merging(objective.stateTensors()) { a, _ in a }
        for (k, t) in objective.heads?.namedParameters() ?? [] { tensors[Objective.headsPrefix + k] = t }
        try model.save(
            to: run.latest, preprocessing: preprocessing, tokenizer: tokenizer, extraMetadata: extra,
            extraTensors: tensors)
    }

    static let positionKey = "train_position"
    static let optimizerStepKey = "optimizer_step"

    /// Adam moments keyed `optimizer.m.<param>` / `optimizer.v.<param>`.
    func optimizerState() -> [String: Tensor] {
        let keys = Dictionary(uniqueKeysWithValues: trainable.namedParameters().map { (ObjectIdentifier($0.tensor), $0.key) })
        var out: [String: Tensor] = [:]
        for (p, moments) in zip(optimizer.groups.flatMap(\.parameters), optimizer.moments) {
            let key = keys[ObjectIdentifier(p)]!
            out["optimizer.m.\(key)"] = moments.m
            out["optimizer.v.\(key)"] = moments.v
        }
        return out
    }

    /// Rank 0's weights, optimizer state and position, on every rank (on resume only rank 0
    /// reads the checkpoint, so other hosts need not see the run folder).
    func synchronize(_ parallel: DataParallel) throws {
        try parallel.broadcast(trainable.namedParameters().map(\.tensor) + optimizer.moments.flatMap { [$0.m, $0.v] })
        let shared = try parallel.group.broadcast([position.step, position.epoch, position.batch, optimizer.step])
        position.step = shared[0]
        position.epoch = shared[1]
        position.batch = shared[2]
        optimizer.restore(step: shared[3], moments: optimizer.moments.map { ($0.m.copy(), $0.v.copy()) })
        try objective.synchronize(parallel)
        position.rankCursors = try parallel.group.broadcast(position.rankCursors ?? [position.cursor])
        position.cursor = position.cursor(rank: parallel.rank, of: parallel.size, batchSize: options.batchSize)
    }

    /// Restores weights, optimizer and position from a run's latest checkpoint.
    public func resume() throws {
        let file = try Safetensors(contentsOf: run.latest)
        guard let positionJSON = file.metadata[Self.positionKey],
            let position = try? JSONDecoder().decode(TrainingPosition.self, from: Data(positionJSON.utf8)),
            let optimizerStep = file.metadata[Self.optimizerStepKey].flatMap(Int.init)
        else {
            throw TrainingError.stateMismatch(file: run.latest.path, detail: "no training position; not a resumable checkpoint")
        }
        // Weights or moments that are not finite would only train into NaN (or, with no steps
        // left, end the run "done" with them).
        for (key, t) in file.tensors.sorted(by: { $0.key < $1.key }) {
            if let bad = firstNonFinite(t.data, t.count) {
                throw TrainingError.stateMismatch(
                    file: run.latest.path, detail: "tensor \(key) holds \(t.data[bad]) at index \(bad); values must be finite")
            }
        }
        try model.load(file.tensors.filter { !$0.key.hasPrefix("optimizer.") && !Objective.isExtra($0.key) })
        try objective.restore(file, source: run.latest.path)
        let keys = Dictionary(uniqueKeysWithValues: trainable.namedParameters().map { (ObjectIdentifier($0.tensor), $0.key) })
        var moments: [(m: Tensor, v: Tensor)] = []
        for p in optimizer.groups.flatMap(\.parameters) {
            let key = keys[ObjectIdentifier(p)]!
            guard let m = file.tensors["optimizer.m.\(key)"], let v = file.tensors["optimizer.v.\(key)"] else {
                throw TrainingError.stateMismatch(file: run.latest.path, detail: "no optimizer state for \(key)")
            }
            moments.append((m, v))
        }
        optimizer.restore(step: optimizerStep, moments: moments)
        self.position = position
        self.position.cursor = position.cursor(rank: 0, of: 1, batchSize: options.batchSize)
    }
}

extension Trainer {
    /// Creates the run folder and writes the options and model config into it.
    public func prepareRunFolder() throws {
        try run.create(configuration: RunConfiguration(training: options), config: model.config)
    }

    /// The gradient accumulation of one step without the update (for tests).
    public func gradientsForTesting(_ micro: [PairBatch]) -> Float {
        optimizer.zeroGradients()
        return accumulateGradients(micro)
    }

    /// The objective's after-step work (momentum update, enqueue) on `micro` (for tests).
    public func afterStepForTesting(_ micro: [PairBatch]) { objective.afterStep(micro) }

    /// Every tensor of the training state: parameters, heads, momentum copies, queue (for tests).
    public func stateForTesting() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: trainable.namedParameters().map { ($0.key, $0.tensor) })
            .merging(objective.stateTensors()) { a, _ in a }
    }

    /// The validation loss (for tests).
    public func validateForTesting(_ source: BatchSource) throws -> Double { try validate(source).loss }
}
