import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMDistributed
import MMEval
import MMImage
import MMTokenizer
import MMTrain

/// `mm train`: contrastive training (or fine-tuning) of a CLIP model on image–caption pairs.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train or fine-tune a CLIP model on image–caption pairs.",
        discussion: """
            PAIRS is open_clip's CSV/TSV format: a header naming the image and caption columns \
            (default filepath and title), or a header-less two-column TSV; image paths are \
            relative to the file. The run folder gets options.json, config.json, log.jsonl, \
            loss.svg and checkpoints/ (epoch_N.safetensors, and latest.safetensors for --resume). \
            Ctrl-C writes a checkpoint before exiting.

            Started by mpirun, each rank trains on its shard of every global batch of \
            ranks × batch-size pairs: features are all-gathered so the loss sees the global batch, \
            gradients are averaged, and rank 0 alone writes the run folder (data paths must exist \
            on every host; the run folder only on rank 0's). Threads per rank default to the \
            host's cores / its ranks. --resume works with any number of ranks.

              mm train datasets/shapes/train.tsv --val datasets/shapes/val.tsv
              mm train pairs.csv --model ViT-B-32 --pretrained vitb32.safetensors --lock-image --lr 1e-5
              mm train --resume runs/shapes
              mpirun -np 2 mm train datasets/shapes/train.tsv --batch-size 64

            Contrastive-family options (off by default, composable with the default loss; see README):
              --queue 4096 --momentum 0.995     MoCo/ALBEF queue of momentum features as extra negatives
              --image-ssl simclr|byol           SLIP-style image self-supervision on a second view
              --text-ssl simcse --text-dropout 0.1   SimCSE on two dropout passes of each caption
              --multi-positive [--labels-key label]  identical captions (same labels) are positives
            """
    )

    @Argument(help: "Training pairs (CSV/TSV), or WebDataset shards ('data/{00000..00099}.tar'). Not needed with --resume.")
    var pairs: String?

    @OptionGroup(title: "WebDataset shards") var shardOptions: ShardOptions

    @Option(help: "Held-out pairs: validation loss and image↔text recall@1/5/10 after each epoch.")
    var val: String?

    @Option(help: "Zero-shot evaluation after each epoch: a class-name file (one per line, synonyms separated by |)…")
    var zeroshotLabels: String?

    @Option(help: "…and a manifest of images with a label column naming their class.")
    var zeroshotData: String?

    @Option(help: "Image column of the manifests.") var imageKey = Manifest.Options.defaultImageKey
    @Option(help: "Caption column of the manifests.") var captionKey = Manifest.Options.defaultCaptionKey
    @Option(help: "Label column of --zeroshot-data.") var labelKey = "label"
    @Option(help: "Column separator (default: tab for .tsv, comma for .csv).") var separator: String?
    @Flag(help: "Skip malformed manifest lines (counted and logged) instead of stopping.") var skipBad = false

    @Option(help: "Model: a bundled config name (\(CLIPConfig.bundledNames.joined(separator: ", "))) or an open_clip config .json (default: mm-tiny, or the --pretrained checkpoint's own).")
    var model: String?
    @Option(help: "Start from these weights (safetensors; open_clip or Hugging Face layout).") var pretrained: String?
    @Flag(help: "Freeze the image tower and train the text tower against it (LiT).") var lockImage = false
    @Option(help: "A vocabulary folder from `mm vocab train` (default: the CLIP vocabulary).") var vocab: String?

    @Option(help: "Loss: clip (symmetric InfoNCE) or siglip (sigmoid loss with learned bias).") var loss = "clip"
    @Option(help: "Pairs per micro-batch (per rank under mpirun).") var batchSize = 128
    @Option(help: "Micro-batches per step: the loss sees accum-freq × batch-size pairs (open_clip's accumulation).") var accumFreq = 1
    @Option(help: "Epochs.") var epochs = 10
    @Option(help: "Stop after this many optimizer steps.") var steps: Int?
    @Option(help: "Peak learning rate.") var lr: Float = 5e-4
    @Option(help: "Weight decay (not on gains, biases, embeddings, logit_scale).") var wd: Float = 0.2
    @Option(help: "Warm-up steps.") var warmup = 100
    @Option(help: "Learning-rate schedule after warm-up: cosine or constant.") var schedule = "cosine"
    @Option(help: "Clip the global gradient norm to this.") var gradClip: Float?
    @Option(help: "Seed of initialisation, shuffling and augmentation.") var seed: UInt64 = 0
    @Option(help: "Stop after this many minutes of training (data loading and steps; validation and checkpoints not counted), evaluating at the stop.")
    var maxMinutes: Double?

    @Option(help: "Queue this many momentum features per modality as extra negatives (MoCo/ALBEF).") var queue: Int?
    @Option(help: "Momentum m of the momentum encoders: θk ← m·θk + (1−m)·θq (--queue, --image-ssl byol).") var momentum: Float = 0.995
    @Option(help: "Image self-supervision on a second augmented view: simclr (projection head + NT-Xent, SLIP) or byol.") var imageSsl: String?
    @Option(help: "Weight of the self-supervised terms.") var sslWeight: Float = 1
    @Option(help: "NT-Xent temperature of --image-ssl simclr.") var sslTemperature: Float = 0.1
    @Option(help: "Text self-supervision: simcse (two dropout passes per caption, NT-Xent; needs --text-dropout).") var textSsl: String?
    @Option(help: "Dropout rate in the text tower while training.") var textDropout: Float = 0
    @Option(help: "NT-Xent temperature of --text-ssl simcse.") var simcseTemperature: Float = 0.05
    @Flag(help: "Identical captions (after tokenisation) are positives of each other, not negatives (supervised-contrastive InfoNCE).")
    var multiPositive = false
    @Option(help: "With --multi-positive: a column of the training manifest; samples with equal values are positives too.")
    var labelsKey: String?

    @Option(name: [.short, .long], help: "Run folder (default: runs/<pairs file name>).") var output: String?
    @Option(help: "Continue the run in this folder exactly where it stopped.") var resume: String?
    @Option(help: "Threads decoding images ahead of compute.") var workers = 1
    @Option(help: "Under mpirun: seconds a rank waits for the others before ending the job (a rank died or a host is unreachable).")
    var mpiTimeout: Double = 600

    func validate() throws {
        if pairs == nil && resume == nil { throw ValidationError("give a pairs file, or --resume RUN") }
        try shardOptions.validateShards()
        guard TrainingOptions.Loss(rawValue: loss) != nil else { throw ValidationError("--loss must be clip or siglip, got \(loss)") }
        guard ["cosine", "constant"].contains(schedule) else { throw ValidationError("--schedule must be cosine or constant") }
        guard batchSize >= 2 else { throw ValidationError("--batch-size must be at least 2 (contrastive learning needs negatives)") }
        guard accumFreq >= 1, epochs >= 1, workers >= 1, warmup >= 0 else { throw ValidationError("--accum-freq, --epochs and --workers must be positive") }
        if (zeroshotLabels == nil) != (zeroshotData == nil) { throw ValidationError("--zeroshot-labels and --zeroshot-data go together") }
        guard mpiTimeout > 0 else { throw ValidationError("--mpi-timeout must be positive") }
        if let maxMinutes, !(maxMinutes > 0) { throw ValidationError("--max-minutes must be positive") }
        if let queue {
            guard queue >= 1 else { throw ValidationError("--queue must be at least 1") }
            guard loss == "clip" else { throw ValidationError("--queue works with --loss clip only (the sigmoid loss has no queue form here)") }
        }
        guard momentum >= 0 && momentum < 1 else { throw ValidationError("--momentum must be in [0, 1)") }
        if let imageSsl {
            guard ContrastiveOptions.ImageSSL(rawValue: imageSsl) != nil else { throw ValidationError("--image-ssl must be simclr or byol, got \(imageSsl)") }
            guard !lockImage else { throw ValidationError("--image-ssl trains the image tower, which --lock-image freezes") }
        }
        if let textSsl {
            guard ContrastiveOptions.TextSSL(rawValue: textSsl) != nil else { throw ValidationError("--text-ssl must be simcse, got \(textSsl)") }
            guard textDropout > 0 else { throw ValidationError("--text-ssl simcse needs dropout in the text tower: add --text-dropout 0.1") }
        }
        guard textDropout >= 0 && textDropout < 1 else { throw ValidationError("--text-dropout must be in [0, 1)") }
        guard sslTemperature > 0, simcseTemperature > 0 else { throw ValidationError("temperatures must be positive") }
        if labelsKey != nil && !multiPositive { throw ValidationError("--labels-key is used by --multi-positive; add it") }
    }

    /// The contrastive options from the command line (nil when all are off).
    func contrastiveOptions() -> ContrastiveOptions? {
        var c = ContrastiveOptions()
        c.queueSize = queue ?? 0
        c.momentum = momentum
        c.imageSSL = imageSsl.flatMap(ContrastiveOptions.ImageSSL.init(rawValue:))
        c.textSSL = textSsl.flatMap(ContrastiveOptions.TextSSL.init(rawValue:))
        c.sslWeight = sslWeight
        c.sslTemperature = sslTemperature
        c.simcseTemperature = simcseTemperature
        c.textDropout = textDropout
        c.multiPositive = multiPositive
        c.usesLabels = labelsKey != nil
        return c == ContrastiveOptions() ? nil : c
    }

    func run() throws {
        guard MPIGroup.isLaunchedByMPI else { return try train(group: nil) }
        let group = try MPIGroup(timeout: mpiTimeout)
        if ProcessInfo.processInfo.environment["MM_THREADS"] == nil {
            Threads.set(max(1, ProcessInfo.processInfo.activeProcessorCount / group.localSize))
        }
        do {
            try train(group: group)
        } catch let exit as ExitCode {
            group.finalize()
            throw exit
        } catch {
            // The other ranks would wait for this one until their timeout: end them all now.
            warn(error is DistributedError ? "mm \(error)" : "mm rank \(group.rank): \(error)")
            group.abort(code: 1)
        }
        group.finalize()
    }

    /// The run, as the only process or as one rank of `group`.
    func train(group: MPIGroup?) throws {
        let rank = group?.rank ?? 0, ranks = group?.size ?? 1
        let say: (String) -> Void = { line in if rank == 0 { FileHandle.standardError.write(Data((line + "\n").utf8)) } }
        let runURL = URL(fileURLWithPath: resume ?? output ?? "runs/" + (ShardURLs.looksLikeShards(pairs!) ? ShardOptions.runName(pairs!)
                                                                   : URL(fileURLWithPath: pairs!).deletingPathExtension().lastPathComponent))
        let run = RunFolder(runURL)
        var options = TrainingOptions()
        var saved: Invocation?
        if resume != nil {
            // Only rank 0 needs the run folder: it sends the others what they need.
            if rank == 0 {
                options = try run.readOptions()
                saved = try Invocation.read(from: runURL)
            }
            if let group {
                options = try group.broadcast(options)
                saved = try group.broadcast(saved)
            }
            let global = options.batchSize * (options.ranks ?? 1)
            guard global % ranks == 0 else {
                throw CommandError("\(runURL.path) trains with a global batch of \(global) pairs, which \(ranks) ranks cannot share evenly; resume with a rank count dividing \(global)")
            }
            options.batchSize = global / ranks
            options.ranks = ranks
        } else {
            options.epochs = epochs
            options.maxSteps = steps
            options.batchSize = batchSize
            options.accumFreq = accumFreq
            options.learningRate = lr
            options.weightDecay = wd
            options.warmup = warmup
            options.schedule = schedule
            options.gradClip = gradClip
            options.loss = TrainingOptions.Loss(rawValue: loss)!
            options.lockImage = lockImage
            options.seed = seed
            options.ranks = ranks
            options.maxSeconds = maxMinutes.map { $0 * 60 }
            options.contrastive = contrastiveOptions()
        }
        if ranks > 1 && (options.contrastive != nil || options.maxSeconds != nil) {
            throw CommandError("--queue, --image-ssl, --text-ssl, --text-dropout, --multi-positive and --max-minutes are not supported under mpirun yet; train with them in one process")
        }
        var shards = resume == nil ? (ShardURLs.looksLikeShards(pairs!) ? shardOptions.settings(ranks: ranks) : nil) : ShardSettings.read(from: runURL)
        if let group { shards = try group.broadcast(shards) }
        let inv = saved ?? Invocation(pairs: shards != nil ? ShardOptions.absolute(pairs!) : URL(fileURLWithPath: pairs!).path, val: val, zeroshotLabels: zeroshotLabels,
                                      zeroshotData: zeroshotData, imageKey: imageKey, captionKey: captionKey, labelKey: labelKey,
                                      separator: separator, skipBad: skipBad, model: model, pretrained: pretrained, vocab: vocab,
                                      trainLabelKey: labelsKey)

        // Model: from --pretrained (its recorded config unless --model says otherwise) or new.
        let vocabulary = try inv.vocab.map { try Vocabulary.load($0) } ?? Vocabulary.clip()
        let clip: CLIPModel
        let preprocessing: Preprocessing
        if let pretrained = inv.pretrained {
            let loaded = try CLIPModel.load(from: URL(fileURLWithPath: pretrained), config: try inv.model.map { try CLIPConfig(named: $0) })
            clip = loaded.model
            preprocessing = loaded.preprocessing
            guard vocabulary.count <= clip.config.text.vocabSize else {
                throw CommandError("the vocabulary has \(vocabulary.count) tokens but \(pretrained)'s text tower has \(clip.config.text.vocabSize)")
            }
            guard options.loss == .clip || clip.logitBias != nil else {
                throw CommandError("\(pretrained) has no logit_bias, which --loss siglip needs")
            }
        } else {
            var config = try CLIPConfig(named: inv.model ?? "mm-tiny")
            var changes: [String: Any] = [:]
            if vocabulary.count != config.text.vocabSize { changes["text_cfg.vocab_size"] = vocabulary.count }
            if options.loss == .siglip && config.initLogitBias == nil {
                changes["init_logit_bias"] = -10.0  // SigLIP's initialisation
                changes["init_logit_scale"] = Foundation.log(10.0)
            }
            if !changes.isEmpty { config = try config.updating(changes) }
            clip = CLIPModel(config, seed: options.seed)
            preprocessing = Preprocessing(imageSize: config.vision.imageSize)
        }
        let config = clip.config
        let tokenizer = Tokenizer(vocabulary: vocabulary, contextLength: config.text.contextLength)

        // Data
        let sep = inv.separator.map { Character($0 == "\\t" ? "\t" : $0) }
        let manifestOptions = Manifest.Options(imageKey: inv.imageKey, captionKey: inv.captionKey, separator: sep, skipBad: inv.skipBad)
        var trainOptions = manifestOptions
        trainOptions.labelKey = inv.trainLabelKey
        let contrastive = options.contrastive ?? ContrastiveOptions()
        let normalization = Normalization(mean: SIMD3(preprocessing.mean[0], preprocessing.mean[1], preprocessing.mean[2]),
                                          std: SIMD3(preprocessing.std[0], preprocessing.std[1], preprocessing.std[2]))
        let size = config.vision.imageSize
        let source: LoaderSource, sampleCount: Int, badLines: [Manifest.BadLine]
        if let shards {
            if contrastive.usesLabels { throw CommandError("--labels-key reads a manifest column; shards have none") }
            (source, sampleCount) = try shardTrainingSource(inv.pairs, settings: shards, batchSize: options.batchSize, seed: options.seed,
                                                            rank: rank, ranks: ranks, epochs: options.epochs, threads: workers,
                                                            transform: .train(size: size, normalization: normalization), tokenizer: tokenizer,
                                                            extraView: contrastive.imageSSL != nil,
                                                            cache: URL(fileURLWithPath: runURL.path + ".shard-counts.json"), say: say)
            badLines = []
        } else {
            let train = try Manifest(path: inv.pairs, options: trainOptions)
            let order = try EpochOrder(sampleCount: train.count, batchSize: options.batchSize, seed: options.seed, rank: rank, worldSize: ranks)
            source = LoaderSource(training: train, order: order, transform: .train(size: size, normalization: normalization),
                                  tokenizer: tokenizer, epochs: options.epochs, threads: workers,
                                  extraView: contrastive.imageSSL != nil, labels: contrastive.usesLabels)
            (sampleCount, badLines) = (train.count, train.badLines)
        }
        let validation = try inv.val.map {
            LoaderSource(evaluating: try Manifest(path: $0, options: manifestOptions), batchSize: options.batchSize,
                         transform: .eval(size: size, normalization: normalization), tokenizer: tokenizer, threads: workers)
        }
        var zeroShot: ((CLIPModel) -> [String: Any])?
        if let labels = inv.zeroshotLabels, let data = inv.zeroshotData {
            let classes = try readClassNames(labels)
            let manifest = try Manifest(path: data, options: Manifest.Options(imageKey: inv.imageKey, captionKey: nil, labelKey: inv.labelKey,
                                                                              separator: sep, skipBad: inv.skipBad))
            let truth = try classIndices(manifest, classes, file: data)
            zeroShot = { model in
                let classifier = ZeroShotClassifier(model: model, tokenizer: tokenizer, classes: classes, templates: ["a photo of a {}."])
                guard let (images, rows) = try? embedImages(model, manifest, size: size, normalization: normalization, threads: workers) else { return [:] }
                let ranking = classifier.ranking(images), labels = rows.map { truth[$0] }
                return ["zeroshot_top1": topKAccuracy(ranking, labels, k: 1), "zeroshot_top5": topKAccuracy(ranking, labels, k: 5)]
            }
        }

        let trainer = Trainer(model: clip, options: options, run: run, preprocessing: preprocessing, tokenizer: inv.vocab ?? "clip-bpe",
                              group: group)
        if rank == 0 {
            if resume != nil {
                try trainer.resume()
                say("resuming \(runURL.path) at epoch \(trainer.position.epoch + 1), step \(trainer.position.step)")
            } else {
                try trainer.prepareRunFolder()
                try inv.write(to: runURL)
                shards?.trainNumSamples = sampleCount  // --resume keeps the epoch size, whatever happens to the counts
                try shards?.write(to: runURL)
            }
            for bad in badLines {
                warn("skipped \(inv.pairs) \(bad)")
                if resume == nil { run.append(["event": "skipped_line", "file": inv.pairs, "line": bad.line, "reason": bad.reason]) }
            }
        }
        let perStep = options.batchSize * options.accumFreq
        say("""
            training \(inv.model ?? inv.pretrained ?? "mm-tiny") (\(clip.parameterCount.formatted()) parameters) on \(sampleCount) pairs, \
            \(source.batchesPerEpoch / options.accumFreq) steps per epoch of \(ranks > 1 ? "\(ranks) ranks × \(perStep) = " : "")\(perStep * ranks) pairs \
            → \(runURL.path)
            """)
        let result = try trainer.train(source: source, validation: validation, evaluate: zeroShot)
        if result.skipped > 0 || !badLines.isEmpty {
            say("skipped \(result.skipped) unreadable images\(ranks > 1 ? " on rank 0" : "") and \(badLines.count) malformed lines (listed in \(runURL.path)/log.jsonl)")
        }
        if result.interrupted { throw ExitCode(130) }
        say("done: \(run.epochCheckpoint(trainer.position.epoch).path)")
    }
}

/// The data and model arguments of a run, saved beside its options so that --resume needs no others.
struct Invocation: Codable {
    var pairs: String
    var val: String?
    var zeroshotLabels: String?
    var zeroshotData: String?
    var imageKey: String
    var captionKey: String
    var labelKey: String
    var separator: String?
    var skipBad: Bool
    var model: String?
    var pretrained: String?
    var vocab: String?
    /// --labels-key: the training manifest's label column for --multi-positive.
    var trainLabelKey: String?

    static func read(from run: URL) throws -> Invocation {
        guard let data = try? Data(contentsOf: run.appendingPathComponent("invocation.json")) else {
            throw CommandError("\(run.path) is not a run folder of `mm train` (no invocation.json)")
        }
        return try JSONDecoder().decode(Invocation.self, from: data)
    }

    func write(to run: URL) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try e.encode(self).write(to: run.appendingPathComponent("invocation.json"), options: .atomic)
    }
}
