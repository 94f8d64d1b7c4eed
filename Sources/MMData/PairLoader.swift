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

/// An image that could not be loaded and was left out of its batch.
public struct SkippedImage: Sendable, Equatable, CustomStringConvertible {
    /// The sample's index in the manifest.
    public let index: Int
    /// The manifest line it came from.
    public let line: Int
    /// Names the file and the reason.
    public let error: ImageError

    public var path: String { error.path }
    public var description: String { "line \(line): \(error)" }
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
    /// The samples' manifest indices, in batch order.
    public let indices: [Int]
    /// The samples' captions (empty without a caption column).
    public let captions: [String]
    public let epoch: Int
    /// The batch's index within its epoch.
    public let index: Int
    /// Images that failed while this batch was filled (each replaced by a later sample).
    public let skipped: [SkippedImage]
    /// The position after this batch: save it with a checkpoint taken after training on it.
    public let next: LoaderPosition

    public var count: Int { indices.count }
}

/// Loads image–caption batches ahead of the training loop.
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
/// `epochs` (exclusive) or forever. **Evaluation** visits the samples in manifest order with no
/// augmentation and keeps the last, partial batch.
public final class PairLoader {
    public let manifest: Manifest
    public let transform: ImageTransform
    /// nil for an evaluation loader.
    public let order: EpochOrder?
    public let batchSize: Int
    public let contextLength: Int
    /// Threads that decode and tokenise (the composing thread included).
    public let threads: Int
    public let prefetch: Int
    /// Whether the threads run at idle priority (see `init(training:…)`).
    public let background: Bool

    private let producer: Producer
    private let queue: BatchQueue
    private let done = DispatchSemaphore(value: 0)
    private var stopped = false

    /// A training loader over `order`'s batches (use `ImageTransform.train(size:)`: augmentation, fast decode).
    /// `background`: run the threads at idle priority (Linux SCHED_IDLE), so they decode only
    /// on cores the training step leaves idle and never slow its kernels down.
    public convenience init(training manifest: Manifest, order: EpochOrder, transform: ImageTransform,
                            tokenizer: Tokenizer, contextLength: Int? = nil, start: LoaderPosition = .start,
                            epochs: Int? = nil, threads: Int = Threads.count, prefetch: Int = 2,
                            background: Bool = false, maxFailuresInARow: Int? = nil, extraView: Bool = false) throws {
        precondition(order.sampleCount == manifest.count, "order made for \(order.sampleCount) samples, manifest has \(manifest.count)")
        guard manifest.captions != nil else { throw DataError.noCaptions(path: manifest.path) }
        guard start.epoch >= 0, start.batch >= 0, start.batch < order.batchesPerEpoch, start.cursor >= start.batch * order.batchSize else {
            throw DataError.badPosition("\(start) is outside an epoch of \(order.batchesPerEpoch) batches of \(order.batchSize)")
        }
        try self.init(manifest: manifest, transform: transform, order: order, batchSize: order.batchSize,
                      tokenizer: tokenizer, contextLength: contextLength, start: start, epochs: epochs,
                      threads: threads, prefetch: prefetch, background: background, maxFailuresInARow: maxFailuresInARow,
                      extraView: extraView)
    }

    /// An evaluation loader: manifest order, the last batch partial (use `ImageTransform.eval(size:)`:
    /// center crop, exact decode). Without a tokenizer (or captions) it loads images only.
    public convenience init(evaluating manifest: Manifest, batchSize: Int, transform: ImageTransform,
                            tokenizer: Tokenizer?, contextLength: Int? = nil, threads: Int = Threads.count,
                            prefetch: Int = 2, background: Bool = false, maxFailuresInARow: Int? = nil) throws {
        try self.init(manifest: manifest, transform: transform, order: nil, batchSize: batchSize,
                      tokenizer: manifest.captions == nil ? nil : tokenizer, contextLength: contextLength,
                      start: .start, epochs: nil, threads: threads, prefetch: prefetch, background: background,
                      maxFailuresInARow: maxFailuresInARow, extraView: false)
    }

    private init(manifest: Manifest, transform: ImageTransform, order: EpochOrder?, batchSize: Int,
                 tokenizer: Tokenizer?, contextLength: Int?, start: LoaderPosition, epochs: Int?,
                 threads: Int, prefetch: Int, background: Bool, maxFailuresInARow: Int?, extraView: Bool) throws {
        precondition(batchSize > 0, "batch size must be positive")
        precondition(threads > 0, "thread count must be positive")
        precondition(prefetch > 0, "prefetch depth must be positive")
        self.manifest = manifest
        self.transform = transform
        self.order = order
        self.batchSize = batchSize
        self.contextLength = tokenizer == nil ? 0 : (contextLength ?? tokenizer!.contextLength)
        self.threads = threads
        self.prefetch = prefetch
        self.background = background
        queue = BatchQueue(capacity: prefetch)
        producer = Producer(manifest: manifest, transform: transform, tokenizer: tokenizer,
                            contextLength: self.contextLength, order: order, batchSize: batchSize,
                            start: start, epochs: epochs, threads: threads, background: background,
                            failureLimit: maxFailuresInARow ?? batchSize, queue: queue, extraView: extraView)
        let producer = self.producer, done = self.done
        let thread = Thread {
            producer.run()
            done.signal()
        }
        thread.name = "mm-data-0"
        thread.start()
    }

    deinit { stop() }

    /// The next batch, waiting for it if needed; nil at the end (the `epochs` limit, or the end
    /// of an evaluation pass). Throws the error that stopped the loader, after the batches before it.
    public func next() throws -> PairBatch? {
        if stopped { return nil }
        return try queue.take()
    }

    /// Every image found bad so far, by manifest index (each once).
    public var badImages: [SkippedImage] { producer.badImages }

    /// Stops the threads (after the batch being built) and drops prefetched batches.
    public func stop() {
        if stopped { return }
        stopped = true
        queue.cancel()
        done.wait()
    }
}

/// Builds batches in order on the loader's first thread, with the others decoding alongside.
private final class Producer: @unchecked Sendable {
    let manifest: Manifest
    let tokenizer: Tokenizer?
    let contextLength: Int
    let order: EpochOrder?
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

    private var position: LoaderPosition
    private var permutation: [Int] = []
    private var permutationEpoch = -1
    private var failuresInARow = 0
    private let badLock = NSLock()
    private var bad: [Int: SkippedImage] = [:]

    init(manifest: Manifest, transform: ImageTransform, tokenizer: Tokenizer?, contextLength: Int, order: EpochOrder?,
         batchSize: Int, start: LoaderPosition, epochs: Int?, threads: Int, background: Bool, failureLimit: Int,
         queue: BatchQueue, extraView: Bool) {
        self.manifest = manifest
        self.extraView = extraView
        self.tokenizer = tokenizer
        self.contextLength = contextLength
        self.order = order
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
        let pool = WorkerPool(helpers: threads - 1, name: "mm-data", background: background)
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
        if let order {
            if let epochs, position.epoch >= epochs { return nil }
            if permutationEpoch != position.epoch {
                permutation = order.permutation(epoch: position.epoch)
                permutationEpoch = position.epoch
            }
            let permutation = self.permutation
            let epoch = position.epoch
            let filled = try fill(pool, from: position.cursor, end: nil, epoch: epoch, limit: order.streamLength,
                                  sampleAt: { order.sample(at: $0, in: permutation) })
            let last = position.batch + 1 == order.batchesPerEpoch
            let next = last ? LoaderPosition(epoch: epoch + 1, batch: 0, cursor: 0)
                            : LoaderPosition(epoch: epoch, batch: position.batch + 1, cursor: filled.cursor)
            defer { position = next }
            return filled.batch(epoch: epoch, index: position.batch, next: next)
        } else {
            guard position.cursor < manifest.count else { return nil }
            let filled = try fill(pool, from: position.cursor, end: manifest.count, epoch: 0, limit: nil, sampleAt: { $0 })
            if filled.indices.isEmpty { return nil }
            let next = LoaderPosition(epoch: 0, batch: position.batch + 1, cursor: filled.cursor)
            defer { position = next }
            return filled.batch(epoch: 0, index: position.batch, next: next)
        }
    }

    /// A batch under construction: images and ids for `batchSize` slots, the first `count` used.
    struct Filled {
        var images: TensorStorage
        var views: TensorStorage?
        var ids: [Int32]
        var indices: [Int]
        var captions: [String]
        var skipped: [SkippedImage]
        var cursor: Int
        let batchSize: Int, planeCount: Int, size: Int, contextLength: Int

        func batch(epoch: Int, index: Int, next: LoaderPosition) -> PairBatch {
            let n = indices.count
            var storage = images, tokens = ids
            if n < batchSize {  // a partial (last evaluation) batch gets storage of its own size
                storage = TensorStorage(count: n * planeCount, zeroed: false)
                storage.base.update(from: images.base, count: n * planeCount)
                tokens.removeLast((batchSize - n) * contextLength)
            }
            return PairBatch(images: Tensor(shape: [n, 3, size, size], storage: storage),
                             views: views.map { Tensor(shape: [n, 3, size, size], storage: $0) },
                             ids: IntTensor(shape: [n, contextLength], values: tokens),
                             indices: indices, captions: captions, epoch: epoch, index: index,
                             skipped: skipped, next: next)
        }
    }

    /// Takes samples from stream positions `cursor…` until `batchSize` have loaded (or `end`).
    /// `limit`: the stream length; consuming more than that for one batch means it cannot fill.
    private func fill(_ pool: WorkerPool, from start: Int, end: Int?, epoch: Int, limit: Int?,
                      sampleAt: (Int) -> Int) throws -> Filled {
        let plane = planeCount, context = contextLength
        var out = Filled(images: TensorStorage(count: batchSize * plane, zeroed: false),
                         views: extraView ? TensorStorage(count: batchSize * plane, zeroed: false) : nil,
                         ids: [Int32](repeating: 0, count: batchSize * context), indices: [], captions: [],
                         skipped: [], cursor: start, batchSize: batchSize, planeCount: plane, size: size,
                         contextLength: context)
        out.indices.reserveCapacity(batchSize)
        var consumed = 0
        while out.indices.count < batchSize {
            var want = batchSize - out.indices.count
            if let end { want = min(want, end - out.cursor) }
            if want == 0 { break }
            if let limit, consumed + want > limit {
                throw DataError.tooManyBadImages(count: out.skipped.count,
                                                 reason: "in one pass over this rank's \(limit) samples, too few left to fill a batch of \(batchSize)",
                                                 last: out.skipped.last?.description ?? "none")
            }
            if queue.isCancelled { throw Cancelled() }

            let first = out.indices.count
            let candidates = (0..<want).map { sampleAt(out.cursor + $0) }
            var errors = [ImageError?](repeating: nil, count: want)
            badLock.lock()
            for j in 0..<want { errors[j] = bad[candidates[j]]?.error }
            badLock.unlock()

            let images = out.images.base, views = out.views?.base
            out.ids.withUnsafeMutableBufferPointer { ids in
                errors.withUnsafeMutableBufferPointer { errors in
                    let ids = ids.baseAddress!, errors = errors.baseAddress!
                    pool.run(want) { worker, j in
                        if errors[j] != nil { return }  // known bad
                        let sample = candidates[j], slot = first + j
                        let path = self.manifest.images[sample]
                        do {
                            let seed = Seeds.augmentation(seed: self.order?.seed ?? 0, epoch: epoch, sample: sample)
                            try self.pipelines[worker].process(path: path, into: images + slot * plane, seed: seed)
                            if let views {  // the second view: the same image under another draw of the augmentation
                                try self.pipelines[worker].process(path: path, into: views + slot * plane, seed: Seeds.mix(seed ^ 0x5649_4557))
                            }
                        } catch let error as ImageError {
                            errors[j] = error
                            return
                        } catch {
                            errors[j] = ImageError(path: path, reason: .unreadable("\(error)"))
                            return
                        }
                        if let tokenizer = self.tokenizer, let captions = self.manifest.captions {
                            tokenizer.tokenize([captions[sample]], contextLength: context, threads: 1, into: ids + slot * context)
                        }
                    }
                }
            }

            // Keep the loaded samples in stream order, closing the gaps the failures left.
            var slot = first
            for j in 0..<want {
                let sample = candidates[j]
                if let error = errors[j] {
                    let skip = SkippedImage(index: sample, line: manifest.lines[sample], error: error)
                    out.skipped.append(skip)
                    badLock.lock(); bad[sample] = skip; badLock.unlock()
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
                out.indices.append(sample)
                if let captions = manifest.captions { out.captions.append(captions[sample]) }
                slot += 1
            }
            out.cursor += want
            consumed += want
        }
        return out
    }
}
