import Foundation
import MMImage
import MMTensor
import MMTokenizer

/// Where a loader starts: batch `batch` of epoch `epoch`, whose first sample is at position
/// `cursor` of the rank's stream (see `EpochOrder`). The cursor is `batch × batchSize` unless
/// images failed earlier in the epoch, so save `PairBatch.next` to resume exactly.
public struct LoaderPosition: Codable, Equatable, Sendable, CustomStringConvertible {
    public var epoch: Int
    public var batch: Int
    public var cursor: Int

    public init(epoch: Int, batch: Int, cursor: Int) {
        self.epoch = epoch
        self.batch = batch
        self.cursor = cursor
    }

    public static let start = LoaderPosition(epoch: 0, batch: 0, cursor: 0)

    public var description: String { "epoch \(epoch) batch \(batch) (stream position \(cursor))" }
}

extension EpochOrder {
    /// The start of batch `batch` of `epoch` when no image failed before it in that epoch.
    public func position(epoch: Int, batch: Int) -> LoaderPosition {
        LoaderPosition(epoch: epoch, batch: batch, cursor: batch * batchSize)
    }
}

/// A sample that was left out: its image could not be loaded, its caption could not be read, or
/// (shards) it lacked a caption or image member or sat in a damaged part of an archive.
public struct SkippedImage: Sendable, Equatable, CustomStringConvertible {
    /// The sample's index in the manifest (for shards, its sample id; -1 when it never had one).
    public let index: Int
    /// The manifest line it came from (0 for shards).
    public let line: Int
    /// Where it is: `line 12` of a manifest, or `shard.tar sample 000010005`.
    public let location: String
    /// The image error, when the image was what failed.
    public let error: ImageError?
    /// Why it was left out, one line.
    public let reason: String
    /// The image file, or the shard.
    public let path: String

    init(index: Int, line: Int, location: String, path: String, error: ImageError) {
        self.init(index: index, line: line, location: location, path: path, reason: error.explanation, error: error)
    }

    init(index: Int, line: Int, location: String, path: String, reason: String, error: ImageError? = nil) {
        self.index = index
        self.line = line
        self.location = location
        self.path = path
        self.reason = reason
        self.error = error
    }

    public var description: String { error.map { "\(location): \($0)" } ?? "\(location): \(reason)" }

    /// Why, and where in its file: `line 12: …` for a manifest (whose path the log names
    /// beside it), the description for shards.
    public var detail: String { line > 0 ? "line \(line): \(reason)" : description }
}

/// One batch of samples, ready for the model.
public struct PairBatch {
    /// `[count, 3, size, size]`, normalised.
    public let images: Tensor
    /// A second, independently augmented view of each image (`extraView` loaders only): the
    /// other view of SimCLR/BYOL.
    public let views: Tensor?
    /// `[count, contextLength]` token ids; `[count, 0]` without captions or tokenizer.
    public let ids: IntTensor
    /// The samples' manifest indices (shards: sample ids), in batch order.
    public let indices: [Int]
    /// The samples' names: image paths of a manifest, `__key__`s of shards.
    public let names: [String]
    /// The samples' captions (empty without a caption column).
    public let captions: [String]
    public let epoch: Int
    /// The batch's index within its epoch.
    public let index: Int
    /// Images that failed while this batch was filled (each replaced by a later sample).
    public let skipped: [SkippedImage]
    /// The position after this batch: save it with a checkpoint taken after training on it.
    public let next: LoaderPosition
    /// A class id per sample (a manifest's label column), for a multi-positive loss.
    public var labels: [Int64]?
    /// The image tower's output before normalisation `[count, embed_dim]`, when the trainer has it
    /// cached (LiT); the loader then leaves the images of cached samples zero.
    public var imageFeatures: Tensor?

    public var count: Int { indices.count }
}

extension PairBatch {
    /// A batch made by hand (tests, custom batch sources): samples numbered from 0, nothing skipped.
    public init(images: Tensor, ids: IntTensor, views: Tensor? = nil, labels: [Int64]? = nil) {
        self.init(
            images: images, views: views, ids: ids, indices: Array(0..<ids.shape[0]), names: [], captions: [], epoch: 0, index: 0,
            skipped: [], next: .start, labels: labels)
    }
}

/// Loads image–caption batches ahead of the training loop, from either sample source: a
/// manifest (`init(training:order:…)`) or WebDataset shards (`init(training:shards:…)`). Both
/// hand the loader a *feed* of samples by stream position; this one engine decodes them in
/// parallel into batch slots, refills after failures and prefetches.
///
/// **Threads.** `threads` threads (default `Threads.count`) decode, augment and tokenise: one
/// composes batches in order and shares each batch's images with the others. They keep at most
/// `prefetch` finished batches waiting (default 2) and sleep while the queue is full, so they use
/// the cores only while the training step is busy elsewhere or waiting for data.
///
/// **Determinism.** A batch depends only on the manifest, the files, the order (seed, epoch,
/// rank) and the transform — never on timing or thread count: sample `i` of epoch `e` is
/// augmented with a seed derived from `(seed, e, i)`, and a batch is the first `batchSize`
/// samples *that load*, in stream order, from its start position.
///
/// **Bad images.** A missing or corrupt image is skipped (listed in `PairBatch.skipped`, and
/// once in `badImages`) and the batch takes the next sample of the stream, so training batches
/// stay full and each epoch keeps `order.batchesPerEpoch` batches. Later epochs skip a known-bad
/// image without reading it again (the same outcome, sooner). When `maxFailuresInARow`
/// (default: the batch size) images in a row fail, or a rank's whole stream cannot fill a
/// batch, the loader stops with `DataError.tooManyBadImages`.
///
/// **Training** visits `order`'s shuffled batches from `start`, epoch after epoch, until
/// `epochs` (exclusive) or forever. **Evaluation** visits the samples in manifest (shard) order
/// with no augmentation and keeps the last, partial batch.
public final class PairLoader {
    public let transform: ImageTransform
    /// The manifest's order (nil for shards and for evaluation).
    public let order: EpochOrder?
    public let batchSize: Int
    public let contextLength: Int
    /// Threads that decode and tokenise (the composing thread included).
    public let threads: Int
    public let prefetch: Int
    /// Whether the threads run at idle priority (see `init(training:…)`).
    public let background: Bool
    /// Full batches per epoch (nil for evaluation).
    public let batchesPerEpoch: Int?

    private let producer: Producer
    private let queue: BatchQueue
    private let done = DispatchSemaphore(value: 0)
    private var stopped = false

    /// A training loader over `order`'s batches (use `ImageTransform.train(size:)`: augmentation, fast decode).
    /// `background`: run the threads at idle priority (Linux SCHED_IDLE), so they decode only
    /// on cores the training step leaves idle and never slow its kernels down. `skipsImage`:
    /// samples (by manifest index) whose image the consumer already has in another form (cached
    /// features); they are tokenised only, and their image rows are zeros.
    public convenience init(
        training manifest: Manifest, order: EpochOrder, transform: ImageTransform,
        tokenizer: Tokenizer, contextLength: Int? = nil, start: LoaderPosition = .start,
        epochs: Int? = nil, threads: Int = Threads.count, prefetch: Int = 2,
        background: Bool = false, maxFailuresInARow: Int? = nil, extraView: Bool = false,
        skipsImage: (@Sendable (Int) -> Bool)? = nil
    ) throws {
        precondition(order.sampleCount == manifest.count, "order made for \(order.sampleCount) samples, manifest has \(manifest.count)")
        guard manifest.captions != nil else { throw DataError.noCaptions(path: manifest.path) }
        try Self.check(start, batches: order.batchesPerEpoch, batchSize: order.batchSize)
        try self.init(
            feed: ManifestFeed(manifest, order: order), transform: transform, order: order, seed: order.seed,
            batchesPerEpoch: order.batchesPerEpoch, batchSize: order.batchSize,
            tokenizer: tokenizer, contextLength: contextLength, start: start, epochs: epochs,
            threads: threads, prefetch: prefetch, background: background, maxFailuresInARow: maxFailuresInARow,
            extraView: extraView, skipsImage: skipsImage)
    }

    /// A training loader over shards in `order` (see `ShardOrder`): the same batches, augmentation
    /// and failure handling as for a manifest, except that by default only a whole epoch of
    /// failures in a row stops it (a shard of broken images must not end a long run).
    public convenience init(
        training shards: ShardSet, order: ShardOrder, transform: ImageTransform,
        tokenizer: Tokenizer, contextLength: Int? = nil, start: LoaderPosition = .start,
        epochs: Int? = nil, threads: Int = Threads.count, prefetch: Int = 2,
        background: Bool = false, maxFailuresInARow: Int? = nil, extraView: Bool = false
    ) throws {
        try Self.check(start, batches: order.batchesPerEpoch, batchSize: order.batchSize)
        try self.init(
            feed: ShardFeed(shards, order: order), transform: transform, order: nil, seed: order.seed,
            batchesPerEpoch: order.batchesPerEpoch, batchSize: order.batchSize,
            tokenizer: tokenizer, contextLength: contextLength, start: start, epochs: epochs,
            threads: threads, prefetch: prefetch, background: background,
            maxFailuresInARow: maxFailuresInARow ?? (order.epochSize / order.worldSize + 1), extraView: extraView)
    }

    /// An evaluation loader: manifest order, the last batch partial (use `ImageTransform.eval(size:)`:
    /// center crop, exact decode). Without a tokenizer (or captions) it loads images only.
    public convenience init(
        evaluating manifest: Manifest, batchSize: Int, transform: ImageTransform,
        tokenizer: Tokenizer?, contextLength: Int? = nil, threads: Int = Threads.count,
        prefetch: Int = 2, background: Bool = false, maxFailuresInARow: Int? = nil
    ) throws {
        try self.init(
            feed: ManifestFeed(manifest, order: nil), transform: transform, order: nil, seed: 0, batchesPerEpoch: nil,
            batchSize: batchSize, tokenizer: manifest.captions == nil ? nil : tokenizer, contextLength: contextLength,
            start: .start, epochs: nil, threads: threads, prefetch: prefetch, background: background,
            maxFailuresInARow: maxFailuresInARow, extraView: false)
    }

    /// An evaluation loader over every usable sample of `shards`, shard by shard in the given order.
    public convenience init(
        evaluating shards: ShardSet, batchSize: Int, transform: ImageTransform,
        tokenizer: Tokenizer?, contextLength: Int? = nil, threads: Int = Threads.count,
        prefetch: Int = 2, background: Bool = false, maxFailuresInARow: Int? = nil
    ) throws {
        try self.init(
            feed: ShardFeed(shards, order: nil), transform: transform, order: nil, seed: 0, batchesPerEpoch: nil,
            batchSize: batchSize, tokenizer: tokenizer, contextLength: contextLength,
            start: .start, epochs: nil, threads: threads, prefetch: prefetch, background: background,
            maxFailuresInARow: maxFailuresInARow, extraView: false)
    }

    /// A loader over image files in the order given (no captions): `indices` are positions in
    /// `files`, and an unreadable file is listed in `skipped` and never stops the loader.
    /// `seed` seeds an augmenting transform (sample `i` draws from `(seed, i)`).
    public convenience init(
        evaluating files: [String], batchSize: Int, transform: ImageTransform, threads: Int = Threads.count,
        seed: UInt64 = 0, prefetch: Int = 2
    ) throws {
        try self.init(
            feed: FileListFeed(files), transform: transform, order: nil, seed: seed, batchesPerEpoch: nil,
            batchSize: batchSize, tokenizer: nil, contextLength: nil, start: .start, epochs: nil,
            threads: max(1, min(threads, files.count)), prefetch: prefetch, background: false,
            maxFailuresInARow: .max, extraView: false)
    }

    private static func check(_ start: LoaderPosition, batches: Int, batchSize: Int) throws {
        guard start.epoch >= 0, start.batch >= 0, start.batch < batches, start.cursor >= start.batch * batchSize else {
            throw DataError.badPosition("\(start) is outside an epoch of \(batches) batches of \(batchSize)")
        }
    }

    private init(
        feed: SampleFeed, transform: ImageTransform, order: EpochOrder?, seed: UInt64, batchesPerEpoch: Int?,
        batchSize: Int, tokenizer: Tokenizer?, contextLength: Int?, start: LoaderPosition, epochs: Int?,
        threads: Int, prefetch: Int, background: Bool, maxFailuresInARow: Int?, extraView: Bool,
        skipsImage: (@Sendable (Int) -> Bool)? = nil
    ) throws {
        precondition(batchSize > 0, "batch size must be positive")
        precondition(!extraView || skipsImage == nil, "a second view needs every image decoded")
        precondition(threads > 0, "thread count must be positive")
        precondition(prefetch > 0, "prefetch depth must be positive")
        self.transform = transform
        self.order = order
        self.batchSize = batchSize
        self.batchesPerEpoch = batchesPerEpoch
        self.contextLength = tokenizer == nil ? 0 : (contextLength ?? tokenizer!.contextLength)
        self.threads = threads
        self.prefetch = prefetch
        self.background = background
        queue = BatchQueue(capacity: prefetch)
        producer = Producer(
            feed: feed, transform: transform, tokenizer: tokenizer,
            contextLength: self.contextLength, seed: seed, batchesPerEpoch: batchesPerEpoch, batchSize: batchSize,
            start: start, epochs: epochs, threads: threads, background: background,
            failureLimit: maxFailuresInARow ?? batchSize, queue: queue, extraView: extraView, skipsImage: skipsImage)
        let producer = self.producer, done = self.done
        do {
            try Threads.spawn("mm-data-0") {
                producer.run()
                done.signal()
            }
        } catch {
            stopped = true
            throw error
        }
    }

    deinit { stop() }

    /// The next batch, waiting for it if needed; nil at the end (the `epochs` limit, or the end
    /// of an evaluation pass). Throws the error that stopped the loader, after the batches before it.
    public func next() throws -> PairBatch? {
        if stopped { return nil }
        return try queue.take()
    }

    /// Every image found bad so far, by sample index (each once).
    public var badImages: [SkippedImage] { producer.badImages }

    /// Stops the threads (after the batch being built) and drops prefetched batches.
    public func stop() {
        if stopped { return }
        stopped = true
        queue.cancel()
        done.wait()
    }
}

/// One sample as a feed hands it to the loader: what to decode and tokenise, and who it is.
struct FeedSample {
    /// Seeds the sample's augmentation (with the run seed and epoch) and keys the known-bad list.
    var id: Int
    var image: ImageInput
    var caption: String?
    /// Manifest line (0 for shards).
    var line: Int
    /// `line 12`, or `shard.tar sample KEY`, for the log.
    var location: String
    /// The image path (manifest) or `__key__` (shards).
    var name: String
    /// Known unusable before decoding (e.g. a caption that is not UTF-8).
    var failure: String?
}

/// The sample source behind a loader, by position in one rank's stream of an epoch.
protocol SampleFeed: AnyObject {
    /// The samples at positions `start ..< start + count` of `epoch`'s stream; fewer only at the
    /// end of a finite (evaluation) stream. Training streams never end.
    func samples(epoch: Int, from start: Int, count: Int) throws -> [FeedSample]
    /// Positions per epoch before the stream wraps, when finite: a batch that cannot fill in one
    /// pass over them never will.
    var streamLength: Int? { get }
    /// Samples dropped before they reached the loader (shards: members without caption or image,
    /// damaged archives) since the last call.
    func drainSkips() -> [SkippedImage]
}

/// A manifest's samples in `EpochOrder`'s stream (training) or in file order (evaluation).
final class ManifestFeed: SampleFeed {
    let manifest: Manifest
    let order: EpochOrder?
    private var permutation: [Int] = []
    private var permutationEpoch = -1

    init(_ manifest: Manifest, order: EpochOrder?) {
        self.manifest = manifest
        self.order = order
    }

    var streamLength: Int? { order?.streamLength }

    func samples(epoch: Int, from start: Int, count: Int) throws -> [FeedSample] {
        var indices: [Int]
        if let order {
            if permutationEpoch != epoch {
                permutation = order.permutation(epoch: epoch)
                permutationEpoch = epoch
            }
            indices = (start..<start + count).map { order.sample(at: $0, in: permutation) }
        } else {
            indices = Array(start..<min(start + count, manifest.count))
        }
        return indices.map { i in
            let path = manifest.images[i]
            return FeedSample(
                id: i, image: .file(path), caption: manifest.captions?[i], line: manifest.lines[i],
                location: "line \(manifest.lines[i])", name: path, failure: nil)
        }
    }

    func drainSkips() -> [SkippedImage] { [] }
}

/// Image files in the order given, each its own location.
final class FileListFeed: SampleFeed {
    let files: [String]

    init(_ files: [String]) { self.files = files }

    var streamLength: Int? { nil }

    func samples(epoch: Int, from start: Int, count: Int) throws -> [FeedSample] {
        (start..<min(start + count, files.count)).map { i in
            FeedSample(id: i, image: .file(files[i]), caption: nil, line: 0, location: files[i], name: files[i], failure: nil)
        }
    }

    func drainSkips() -> [SkippedImage] { [] }
}

/// Builds batches in order on the loader's first thread, with the others decoding alongside.
private final class Producer: @unchecked Sendable {
    let feed: SampleFeed
    let tokenizer: Tokenizer?
    let contextLength: Int
    let seed: UInt64
    let batchesPerEpoch: Int?
    let batchSize: Int
    let epochs: Int?
    let failureLimit: Int
    let queue: BatchQueue
    let pipelines: [ImagePipeline]
    let threads: Int
    let background: Bool
    let planeCount: Int
    let size: Int
    let extraView: Bool
    let skipsImage: (@Sendable (Int) -> Bool)?

    private var position: LoaderPosition
    private var failuresInARow = 0
    private let badLock = NSLock()
    private var bad: [Int: SkippedImage] = [:]

    init(
        feed: SampleFeed, transform: ImageTransform, tokenizer: Tokenizer?, contextLength: Int, seed: UInt64,
        batchesPerEpoch: Int?, batchSize: Int, start: LoaderPosition, epochs: Int?, threads: Int, background: Bool,
        failureLimit: Int, queue: BatchQueue, extraView: Bool, skipsImage: (@Sendable (Int) -> Bool)?
    ) {
        self.feed = feed
        self.extraView = extraView
        self.skipsImage = skipsImage
        self.tokenizer = tokenizer
        self.contextLength = contextLength
        self.seed = seed
        self.batchesPerEpoch = batchesPerEpoch
        self.batchSize = batchSize
        self.epochs = epochs
        self.failureLimit = max(1, failureLimit)
        self.queue = queue
        self.threads = threads
        self.background = background
        pipelines = (0..<threads).map { _ in ImagePipeline(transform: transform) }
        size = transform.size
        planeCount = 3 * transform.size * transform.size
        position = start
    }

    var badImages: [SkippedImage] {
        badLock.lock(); defer { badLock.unlock() }
        return bad.values.sorted { $0.index < $1.index }
    }

    struct Cancelled: Error {}

    func run() {
        if background { runAtIdlePriority() }
        let pool: WorkerPool
        do {
            pool = try WorkerPool(helpers: threads - 1, name: "mm-data", background: background)
        } catch {
            queue.finish(error)
            return
        }
        defer { pool.shutdown() }
        while true {
            do {
                guard let batch = try nextBatch(pool) else { queue.finish(); return }
                if !queue.put(batch) { return }
            } catch is Cancelled {
                return
            } catch {
                queue.finish(error)
                return
            }
        }
    }

    private func nextBatch(_ pool: WorkerPool) throws -> PairBatch? {
        if let batches = batchesPerEpoch {
            if let epochs, position.epoch >= epochs { return nil }
            let epoch = position.epoch
            let filled = try fill(pool, from: position.cursor, epoch: epoch, limit: feed.streamLength)
            let last = position.batch + 1 == batches
            let next =
                last
                ? LoaderPosition(epoch: epoch + 1, batch: 0, cursor: 0)
                : LoaderPosition(epoch: epoch, batch: position.batch + 1, cursor: filled.cursor)
            defer { position = next }
            return filled.batch(epoch: epoch, index: position.batch, next: next)
        } else {
            if position.epoch > 0 { return nil }
            let filled = try fill(pool, from: position.cursor, epoch: 0, limit: nil)
            let next =
                filled.ended
                ? LoaderPosition(epoch: 1, batch: 0, cursor: 0)
                : LoaderPosition(epoch: 0, batch: position.batch + 1, cursor: filled.cursor)
            defer { position = next }
            if filled.indices.isEmpty && filled.skipped.isEmpty { return nil }
            if filled.indices.isEmpty { position = next; return try nextBatch(pool) }
            return filled.batch(epoch: 0, index: position.batch, next: next)
        }
    }

    /// A batch under construction: images and ids for `batchSize` slots, the first `count` used.
    struct Filled {
        var images: TensorStorage
        var views: TensorStorage?
        var ids: [Int32]
        var indices: [Int]
        var names: [String]
        var captions: [String]
        var skipped: [SkippedImage]
        var cursor: Int
        var ended = false
        let batchSize: Int, planeCount: Int, size: Int, contextLength: Int

        func batch(epoch: Int, index: Int, next: LoaderPosition) -> PairBatch {
            let n = indices.count
            var storage = images, tokens = ids
            if n < batchSize {  // a partial (last evaluation) batch gets storage of its own size
                storage = TensorStorage(count: n * planeCount, zeroed: false)
                storage.base.update(from: images.base, count: n * planeCount)
                tokens.removeLast((batchSize - n) * contextLength)
            }
            return PairBatch(
                images: Tensor(shape: [n, 3, size, size], storage: storage),
                views: views.map { Tensor(shape: [n, 3, size, size], storage: $0) },
                ids: IntTensor(shape: [n, contextLength], values: tokens),
                indices: indices, names: names, captions: captions, epoch: epoch, index: index,
                skipped: skipped, next: next)
        }
    }

    /// Takes samples from stream positions `cursor…` until `batchSize` have loaded (or the feed
    /// ends). `limit`: the stream length; consuming more than that for one batch means it cannot fill.
    private func fill(_ pool: WorkerPool, from start: Int, epoch: Int, limit: Int?) throws -> Filled {
        let plane = planeCount, context = contextLength
        var out = Filled(
            images: TensorStorage(count: batchSize * plane, zeroed: false),
            views: extraView ? TensorStorage(count: batchSize * plane, zeroed: false) : nil,
            ids: [Int32](repeating: 0, count: batchSize * context), indices: [], names: [], captions: [],
            skipped: [], cursor: start, batchSize: batchSize, planeCount: plane, size: size,
            contextLength: context)
        out.indices.reserveCapacity(batchSize)
        var consumed = 0
        while out.indices.count < batchSize {
            let want = batchSize - out.indices.count
            if let limit, consumed + want > limit {
                throw DataError.tooManyBadImages(
                    count: out.skipped.count,
                    reason: "in one pass over this rank's \(limit) samples, too few left to fill a batch of \(batchSize)",
                    last: out.skipped.last?.description ?? "none")
            }
            if queue.isCancelled { throw Cancelled() }

            let first = out.indices.count
            let candidates = try feed.samples(epoch: epoch, from: out.cursor, count: want)
            out.skipped += feed.drainSkips()
            let got = candidates.count
            if got == 0 { out.ended = true; break }
            var errors = [String?](repeating: nil, count: got)
            var imageErrors = [ImageError?](repeating: nil, count: got)
            let skipsImage = candidates.map { self.skipsImage?($0.id) ?? false }
            badLock.lock()
            for j in 0..<got {
                if let known = bad[candidates[j].id] {
                    errors[j] = known.reason; imageErrors[j] = known.error
                } else if let failure = candidates[j].failure {
                    errors[j] = failure
                }
            }
            badLock.unlock()

            let images = out.images.base, views = out.views?.base
            let seed = self.seed
            out.ids.withUnsafeMutableBufferPointer { ids in
                errors.withUnsafeMutableBufferPointer { errors in
                    imageErrors.withUnsafeMutableBufferPointer { imageErrors in
                        let ids = ids.baseAddress!, errors = errors.baseAddress!, imageErrors = imageErrors.baseAddress!
                        pool.run(got) { worker, j in
                            if errors[j] != nil { return }  // known bad
                            let sample = candidates[j], slot = first + j
                            if skipsImage[j] {
                                (images + slot * plane).update(repeating: 0, count: plane)
                            } else {
                                do {
                                    let seed = Seeds.augmentation(seed: seed, epoch: epoch, sample: sample.id)
                                    try self.pipelines[worker].process(sample.image, into: images + slot * plane, seed: seed)
                                    if let views {  // the second view: the same image under another draw of the augmentation
                                        try self.pipelines[worker].process(
                                            sample.image, into: views + slot * plane, seed: Seeds.mix(seed ^ 0x5649_4557))
                                    }
                                } catch {
                                    let e = error as? ImageError ?? ImageError(path: sample.image.name, reason: .unreadable("\(error)"))
                                    imageErrors[j] = e
                                    errors[j] = e.explanation
                                    return
                                }
                            }
                            if let tokenizer = self.tokenizer, let caption = sample.caption {
                                tokenizer.tokenize([caption], contextLength: context, threads: 1, into: ids + slot * context)
                            }
                        }
                    }
                }
            }

            // Keep the loaded samples in stream order, closing the gaps the failures left.
            var slot = first
            for j in 0..<got {
                let sample = candidates[j]
                if let reason = errors[j] {
                    let skip = SkippedImage(
                        index: sample.id, line: sample.line, location: sample.location,
                        path: sample.image.name, reason: reason, error: imageErrors[j])
                    out.skipped.append(skip)
                    badLock.lock(); bad[sample.id] = skip; badLock.unlock()
                    failuresInARow += 1
                    if failuresInARow >= failureLimit {
                        throw DataError.tooManyBadImages(count: failuresInARow, reason: "in a row", last: skip.description)
                    }
                    continue
                }
                failuresInARow = 0
                if slot != first + j {
                    (images + slot * plane).update(from: images + (first + j) * plane, count: plane)
                    if let views { (views + slot * plane).update(from: views + (first + j) * plane, count: plane) }
                    out.ids.withUnsafeMutableBufferPointer { ids in
                        (ids.baseAddress! + slot * context).update(from: ids.baseAddress! + (first + j) * context, count: context)
                    }
                }
                out.indices.append(sample.id)
                out.names.append(sample.name)
                if let caption = sample.caption { out.captions.append(caption) }
                slot += 1
            }
            out.cursor += got
            consumed += got
            if got < want { out.ended = true; break }
        }
        return out
    }
}
