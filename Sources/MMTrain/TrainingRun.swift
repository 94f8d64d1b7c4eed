import Foundation
import MMCLIP
import MMData
import MMDistributed
import MMImage
import MMTokenizer

/// A training run built from a `RunConfiguration`: the model (new, or from pretrained weights),
/// the vocabulary check, the manifests, the epoch order and loaders with the model's
/// preprocessing, validation and the zero-shot check, and the run folder — started fresh or
/// resumed from its latest checkpoint, as one process or as one rank of a `ProcessGroup`.
///
///     let run = try TrainingRun(configuration, folder: URL(fileURLWithPath: "runs/shapes"))
///     let outcome = try run.train()
///
/// On several ranks every rank makes the same calls; rank 0 alone reads and writes the folder.
public final class TrainingRun {
    /// The configuration being run (on resume: the saved one, with the batch per rank adapted).
    public let configuration: RunConfiguration
    public let folder: RunFolder
    public let trainer: Trainer
    /// The training manifest (its `badLines` were logged when the run started); nil for shards.
    public let manifest: Manifest?
    /// Samples per epoch (a manifest's count, or the shards' epoch size).
    public let sampleCount: Int
    /// Micro-batches per epoch on this rank.
    let batchesPerEpoch: Int
    /// Whether the run continued from its latest checkpoint.
    public let isResumed: Bool
    /// The ranks the run spans (1 without a group).
    public let ranks: Int
    /// The settings a resume changed, as logged ("lr 0.0005 → 0.0001").
    public let changes: [String]
    /// The settings the training data chose, as logged ("batch 64", …; see `DataDefaults`).
    public let chosenDefaults: [String]
    let source: LoaderSource
    let validation: LoaderSource?
    /// The zero-shot check after each epoch (rank 0 only).
    public let zeroShot: ZeroShotCheck?

    /// A new run of `configuration` into `folder`, which must be empty or absent unless
    /// `overwrite` (then a previous run's files are removed first). `workers`: threads
    /// decoding images ahead of compute.
    /// `notify` hears what the run found out about its data (the shards' epoch size and where
    /// it came from, missing shards, counting progress).
    public convenience init(
        _ configuration: RunConfiguration, folder: URL, group: ProcessGroup? = nil, workers: Int = 1,
        overwrite: Bool = false, notify: ((String) -> Void)? = nil
    ) throws {
        try self.init(
            configuration: configuration, folder: RunFolder(folder), group: group, workers: workers, resume: false, overwrite: overwrite,
            notify: notify)
    }

    /// Continues the run in `folder` exactly where its latest checkpoint left it, with any number
    /// of ranks dividing its global batch. Only rank 0 reads the folder.
    public static func resume(
        _ folder: URL, changes: ResumeChanges = ResumeChanges(), group: ProcessGroup? = nil,
        workers: Int = 1, notify: ((String) -> Void)? = nil
    ) throws -> TrainingRun {
        let run = RunFolder(folder)
        var saved = (group?.rank ?? 0) == 0 ? try run.readConfiguration() : nil
        // A value no run can use is the saved file's fault, not a flag's: name the file.
        do { try saved?.validate() } catch let error as TrainingError {
            throw TrainingError.unreadableFile(path: run.configuration.path, reason: "\(error)")
        }
        if let group { saved = try group.broadcast(saved) }
        return try TrainingRun(
            configuration: saved!, folder: run, group: group, workers: workers, resume: true, overwrite: false,
            changes: changes, notify: notify)
    }

    private init(
        configuration: RunConfiguration, folder: RunFolder, group: ProcessGroup?, workers: Int, resume: Bool, overwrite: Bool,
        changes resumeChanges: ResumeChanges = ResumeChanges(), notify: ((String) -> Void)?
    ) throws {
        let rank = group?.rank ?? 0, ranks = group?.size ?? 1
        var configuration = configuration
        changes = resumeChanges.apply(to: &configuration.training)
        if resume {
            let global = configuration.training.batchSize * (configuration.training.ranks ?? 1)
            guard global % ranks == 0 else { throw TrainingError.batchNotDivisible(run: folder.url.path, globalBatch: global, ranks: ranks) }
            configuration.training.batchSize = global / ranks
        }
        configuration.training.ranks = ranks
        try configuration.validate()
        guard workers >= 1 && workers <= 256 else { throw TrainingError.invalidOption(name: "workers", value: "\(workers)", rule: "in 1...256") }
        if rank == 0 && !resume && folder.isOccupied {
            guard overwrite else { throw TrainingError.runFolderNotEmpty(path: folder.url.path) }
            try folder.clear()
        }
        // The training data; then what it chooses (a new run only: a resumed one has its values).
        let manifestOptions = Manifest.Options(
            imageKey: configuration.data.imageKey, captionKey: configuration.data.captionKey,
            separator: configuration.data.separatorCharacter, skipBad: configuration.data.skipBad)
        var shardData: (set: ShardSet, epochSize: Int)?
        var trainManifest: Manifest?
        if let shards = configuration.data.shards {
            if let started = shards.ranks, started != ranks {
                throw TrainingError.invalidOption(
                    name: "ranks", value: "\(ranks)",
                    rule: "\(started), the ranks this shard run started with (each rank's position is in its own shards)")
            }
            if configuration.training.contrastive?.usesLabels == true {
                throw TrainingError.invalidOption(name: "labels", value: "on", rule: "off for shards (they have no label column)")
            }
            configuration.data.shards?.ranks = ranks
            let set = try ShardSet(configuration.data.pairs, keys: shards.keys, skipMissing: shards.skipMissing)
            for path in set.missing { notify?("skipped missing shard \(path)") }
            // Rank 0 alone counts (or reads the cache beside the run) and tells the others.
            var epoch: (count: Int, source: ShardSet.SizeSource) = (0, .given)
            if rank == 0 {
                epoch = try set.epochSize(given: shards.trainNumSamples, cache: URL(fileURLWithPath: folder.url.path + ".shard-counts.json")) {
                    done, total in
                    if done == 1 || done == total || done % 10 == 0 { notify?("counting samples: \(done)/\(total) shards") }
                }
            }
            if let group { epoch = (try group.broadcast(epoch.count), try group.broadcast(epoch.source)) }
            notify?("\(set.shards.count) shards, \(epoch.count) samples per epoch (from \(epoch.source.rawValue))")
            shardData = (set, epoch.count)
        } else {
            var trainOptions = manifestOptions
            trainOptions.labelKey = configuration.data.trainLabelKey
            trainManifest = try Manifest(path: configuration.data.pairs, options: trainOptions)
        }
        if !resume && !configuration.fromData.isEmpty {
            chosenDefaults = configuration.choose(DataDefaults(pairs: trainManifest?.count ?? shardData!.epochSize), ranks: ranks)
            try configuration.validate()
        } else {
            chosenDefaults = []
        }
        // Without a validation manifest, a share of the images may be held out as validation.
        var heldOut: Manifest?
        if let share = configuration.data.holdOut, share > 0, let whole = trainManifest {
            let parts = whole.split(heldOutShare: share)
            if parts.heldOut.count > 0 {
                (trainManifest, heldOut) = (parts.kept, parts.heldOut)
                notify?("validation: \(parts.heldOut.count) of \(whole.count) pairs held out (their images are not trained on)")
            }
        }
        (manifest, sampleCount) = (trainManifest, trainManifest?.count ?? shardData!.epochSize)
        let options = configuration.training, data = configuration.data

        // Model: from the pretrained weights (their recorded config unless a model is named) or new.
        let vocabulary = try configuration.model.vocab.map { try Vocabulary.load($0) } ?? Vocabulary.clip()
        let clip: CLIPModel
        let preprocessing: Preprocessing
        if let pretrained = configuration.model.pretrained {
            let loaded = try CLIPModel.load(
                from: URL(fileURLWithPath: pretrained), config: try configuration.model.name.map { try CLIPConfig(named: $0) })
            clip = loaded.model
            preprocessing = loaded.preprocessing
            guard vocabulary.count <= clip.config.text.vocabSize else {
                throw TrainingError.vocabularyTooLarge(tokens: vocabulary.count, checkpoint: pretrained, towerTokens: clip.config.text.vocabSize)
            }
            guard options.loss == .clip || clip.logitBias != nil else { throw TrainingError.missingLogitBias(checkpoint: pretrained) }
        } else {
            var config = try CLIPConfig(named: configuration.model.name ?? "mm-tiny")
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
        let tokenizer = Tokenizer(vocabulary: vocabulary, contextLength: clip.config.text.contextLength)

        // Loaders
        let contrastive = options.contrastive ?? ContrastiveOptions()
        let normalization = preprocessing.normalization
        let size = clip.config.vision.imageSize
        // LiT's cached features: the evaluation transform, so that a sample's features never change.
        var imageFeatures: ImageFeatureCache?
        if let settings = options.imageFeatureCache {
            guard shardData == nil else {
                throw TrainingError.invalidOption(
                    name: "cached image features", value: "on", rule: "used with a manifest (shard samples have no stable index)")
            }
            guard clip.config.vision.patchDropout == 0 else {
                throw TrainingError.invalidOption(
                    name: "cached image features", value: "on", rule: "used without patch dropout (it changes the features every step)")
            }
            imageFeatures = ImageFeatureCache(
                sampleCount: sampleCount, dimension: clip.config.embedDim, memoryLimit: settings.memoryLimit,
                directory: rank == 0 ? folder.url : FileManager.default.temporaryDirectory)
        }
        let transform =
            imageFeatures == nil ? ImageTransform.train(size: size, normalization: normalization) : .eval(size: size, normalization: normalization)
        if let (set, epochSize) = shardData, let shards = data.shards {
            let order = try ShardOrder(
                epochSize: epochSize, batchSize: options.batchSize, seed: options.seed, rank: rank, worldSize: ranks,
                shuffleBuffer: shards.shuffleBuffer, resampled: shards.resampled)
            source = LoaderSource(
                training: set, order: order, transform: transform, tokenizer: tokenizer, epochs: options.epochs,
                threads: workers, extraView: contrastive.imageSSL != nil)
            batchesPerEpoch = order.batchesPerEpoch
        } else if let manifest {
            let identity = ManifestIdentity(manifest).description
            if resume, let saved = data.pairsIdentity, saved != identity {
                throw TrainingError.manifestChanged(path: data.pairs, saved: saved, now: identity)
            }
            configuration.data.pairsIdentity = identity
            let order = try EpochOrder(sampleCount: manifest.count, batchSize: options.batchSize, seed: options.seed, rank: rank, worldSize: ranks)
            source = LoaderSource(
                training: manifest, order: order, transform: transform, tokenizer: tokenizer, epochs: options.epochs,
                threads: workers, extraView: contrastive.imageSSL != nil, labels: contrastive.usesLabels, imageFeatures: imageFeatures)
            batchesPerEpoch = order.batchesPerEpoch
        } else {
            preconditionFailure("a run reads a manifest or shards")
        }
        validation = try (data.val.map { try Manifest(path: $0, options: manifestOptions) } ?? heldOut).map {
            LoaderSource(
                evaluating: $0, batchSize: options.batchSize, transform: .eval(size: size, normalization: normalization),
                tokenizer: tokenizer, threads: workers)
        }
        if rank == 0, let labels = data.zeroshotLabels, let images = data.zeroshotData {
            zeroShot = try ZeroShotCheck(
                labels: labels, data: images,
                options: Manifest.Options(
                    imageKey: data.imageKey, captionKey: nil, labelKey: data.labelKey,
                    separator: data.separatorCharacter, skipBad: data.skipBad),
                tokenizer: tokenizer, transform: .eval(size: size, normalization: normalization), threads: workers)
        } else {
            zeroShot = nil
        }

        trainer = Trainer(
            model: clip, options: options, run: folder, preprocessing: preprocessing,
            tokenizer: configuration.model.vocab ?? "clip-bpe", group: group)
        trainer.imageFeatureCache = imageFeatures
        self.configuration = configuration
        self.folder = folder
        self.ranks = ranks
        isResumed = resume
        if rank == 0 {
            if resume {
                folder.removeStaleTemporaries()
                try trainer.resume()
                try folder.truncateLog(to: trainer.position)
                folder.append(.resumed(.init(step: trainer.position.step, epoch: trainer.position.epoch, changes: changes.isEmpty ? nil : changes)))
                // The folder's configuration now holds the changes (and the manifest's identity).
                try folder.saveConfiguration(configuration)
            } else {
                try folder.create(configuration: configuration, config: clip.config)
                if let d = configuration.dataDefaults, !chosenDefaults.isEmpty {
                    folder.append(.defaults(.init(reason: d.reason, chosen: chosenDefaults)))
                }
                for bad in manifest?.badLines ?? [] {
                    folder.append(.skippedLine(.init(file: data.pairs, line: bad.line, reason: bad.reason)))
                }
            }
        }
    }

    /// Optimizer steps per epoch.
    public var stepsPerEpoch: Int { batchesPerEpoch / configuration.training.accumFreq }

    /// Trains to the end of the run (or a stop request, or the time budget).
    public func train() throws -> TrainingOutcome {
        try trainer.train(source: source, validation: validation, evaluate: zeroShot.map { check in { check($0) } })
    }
}

/// A manifest's samples in short: their count and an FNV-1a hash of every image file name and
/// caption, in order ("6016 samples, fnv1a 0x…").
struct ManifestIdentity: CustomStringConvertible {
    let count: Int
    let hash: UInt64

    init(_ manifest: Manifest) {
        var h = FNV1a()
        func mix(_ s: String) {
            h.combine(bytes: s.utf8)
            h.combine(word: 0xFF)  // field separator
        }
        for i in 0..<manifest.count {
            mix(URL(fileURLWithPath: manifest.images[i]).lastPathComponent)
            if let captions = manifest.captions { mix(captions[i]) }
        }
        count = manifest.count
        hash = h.value
    }

    var description: String { "\(count) samples, fnv1a \(String(hash, radix: 16))" }
}
