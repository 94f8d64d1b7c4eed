import Foundation
import MMData

/// What a resumed run may change (each applied and recorded in the log's `resumed` line). The
/// rest of the configuration — data, model, batch, loss, seed, contrastive options — is fixed.
public struct ResumeChanges: Sendable, Equatable {
    public var epochs: Int?
    public var maxSteps: Int?
    public var learningRate: Float?
    public var gradClip: Float?
    public var maxSeconds: Double?

    public init(epochs: Int? = nil, maxSteps: Int? = nil, learningRate: Float? = nil, gradClip: Float? = nil, maxSeconds: Double? = nil) {
        self.epochs = epochs
        self.maxSteps = maxSteps
        self.learningRate = learningRate
        self.gradClip = gradClip
        self.maxSeconds = maxSeconds
    }

    /// Applies the changes; returns each one that differs from the saved value ("lr 0.0005 → 0.0001").
    func apply(to o: inout TrainingOptions) -> [String] {
        var said: [String] = []
        func change<T: Equatable>(_ name: String, _ value: T?, _ field: WritableKeyPath<TrainingOptions, T>) {
            guard let value, o[keyPath: field] != value else { return }
            said.append("\(name) \(o[keyPath: field]) → \(value)")
            o[keyPath: field] = value
        }
        func change<T: Equatable>(_ name: String, _ value: T?, _ field: WritableKeyPath<TrainingOptions, T?>) {
            guard let value, o[keyPath: field] != value else { return }
            said.append("\(name) \(o[keyPath: field].map { "\($0)" } ?? "none") → \(value)")
            o[keyPath: field] = value
        }
        change("epochs", epochs, \.epochs)
        change("steps", maxSteps, \.maxSteps)
        change("lr", learningRate, \.learningRate)
        change("grad_clip", gradClip, \.gradClip)
        change("max_seconds", maxSeconds, \.maxSeconds)
        return said
    }
}

/// Everything that defines a training run — its data, its model and how it is trained — as one
/// value: `mm train` builds it from its flags, a Swift program builds it directly, and the run
/// folder keeps it (run.json) so that a resumed run needs nothing else. See docs/library.md.
public struct RunConfiguration: Codable, Sendable, Equatable {
    /// The manifests a run reads. Paths are as given (relative to the working directory).
    public struct DataSettings: Codable, Sendable, Equatable {
        /// Training pairs (open_clip's CSV/TSV).
        public var pairs: String
        /// Held-out pairs: validation loss and recall after each epoch.
        public var val: String?
        /// Without `val`: the share of the training manifest's images (each with all its pairs)
        /// kept out of training and used as validation instead (nil or 0: none; `Manifest.split`).
        public var holdOut: Double?
        /// Zero-shot check after each epoch: class names (one per line, synonyms `a|b`)…
        public var zeroshotLabels: String?
        /// …and a manifest of images with a label column.
        public var zeroshotData: String?
        public var imageKey: String
        public var captionKey: String
        /// The label column of `zeroshotData`.
        public var labelKey: String
        /// Column separator ("\t" or "\\t" for tab; nil: from the extension).
        public var separator: String?
        /// Skip (and log) malformed manifest lines instead of stopping.
        public var skipBad: Bool
        /// A label column of the training manifest: equal labels are positives (multi-positive).
        public var trainLabelKey: String?
        /// What the training manifest held when the run started (`ManifestIdentity`), set by
        /// `TrainingRun`; a resumed run refuses a manifest that differs.
        public var pairsIdentity: String?
        /// Set when `pairs` names WebDataset shards (docs/webdataset.md) rather than a manifest.
        public var shards: ShardSettings?

        public init(
            pairs: String, val: String? = nil, zeroshotLabels: String? = nil, zeroshotData: String? = nil,
            imageKey: String = Manifest.Options.defaultImageKey, captionKey: String = Manifest.Options.defaultCaptionKey,
            labelKey: String = "label", separator: String? = nil, skipBad: Bool = false, trainLabelKey: String? = nil
        ) {
            self.pairs = pairs
            self.val = val
            self.zeroshotLabels = zeroshotLabels
            self.zeroshotData = zeroshotData
            self.imageKey = imageKey
            self.captionKey = captionKey
            self.labelKey = labelKey
            self.separator = separator
            self.skipBad = skipBad
            self.trainLabelKey = trainLabelKey
        }

        /// The separator as a character ("\\t" spelled out means tab).
        var separatorCharacter: Character? { separator.map { Character($0 == "\\t" ? "\t" : $0) } }
    }

    /// Which model is trained.
    public struct ModelSettings: Codable, Sendable, Equatable {
        /// A bundled config name or an open_clip config .json (nil: mm-tiny, or the pretrained checkpoint's own).
        public var name: String?
        /// Start from these weights.
        public var pretrained: String?
        /// A vocabulary folder (nil: the CLIP vocabulary).
        public var vocab: String?

        public init(name: String? = nil, pretrained: String? = nil, vocab: String? = nil) {
            self.name = name
            self.pretrained = pretrained
            self.vocab = vocab
        }

        enum CodingKeys: String, CodingKey { case name = "model", pretrained, vocab }

        /// How the run names its model in messages.
        public var label: String { name ?? pretrained ?? "mm-tiny" }
    }

    /// How a run reads WebDataset shards: saved with the run so that a resume reads the same
    /// shards the same way.
    public struct ShardSettings: Codable, Sendable, Equatable {
        public var keys: WebDatasetKeys
        /// Samples per epoch over all ranks (nil: from the shards' metadata, or counted).
        public var trainNumSamples: Int?
        /// Shards drawn with replacement each epoch (open_clip's --dataset-resampled).
        public var resampled: Bool
        /// Samples shuffled together in memory (0 or 1: shard order).
        public var shuffleBuffer: Int
        /// Leave out shards that do not exist instead of stopping.
        public var skipMissing: Bool
        /// The ranks the run started with: each rank's position is in its own shards.
        public var ranks: Int?

        public init(
            keys: WebDatasetKeys = WebDatasetKeys(), trainNumSamples: Int? = nil, resampled: Bool = false,
            shuffleBuffer: Int = ShardOrder.defaultShuffleBuffer, skipMissing: Bool = false, ranks: Int? = nil
        ) {
            self.keys = keys
            self.trainNumSamples = trainNumSamples
            self.resampled = resampled
            self.shuffleBuffer = shuffleBuffer
            self.skipMissing = skipMissing
            self.ranks = ranks
        }
    }

    public var data: DataSettings
    public var model: ModelSettings
    public var training: TrainingOptions
    /// Settings the run chooses from its training data when it starts (`DataDefaults`; what
    /// `mm train` leaves unset). Emptied once chosen, so never saved.
    public var fromData: Set<DataDefaults.Setting> = []
    /// What the data chose when the run started (nil: nothing was left to it).
    public internal(set) var dataDefaults: DataDefaults?

    enum CodingKeys: String, CodingKey { case data, model, training, dataDefaults }

    public init(
        data: DataSettings, model: ModelSettings = ModelSettings(), training: TrainingOptions = TrainingOptions(),
        fromData: Set<DataDefaults.Setting> = []
    ) {
        self.data = data
        self.model = model
        self.training = training
        self.fromData = fromData
    }

    /// A configuration holding only training options (for trainers fed by a custom `BatchSource`).
    init(training: TrainingOptions) {
        self.init(data: DataSettings(pairs: ""), training: training)
    }

    /// Rejects values no run can use (`TrainingError.invalidOption`).
    public func validate() throws {
        try training.validate()
        if (data.zeroshotLabels == nil) != (data.zeroshotData == nil) {
            throw TrainingError.invalidOption(
                name: "zero-shot data", value: data.zeroshotLabels == nil ? "images only" : "labels only",
                rule: "both a labels file and a labelled manifest")
        }
        if let share = data.holdOut {
            guard share.isFinite && share >= 0 && share <= 0.5 else {
                throw TrainingError.invalidOption(name: "held-out share", value: "\(share)", rule: "between 0 and 0.5")
            }
            if share > 0 && data.val != nil {
                throw TrainingError.invalidOption(name: "held-out share", value: "\(share)", rule: "0 when a validation manifest is given")
            }
            if share > 0 && data.shards != nil {
                throw TrainingError.invalidOption(name: "held-out share", value: "\(share)", rule: "0 for shards (give a validation manifest)")
            }
        }
        if let s = data.separator, s != "\\t", s.count != 1 {
            throw TrainingError.invalidOption(name: "separator", value: s, rule: "one character")
        }
        if training.contrastive?.usesLabels == true && data.trainLabelKey == nil {
            throw TrainingError.invalidOption(name: "labels", value: "on", rule: "given a label column of the training manifest")
        }
    }
}
