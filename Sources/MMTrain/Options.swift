import Foundation
import MMCLIP
import MMNN

/// How the model is trained: the optimisation part of a `RunConfiguration` (saved with it in the
/// run folder so that a resumed run continues exactly).
public struct TrainingOptions: Codable, Sendable, Equatable {
    public enum Loss: String, Codable, Sendable, CaseIterable { case clip, siglip }
    public typealias Schedule = LearningRateSchedule.Shape

    public var epochs: Int = 10
    /// Optimizer steps to stop after, if fewer than the epochs give.
    public var maxSteps: Int?
    /// Pairs per micro-batch on each rank.
    public var batchSize: Int = 128
    /// Ranks the run was started with (nil: one); the global batch is batchSize × ranks.
    public var ranks: Int?
    /// Micro-batches per optimizer step (open_clip's --accum-freq): the loss sees accumFreq·batchSize pairs.
    public var accumFreq: Int = 1
    public var learningRate: Float = 5e-4
    public var weightDecay: Float = 0.2
    public var warmup: Int = 100
    public var schedule: Schedule = .cosine
    public var gradClip: Float?
    public var loss: Loss = .clip
    public var lockImage: Bool = false
    /// LiT's precomputed features (with `lockImage`): images get the evaluation transform (no
    /// augmentation) and each sample's image features are computed once, then read from an
    /// `ImageFeatureCache` (nil: off; absent in older runs).
    public var imageFeatureCache: ImageFeatureCacheSettings?
    public var seed: UInt64 = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.98
    public var eps: Float = 1e-6
    /// Stop after this many seconds of training (loading and steps; validation and checkpoints not counted),
    /// finishing the epoch early: for comparisons at equal wall-clock time.
    public var maxSeconds: Double?
    /// The contrastive-family options (nil: CLIP's plain objective; absent in older runs).
    public var contrastive: ContrastiveOptions?
    /// Early stopping: end the run when the validation loss has not improved for this many
    /// epochs (nil: never). The best epoch's weights are kept either way (`RunFolder.best`).
    public var patience: Int?

    public init() {}

    /// Rejects values no run can use, naming the option (`TrainingError.invalidOption`).
    public func validate() throws {
        func check(_ ok: Bool, _ name: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidOption(name: name, value: "\(value)", rule: rule) }
        }
        try check(epochs >= 1, "epochs", epochs, "at least 1")
        if let maxSteps { try check(maxSteps >= 1, "steps", maxSteps, "at least 1") }
        try check(batchSize >= 2, "batch size", batchSize, "at least 2 (contrastive learning needs negatives)")
        try check(batchSize <= 65_536, "batch size", batchSize, "at most 65536 (it sizes every batch buffer)")
        try check(accumFreq >= 1, "accumulation frequency", accumFreq, "at least 1")
        try check(learningRate.isFinite && learningRate > 0, "learning rate", learningRate, "a positive finite number")
        try check(weightDecay.isFinite && weightDecay >= 0, "weight decay", weightDecay, "a finite number ≥ 0")
        try check(warmup >= 0, "warm-up", warmup, "≥ 0")
        if let gradClip { try check(gradClip.isFinite && gradClip > 0, "gradient clip", gradClip, "a positive finite number") }
        if let maxSeconds { try check(maxSeconds.isFinite && maxSeconds > 0, "time budget", maxSeconds, "a positive number of seconds") }
        if let patience { try check(patience >= 1, "patience", patience, "at least 1 epoch") }
        if let cache = imageFeatureCache {
            try check(lockImage, "cached image features", "on", "used with a locked image tower")
            try check(cache.memoryLimit >= 0, "feature cache memory", cache.memoryLimit, "≥ 0 bytes")
            // The queue's momentum image tower reads the images every step.
            try check((contrastive?.queueSize ?? 0) == 0, "queue size", contrastive?.queueSize ?? 0, "0 with cached image features")
        }
        guard let c = contrastive else { return }
        try check(c.queueSize >= 0, "queue size", c.queueSize, "≥ 0")
        try check(c.queueSize == 0 || loss == .clip, "queue size", c.queueSize, "0 with the sigmoid loss (it has no queue form)")
        try check(c.momentum >= 0 && c.momentum < 1, "momentum", c.momentum, "in [0, 1)")
        try check(c.imageSSL == nil || !lockImage, "image self-supervision", c.imageSSL?.rawValue ?? "", "off when the image tower is locked")
        try check(c.textSSL == nil || c.textDropout > 0, "text self-supervision", c.textSSL?.rawValue ?? "", "used with text dropout > 0")
        try check(c.textDropout >= 0 && c.textDropout < 1, "text dropout", c.textDropout, "in [0, 1)")
        try check(c.sslTemperature > 0 && c.sslTemperature.isFinite, "SSL temperature", c.sslTemperature, "positive")
        try check(c.simcseTemperature > 0 && c.simcseTemperature.isFinite, "SimCSE temperature", c.simcseTemperature, "positive")
        try check(c.sslWeight.isFinite, "SSL weight", c.sslWeight, "finite")
        try check(!c.usesLabels || c.multiPositive, "labels", c.usesLabels, "used with multi-positive targets")
    }
}

/// How a run keeps its cached image features (`TrainingOptions.imageFeatureCache`).
public struct ImageFeatureCacheSettings: Codable, Sendable, Equatable {
    /// Bytes of features held in RAM; a larger cache goes to a scratch file beside the run.
    public var memoryLimit = 1 << 30

    public init(memoryLimit: Int = 1 << 30) { self.memoryLimit = memoryLimit }
}

/// Options of the contrastive family (issue #9), each off by default and composable with the
/// default loss. See `Objective` for what each adds.
public struct ContrastiveOptions: Codable, Sendable, Equatable {
    public enum ImageSSL: String, Codable, Sendable, CaseIterable { case simclr, byol }
    public enum TextSSL: String, Codable, Sendable, CaseIterable { case simcse }

    /// Queued momentum features per modality used as extra negatives (0: no queue).
    public var queueSize = 0
    /// m of the momentum encoders' update θₖ ← m θₖ + (1 − m) θ_q (queue and BYOL target).
    public var momentum: Float = 0.995
    public var imageSSL: ImageSSL?
    public var textSSL: TextSSL?
    /// Weight of the self-supervised terms added to the contrastive loss.
    public var sslWeight: Float = 1
    /// NT-Xent temperature of --image-ssl simclr (SLIP: 0.1).
    public var sslTemperature: Float = 0.1
    /// NT-Xent temperature of --text-ssl simcse (SimCSE: 0.05).
    public var simcseTemperature: Float = 0.05
    /// Dropout rate in the text tower while training (SimCSE's noise).
    public var textDropout: Float = 0
    /// Identical captions (and equal labels, with `usesLabels`) are positives of each other.
    public var multiPositive = false
    public var usesLabels = false

    public init() {}

    /// Whether a momentum copy of the model is kept.
    public var needsMomentumModel: Bool { queueSize > 0 || imageSSL == .byol }
}

/// Progress of a run, stored in every checkpoint.
public struct TrainingPosition: Codable, Sendable, Equatable {
    public var step = 0
    public var epoch = 0
    /// Micro-batches of `epoch` already consumed.
    public var batch = 0
    /// The data stream position of the next batch (see `BatchSource.cursor`).
    public var cursor = 0
    /// Every rank's `cursor`, in a data-parallel run.
    public var rankCursors: [Int]?
    /// The epoch with the lowest validation loss so far, and that loss (nil: no validation yet).
    public var bestEpoch: Int?, bestValLoss: Double?
    /// Set when early stopping ended the run (`TrainingOptions.patience`).
    public var stoppedEarly: Bool?
    public init() {}

    /// Where `rank` of `ranks` continues its data stream: its own cursor when the rank count is
    /// unchanged, else the batch's nominal start (replacements for skipped images may then
    /// differ from an unbroken run).
    func cursor(rank: Int, of ranks: Int, batchSize: Int) -> Int {
        let cursors = rankCursors ?? [cursor]
        return cursors.count == ranks ? cursors[rank] : batch * batchSize
    }
}
