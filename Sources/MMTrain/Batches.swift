import MMCLIP

/// One batch of preprocessed image–caption pairs.
public struct TrainingBatch {
    public var images: Tensor  // [B, 3, S, S]
    public var ids: IntTensor  // [B, context]
    /// A second augmented view of each image [B, 3, S, S], for --image-ssl.
    public var views: Tensor?
    /// A class id per sample (from --labels-key), for --multi-positive.
    public var labels: [Int64]?
    /// The samples' manifest indices (shards: sample ids), which key an `ImageFeatureCache`.
    public var samples: [Int]?
    /// The image tower's output before normalisation [B, embed_dim], when it comes from an
    /// `ImageFeatureCache` (the loader leaves the images of cached samples zero).
    public var imageFeatures: Tensor?
    public init(
        images: Tensor, ids: IntTensor, views: Tensor? = nil, labels: [Int64]? = nil, samples: [Int]? = nil, imageFeatures: Tensor? = nil
    ) {
        self.images = images
        self.ids = ids
        self.views = views
        self.labels = labels
        self.samples = samples
        self.imageFeatures = imageFeatures
    }
    public var count: Int { ids.shape[0] }
}

/// A sample the data pipeline could not use, for the run's log.
public struct SkippedSample: Codable, Sendable, Equatable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// Where batches come from: a deterministic sequence per epoch, resumable at any batch.
public protocol BatchSource: AnyObject {
    /// Full batches in one epoch.
    var batchesPerEpoch: Int { get }
    /// Positions the source at `batch` of `epoch` (0-based); `cursor`, if known, is where that
    /// batch starts in the epoch's sample stream (later than batch·size when samples were skipped).
    func start(epoch: Int, batch: Int, cursor: Int?) throws
    /// The next batch of the current epoch, or nil when it is exhausted.
    func next() throws -> TrainingBatch?
    /// Where the batch after the last one returned starts in the sample stream.
    var cursor: Int { get }
    /// Samples skipped since the last call.
    func drainSkipped() -> [SkippedSample]
}
