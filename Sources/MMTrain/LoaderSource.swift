import MMData
import MMImage
import MMTokenizer

/// Adapts MMData's prefetching `PairLoader` to the trainer: one loader streams the run's epochs;
/// it is only re-created when the trainer asks for a position it is not at (start, resume).
/// The samples come from a manifest or from WebDataset shards.
public final class LoaderSource: BatchSource {
    /// The manifest (nil when reading shards).
    public let manifest: Manifest?
    public let order: EpochOrder?
    /// The shards and their order, when reading shards.
    public let shards: (set: ShardSet, order: ShardOrder)?
    private let transform: ImageTransform
    private let tokenizer: Tokenizer
    private let batchSize: Int
    private let epochs: Int?
    private let threads: Int
    private let extraView: Bool
    /// Samples whose images need no decoding: their features are cached.
    private let imageFeatures: ImageFeatureCache?
    /// Class id of each manifest sample (ids of the distinct values of its label column).
    private let labelIDs: [Int64]?
    private var loader: PairLoader?
    private var nextPosition: LoaderPosition?
    private var epoch = 0
    private var skipped: [SkippedImage] = []
    public private(set) var cursor = 0

    /// A training source: shuffled full batches per `order`, augmented. `extraView`: a second
    /// augmented view of each image; `labels`: pass the manifest's label column on as class ids;
    /// `imageFeatures`: the trainer's cache, whose samples are not decoded again.
    public init(
        training manifest: Manifest, order: EpochOrder, transform: ImageTransform, tokenizer: Tokenizer,
        epochs: Int, threads: Int, extraView: Bool = false, labels: Bool = false, imageFeatures: ImageFeatureCache? = nil
    ) {
        self.extraView = extraView
        self.imageFeatures = imageFeatures
        if labels, let column = manifest.labels {
            var ids: [String: Int64] = [:]
            labelIDs = column.map { name in
                if let id = ids[name] { return id }
                ids[name] = Int64(ids.count)
                return Int64(ids.count - 1)
            }
        } else {
            labelIDs = nil
        }
        self.manifest = manifest
        self.order = order
        shards = nil
        self.transform = transform
        self.tokenizer = tokenizer
        batchSize = order.batchSize
        self.epochs = epochs
        self.threads = threads
    }

    /// A training source over shards read in `order`, augmented.
    public init(
        training shards: ShardSet, order: ShardOrder, transform: ImageTransform, tokenizer: Tokenizer,
        epochs: Int, threads: Int, extraView: Bool = false
    ) {
        self.extraView = extraView
        imageFeatures = nil
        labelIDs = nil
        manifest = nil
        self.order = nil
        self.shards = (shards, order)
        self.transform = transform
        self.tokenizer = tokenizer
        batchSize = order.batchSize
        self.epochs = epochs
        self.threads = threads
    }

    /// An evaluation source: manifest order, the last batch partial.
    public init(evaluating manifest: Manifest, batchSize: Int, transform: ImageTransform, tokenizer: Tokenizer, threads: Int) {
        extraView = false
        imageFeatures = nil
        labelIDs = nil
        self.manifest = manifest
        order = nil
        shards = nil
        self.transform = transform
        self.tokenizer = tokenizer
        self.batchSize = batchSize
        epochs = nil
        self.threads = threads
    }

    public var batchesPerEpoch: Int {
        shards?.order.batchesPerEpoch ?? order?.batchesPerEpoch ?? ((manifest?.count ?? 0) + batchSize - 1) / batchSize
    }

    public func start(epoch: Int, batch: Int, cursor: Int?) throws {
        self.epoch = epoch
        if let (set, shardOrder) = shards {
            let wanted = LoaderPosition(epoch: epoch, batch: batch, cursor: cursor ?? batch * shardOrder.batchSize)
            if loader == nil || nextPosition != wanted {
                loader = try PairLoader(
                    training: set, order: shardOrder, transform: transform, tokenizer: tokenizer,
                    start: wanted, epochs: epochs, threads: threads, extraView: extraView)
                nextPosition = wanted
            }
            self.cursor = wanted.cursor
            return
        }
        guard let order, let manifest else {
            loader = try PairLoader(evaluating: manifest!, batchSize: batchSize, transform: transform, tokenizer: tokenizer, threads: threads)
            nextPosition = .start
            return
        }
        let wanted = LoaderPosition(epoch: epoch, batch: batch, cursor: cursor ?? batch * order.batchSize)
        if loader == nil || nextPosition != wanted {
            loader = try PairLoader(
                training: manifest, order: order, transform: transform, tokenizer: tokenizer,
                start: wanted, epochs: epochs, threads: threads, extraView: extraView,
                skipsImage: imageFeatures.map { cache in { @Sendable in cache.contains($0) } })
            nextPosition = wanted
        }
        self.cursor = wanted.cursor
    }

    public func next() throws -> PairBatch? {
        // The loader runs on into the next epoch; stop at this epoch's end without taking more.
        guard let loader, let position = nextPosition, (order == nil && shards == nil) || position.epoch == epoch,
            let b = try loader.next()
        else { return nil }
        nextPosition = b.next
        cursor = b.next.cursor
        skipped += b.skipped
        var batch = b
        batch.labels = labelIDs.map { ids in b.indices.map { ids[$0] } }
        return batch
    }

    public func drainSkipped() -> [SkippedImage] {
        defer { skipped = [] }
        return skipped
    }
}
