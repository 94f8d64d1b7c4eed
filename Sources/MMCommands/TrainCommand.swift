import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMDistributed
import MMDistributedMPI
import MMFoundation
import MMNN
import MMTrain

/// `mm train`: contrastive training (or fine-tuning) of a CLIP model on image–caption pairs.
/// Parse → `RunConfiguration` → `TrainingRun`; the recipe lives in MMTrain.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train or fine-tune a CLIP model on image–caption pairs.",
        discussion: """
            PAIRS is open_clip's CSV/TSV format: a header naming the image and caption columns \
            (default filepath and title), or a header-less two-column TSV; image paths are \
            relative to the file. The run folder gets run.json, config.json, log.jsonl, \
            loss.svg and checkpoints/ (epoch_N.safetensors, best.safetensors for the epoch with \
            the lowest validation loss — what `-c RUN` loads — and latest.safetensors for --resume); \
            it must be new or empty unless --overwrite. Ctrl-C writes a checkpoint before exiting. \
            --resume continues a run with its saved settings; only --epochs, --steps, --lr, \
            --grad-clip, --max-minutes, --workers and --mpi-timeout may be given with it (logged).

            Started by mpirun, each rank trains on its shard of every global batch of \
            ranks × batch-size pairs: features are all-gathered so the loss sees the global batch, \
            gradients are averaged, and rank 0 alone writes the run folder (data paths must exist \
            on every host; the run folder only on rank 0's). Threads per rank default to the \
            host's cores / its ranks. --resume works with any number of ranks.

              mm train datasets/shapes/train.tsv --val datasets/shapes/val.tsv
              mm train pairs.csv --model ViT-B-32 --pretrained vitb32.safetensors --lock-image --lr 1e-5
              mm train pairs.csv --pretrained vitb32.safetensors --lock-image --cache-image-features
              mm train --resume runs/shapes
              mpirun -np 2 mm train datasets/shapes/train.tsv --batch-size 64

            Defaults from the data: options left unset are chosen from the number of training \
            pairs when the run starts (printed, logged in log.jsonl, saved in run.json so --resume \
            keeps them). Up to 10,000 pairs: batch 64, lr 1e-3; from 100,000 pairs on today's \
            open_clip-like batch 128, lr 5e-4; in between both move on a log scale. Model \
            mm-small-rn (a small ResNet image tower) below 30,000 pairs, else mm-tiny (a ViT). \
            Epochs: about 200,000 samples seen, between 10 and 35. Warm-up: 5 % of the run's steps, at most 100. Weight decay 0.2. \
            Below 100,000 pairs, with no --epochs or --steps, early stopping: without --val, 10 % of the images (at most 2,000 \
            pairs; none below 1,000 pairs) are held out as validation, and the run ends once the \
            validation loss has not improved for 5 epochs. With --pretrained \
            the checkpoint's model and lr 5e-4. See docs/training.md, Defaults.

            Contrastive-family options (off by default, composable with the default loss; see docs/training.md):
              --queue 4096 --momentum 0.995     MoCo/ALBEF queue of momentum features as extra negatives
              --image-ssl simclr|byol           SLIP-style image self-supervision on a second view
              --text-ssl simcse --text-dropout 0.1   SimCSE on two dropout passes of each caption
              --multi-positive [--labels-key label]  identical captions (same labels) are positives
            """
    )

    @Argument(help: "Training pairs (CSV/TSV), or WebDataset shards ('shards/{00000..00099}.tar', sources joined with ::). Not needed with --resume.")
    var pairs: String?

    @OptionGroup(title: "Data") var data: TrainDataOptions
    @OptionGroup(title: "Model") var model: TrainModelOptions
    @OptionGroup(title: "Optimisation") var optimisation: OptimisationOptions
    @OptionGroup(title: "Contrastive family") var contrastive: ContrastiveFlags
    @OptionGroup(title: "Run") var runOptions: RunOptions
    @OptionGroup(title: "WebDataset shards") var shardOptions: ShardOptions

    func validate() throws {
        if let resume = runOptions.resume {
            let fixed =
                ([pairs.map { _ in "PAIRS" }] + data.given + model.given + optimisation.fixedGiven + contrastive.given + runOptions.fixedGiven)
                .compactMap { $0 }
            guard fixed.isEmpty else {
                throw ValidationError(
                    "\(fixed.joined(separator: ", ")) cannot change when resuming \(resume): the run keeps its saved settings (only --epochs, --steps, --lr, --grad-clip, --max-minutes, --workers, --mpi-timeout may be given)"
                )
            }
        } else if pairs == nil {
            throw ValidationError("give a pairs file, or --resume RUN")
        }
        try shardOptions.validateShards()
        guard runOptions.workers >= 1 && runOptions.workers <= 256 else { throw ValidationError("--workers must be in 1...256") }
        guard runOptions.mpiTimeout > 0 else { throw ValidationError("--mpi-timeout must be positive") }
        if (data.zeroshotLabels == nil) != (data.zeroshotData == nil) { throw ValidationError("--zeroshot-labels and --zeroshot-data go together") }
        if contrastive.labelsKey != nil && !contrastive.multiPositive { throw ValidationError("--labels-key is used by --multi-positive; add it") }
        if contrastive.textSsl != nil && (contrastive.textDropout ?? 0) <= 0 {
            throw ValidationError("--text-ssl simcse needs dropout in the text tower: add --text-dropout 0.1")
        }
        // Every numeric value is checked in one place, the library's; its message names the option.
        if runOptions.resume == nil {
            do { try configuration(pairs: pairs!, ranks: 1).validate() } catch let error as TrainingError {
                throw ValidationError(explain(error))
            }
        } else {
            var probe = TrainingOptions()
            optimisation.applyChanges(to: &probe)
            do { try probe.validate() } catch let error as TrainingError { throw ValidationError(explain(error)) }
        }
    }

    /// The run configuration the flags describe.
    func configuration(pairs: String, ranks: Int) -> RunConfiguration {
        var training = TrainingOptions()
        optimisation.apply(to: &training)
        training.lockImage = model.lockImage
        if model.cacheImageFeatures { training.imageFeatureCache = ImageFeatureCacheSettings() }
        training.ranks = ranks
        training.contrastive = contrastive.options
        // What the flags leave unset, the training data chooses (DataDefaults); a fine-tuning run
        // keeps its checkpoint's model and today's learning rate.
        var fromData = Set(DataDefaults.Setting.allCases)
        let given: [(DataDefaults.Setting, Bool)] = [
            (.model, model.model != nil || model.pretrained != nil), (.batchSize, optimisation.batchSize != nil),
            (.epochs, optimisation.epochs != nil), (.learningRate, optimisation.lr != nil || model.pretrained != nil),
            (.warmup, optimisation.warmup != nil), (.weightDecay, optimisation.wd != nil),
            (.holdOut, data.holdOut != nil || data.val != nil), (.patience, data.patience != nil)
        ]
        for (setting, isGiven) in given where isGiven { fromData.remove(setting) }
        let shards = ShardURLs.looksLikeShards(pairs)
        var configuration = RunConfiguration(
            data: .init(
                pairs: shards ? ShardOptions.absolute(pairs) : URL(fileURLWithPath: pairs).path, val: data.val, zeroshotLabels: data.zeroshotLabels,
                zeroshotData: data.zeroshotData,
                imageKey: data.imageKey ?? Manifest.Options.defaultImageKey, captionKey: data.captionKey ?? Manifest.Options.defaultCaptionKey,
                labelKey: data.labelKey ?? "label", separator: data.separator, skipBad: data.skipBad, trainLabelKey: contrastive.labelsKey),
            model: .init(name: model.model, pretrained: model.pretrained, vocab: model.vocab),
            training: training, fromData: fromData)
        if shards { configuration.data.shards = shardOptions.settings(ranks: ranks) }
        if let share = data.holdOut, share != 0 { configuration.data.holdOut = share }
        if let patience = data.patience, patience != 0 { configuration.training.patience = patience }
        return configuration
    }

    func run() throws {
        guard MPIGroup.isLaunchedByMPI else {
            try train(group: nil)
            return
        }
        let group = try MPIGroup(timeout: runOptions.mpiTimeout)
        if Threads.fromEnvironment == nil {
            Threads.set(max(1, ProcessInfo.processInfo.activeProcessorCount / group.localSize))
        }
        do {
            try train(group: group)
        } catch let exit as ExitCode {
            group.finalize()
            throw exit
        } catch {
            // The other ranks would wait for this one until their timeout: end them all now.
            let line = "\(withHint(error))"
            warn(error is DistributedError ? "mm \(line)" : "mm rank \(group.rank): \(line)")
            if case .interrupted = error as? DistributedError { group.abort(code: 130) }
            group.abort(code: 1)
        }
        group.finalize()
    }

    /// The run, as the only process or as one rank of `group`.
    func train(group: ProcessGroup?) throws {
        let rank = group?.rank ?? 0, ranks = group?.size ?? 1
        // Room for every thread the run holds at once: this one, the kernels' pool, the stop
        // watcher, and three loaders (training, validation, zero-shot) of `workers` each.
        let kernels = max(Threads.count, ProcessInfo.processInfo.activeProcessorCount)
        do { try Threads.checkAvailable(kernels + 1 + 3 * runOptions.workers) } catch { throw CommandError("\(error)") }
        let say: (String) -> Void = { line in if rank == 0 { warn(line) } }
        let run: TrainingRun
        if let resume = runOptions.resume {
            var changes = ResumeChanges()
            optimisation.applyChanges(to: &changes)
            run = try TrainingRun.resume(URL(fileURLWithPath: resume), changes: changes, group: group, workers: runOptions.workers, notify: say)
            let p = run.trainer.position
            say(
                "resuming \(run.folder.url.path) at epoch \(p.epoch + 1), step \(p.step)\(run.changes.isEmpty ? "" : " with " + run.changes.joined(separator: ", "))"
            )
        } else {
            let name =
                ShardURLs.looksLikeShards(pairs!)
                ? ShardOptions.runName(pairs!) : URL(fileURLWithPath: pairs!).deletingPathExtension().lastPathComponent
            run = try TrainingRun(
                configuration(pairs: pairs!, ranks: ranks), folder: URL(fileURLWithPath: runOptions.output ?? "runs/" + name),
                group: group, workers: runOptions.workers, overwrite: runOptions.overwrite, notify: say)
            if rank == 0 { for bad in run.manifest?.badLines ?? [] { warn("skipped \(run.configuration.data.pairs) \(bad)") } }
            if let check = run.zeroShot, let labels = run.configuration.data.zeroshotLabels {
                for d in check.classes.duplicates { warn("\(labels):\(d.line): label '\(d.name)' appears again; ignored") }
            }
            if let d = run.configuration.dataDefaults, !run.chosenDefaults.isEmpty {
                say("defaults for \(d.reason): \(run.chosenDefaults.joined(separator: ", "))")
            }
        }
        let o = run.configuration.training, perStep = o.batchSize * o.accumFreq
        say(
            """
            training \(run.configuration.model.label) (\(run.trainer.model.parameterCount.formatted()) parameters) on \(run.sampleCount) pairs, \
            \(run.stepsPerEpoch) steps per epoch of \(ranks > 1 ? "\(ranks) ranks × \(perStep) = " : "")\(perStep * ranks) pairs \
            → \(run.folder.url.path)
            """)
        let outcome = try run.train()
        let badLines = run.manifest?.badLines.count ?? 0
        if outcome.skipped > 0 || badLines > 0 {
            say(
                "skipped \(outcome.skipped) unreadable images\(ranks > 1 ? " on rank 0" : "") and \(badLines) malformed lines (listed in \(run.folder.log.path))"
            )
        }
        if outcome.interrupted {
            say("continue with --resume \(run.folder.url.path)")
            throw ExitCode(130)
        }
        let p = run.trainer.position
        if p.stoppedEarly == true, let best = p.bestEpoch {
            say("stopped early: no better validation loss in the \(p.epoch - best) epochs after epoch \(best)")
        }
        if let best = p.bestEpoch, let loss = p.bestValLoss {
            say(
                "done: \(run.folder.best.path) (epoch \(best), validation loss \(String(format: "%.4f", loss)); last: \(run.trainer.epochCheckpoint.lastPathComponent))"
            )
        } else {
            say("done: \(run.trainer.epochCheckpoint.path)")
        }
    }
}

// MARK: - Option groups

extension TrainingOptions.Loss: ExpressibleByArgument {}
extension LearningRateSchedule.Shape: ExpressibleByArgument {}
extension ContrastiveOptions.ImageSSL: ExpressibleByArgument {}
extension ContrastiveOptions.TextSSL: ExpressibleByArgument {}

/// The manifests (`RunConfiguration.DataSettings`).
struct TrainDataOptions: ParsableArguments {
    @Option(help: "Held-out pairs: validation loss and image↔text recall@1/5/10 after each epoch.")
    var val: String?
    @Option(
        help:
            "Without --val: hold out this share of the images (with all their pairs) as validation; 0: none (default: below 100,000 pairs with no --epochs or --steps 0.1, at most \(DataDefaults.maxHeldOutPairs.formatted()) pairs, none below \(DataDefaults.minPairsToHoldOut.formatted()) pairs)."
    )
    var holdOut: Double?
    @Option(
        help:
            "Early stopping: end the run once the validation loss has not improved for this many epochs; 0: never (default: \(DataDefaults.earlyStoppingPatience) below 100,000 pairs when there is validation and no --epochs or --steps, else never). The best epoch is kept as checkpoints/best.safetensors either way."
    )
    var patience: Int?
    @Option(help: "Zero-shot evaluation after each epoch: a class-name file (one per line, synonyms separated by |)…")
    var zeroshotLabels: String?
    @Option(help: "…and a manifest of images with a label column naming their class.")
    var zeroshotData: String?
    @Option(help: "Image column of the manifests (default: \(Manifest.Options.defaultImageKey)).") var imageKey: String?
    @Option(help: "Caption column of the manifests (default: \(Manifest.Options.defaultCaptionKey)).") var captionKey: String?
    @Option(help: "Label column of --zeroshot-data (default: label).") var labelKey: String?
    @Option(help: "Column separator (default: tab for .tsv, comma for .csv).") var separator: String?
    @Flag(help: "Skip malformed manifest lines (counted and logged) instead of stopping.") var skipBad = false

    /// The flags given (for --resume, which keeps the saved ones).
    var given: [String?] {
        [
            val.map { _ in "--val" }, holdOut.map { _ in "--hold-out" }, patience.map { _ in "--patience" },
            zeroshotLabels.map { _ in "--zeroshot-labels" }, zeroshotData.map { _ in "--zeroshot-data" },
            imageKey.map { _ in "--image-key" }, captionKey.map { _ in "--caption-key" }, labelKey.map { _ in "--label-key" },
            separator.map { _ in "--separator" }, skipBad ? "--skip-bad" : nil
        ]
    }
}

/// The model (`RunConfiguration.ModelSettings`) and what of it trains.
struct TrainModelOptions: ParsableArguments {
    @Option(
        help:
            "Model: a bundled config name (\(CLIPConfig.bundledNames.joined(separator: ", "))) or an open_clip config .json (default: from the data size — mm-small-rn under 30,000 pairs, else mm-tiny — or the --pretrained checkpoint's own)."
    )
    var model: String?
    @Option(help: "Start from these weights (safetensors; open_clip or Hugging Face layout).") var pretrained: String?
    @Flag(help: "Freeze the image tower and train the text tower against it (LiT).") var lockImage = false
    @Flag(
        help:
            "With --lock-image, LiT's precomputed features: images get the evaluation transform (no augmentation) and each one's features are computed in the first epoch, then reused without decoding (in RAM up to 1 GiB, else in a scratch file in the run folder). Manifests only; not with --queue or patch dropout."
    ) var cacheImageFeatures = false
    @Option(help: "A vocabulary folder from `mm vocab train` (default: the CLIP vocabulary).") var vocab: String?

    var given: [String?] {
        [
            model.map { _ in "--model" }, pretrained.map { _ in "--pretrained" }, lockImage ? "--lock-image" : nil,
            cacheImageFeatures ? "--cache-image-features" : nil, vocab.map { _ in "--vocab" }
        ]
    }
}

/// The optimisation part of `TrainingOptions`. Unset options take the library's defaults.
struct OptimisationOptions: ParsableArguments {
    static let defaults = TrainingOptions()

    @Option(help: "Loss: clip (symmetric InfoNCE) or siglip (sigmoid loss with learned bias).") var loss: TrainingOptions.Loss?
    @Option(
        help:
            "Pairs per micro-batch (per rank under mpirun; default: from the data size, 64 up to 10,000 pairs → \(defaults.batchSize) from 100,000, split over the ranks)."
    ) var batchSize: Int?
    @Option(help: "Micro-batches per step: the loss sees accum-freq × batch-size pairs (open_clip's accumulation; default: 1).") var accumFreq: Int?
    @Option(
        help:
            "Epochs (default: from the data size, about \(DataDefaults.smallDataSamples.formatted()) samples seen, between \(defaults.epochs) and \(DataDefaults.maxEpochs))."
    )
    var epochs: Int?
    @Option(help: "Stop after this many optimizer steps.") var steps: Int?
    @Option(
        help:
            "Peak learning rate (default: from the data size, 1e-3 up to 10,000 pairs → \(defaults.learningRate) from 100,000; \(defaults.learningRate) with --pretrained)."
    ) var lr: Float?
    @Option(help: "Weight decay, not on gains, biases, embeddings, logit_scale (default: \(defaults.weightDecay)).") var wd: Float?
    @Option(help: "Warm-up steps (default: 5 % of the run's steps, at most \(defaults.warmup)).") var warmup: Int?
    @Option(help: "Learning-rate schedule after warm-up: cosine or constant (default: cosine).") var schedule: LearningRateSchedule.Shape?
    @Option(help: "Clip the global gradient norm to this.") var gradClip: Float?
    @Option(help: "Seed of initialisation, shuffling and augmentation (default: 0).") var seed: UInt64?
    @Option(
        help: "Stop after this many minutes of training (data loading and steps; validation and checkpoints not counted), evaluating at the stop.")
    var maxMinutes: Double?

    func apply(to o: inout TrainingOptions) {
        if let loss { o.loss = loss }
        if let batchSize { o.batchSize = batchSize }
        if let accumFreq { o.accumFreq = accumFreq }
        if let wd { o.weightDecay = wd }
        if let warmup { o.warmup = warmup }
        if let schedule { o.schedule = schedule }
        if let seed { o.seed = seed }
        applyChanges(to: &o)
    }

    /// The options a resumed run may change.
    func applyChanges(to o: inout TrainingOptions) {
        if let epochs { o.epochs = epochs }
        if let steps { o.maxSteps = steps }
        if let lr { o.learningRate = lr }
        if let gradClip { o.gradClip = gradClip }
        if let maxMinutes { o.maxSeconds = maxMinutes * 60 }
    }

    func applyChanges(to c: inout ResumeChanges) {
        c.epochs = epochs
        c.maxSteps = steps
        c.learningRate = lr
        c.gradClip = gradClip
        c.maxSeconds = maxMinutes.map { $0 * 60 }
    }

    /// The flags given that a resumed run cannot change.
    var fixedGiven: [String?] {
        [
            loss.map { _ in "--loss" }, batchSize.map { _ in "--batch-size" }, accumFreq.map { _ in "--accum-freq" }, wd.map { _ in "--wd" },
            warmup.map { _ in "--warmup" }, schedule.map { _ in "--schedule" }, seed.map { _ in "--seed" }
        ]
    }
}

/// The contrastive-family options (`ContrastiveOptions`).
struct ContrastiveFlags: ParsableArguments {
    static let defaults = ContrastiveOptions()

    @Option(help: "Queue this many momentum features per modality as extra negatives (MoCo/ALBEF).") var queue: Int?
    @Option(help: "Momentum m of the momentum encoders: θk ← m·θk + (1−m)·θq (--queue, --image-ssl byol; default: \(defaults.momentum)).")
    var momentum: Float?
    @Option(help: "Image self-supervision on a second augmented view: simclr (projection head + NT-Xent, SLIP) or byol.")
    var imageSsl: ContrastiveOptions.ImageSSL?
    @Option(help: "Weight of the self-supervised terms (default: 1).") var sslWeight: Float?
    @Option(help: "NT-Xent temperature of --image-ssl simclr (default: \(defaults.sslTemperature)).") var sslTemperature: Float?
    @Option(help: "Text self-supervision: simcse (two dropout passes per caption, NT-Xent; needs --text-dropout).")
    var textSsl: ContrastiveOptions.TextSSL?
    @Option(help: "Dropout rate in the text tower while training (default: 0).") var textDropout: Float?
    @Option(help: "NT-Xent temperature of --text-ssl simcse (default: \(defaults.simcseTemperature)).") var simcseTemperature: Float?
    @Flag(help: "Identical captions (after tokenisation) are positives of each other, not negatives (supervised-contrastive InfoNCE).")
    var multiPositive = false
    @Option(help: "With --multi-positive: a column of the training manifest; samples with equal values are positives too.")
    var labelsKey: String?

    /// The options (nil when all are off).
    var options: ContrastiveOptions? {
        var c = ContrastiveOptions()
        if let queue { c.queueSize = queue }
        if let momentum { c.momentum = momentum }
        c.imageSSL = imageSsl
        c.textSSL = textSsl
        if let sslWeight { c.sslWeight = sslWeight }
        if let sslTemperature { c.sslTemperature = sslTemperature }
        if let simcseTemperature { c.simcseTemperature = simcseTemperature }
        if let textDropout { c.textDropout = textDropout }
        c.multiPositive = multiPositive
        c.usesLabels = labelsKey != nil
        return c == ContrastiveOptions() ? nil : c
    }

    var given: [String?] {
        [
            queue.map { _ in "--queue" }, momentum.map { _ in "--momentum" }, imageSsl.map { _ in "--image-ssl" },
            sslWeight.map { _ in "--ssl-weight" },
            sslTemperature.map { _ in "--ssl-temperature" }, textSsl.map { _ in "--text-ssl" }, textDropout.map { _ in "--text-dropout" },
            simcseTemperature.map { _ in "--simcse-temperature" }, multiPositive ? "--multi-positive" : nil, labelsKey.map { _ in "--labels-key" }
        ]
    }
}

/// Where the run goes and how this process runs it (not part of the saved configuration).
struct RunOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Run folder (default: runs/<pairs file name>).") var output: String?
    @Option(help: "Continue the run in this folder exactly where it stopped.") var resume: String?
    @Flag(help: "Start over in a run folder that already holds a run (its files are deleted).") var overwrite = false
    @Option(help: "Threads decoding images ahead of compute (1–256).") var workers = 1
    @Option(help: "Under mpirun: seconds a rank waits for the others before ending the job (a rank died or a host is unreachable).")
    var mpiTimeout: Double = 600

    var fixedGiven: [String?] { [output.map { _ in "-o/--output" }, overwrite ? "--overwrite" : nil] }
}
