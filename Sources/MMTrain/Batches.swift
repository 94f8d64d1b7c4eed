import MMCLIP
import MMData

/// Where batches come from: a deterministic sequence per epoch, resumable at any batch.
public protocol BatchSource: AnyObject {
    /// Full batches in one epoch.
    var batchesPerEpoch: Int { get }
    /// Positions the source at `batch` of `epoch` (0-based); `cursor`, if known, is where that
    /// batch starts in the epoch's sample stream (later than batch·size when samples were skipped).
    func start(epoch: Int, batch: Int, cursor: Int?) throws
    /// The next batch of the current epoch, or nil when it is exhausted.
    func next() throws -> PairBatch?
    /// Where the batch after the last one returned starts in the sample stream.
    var cursor: Int { get }
    /// Samples skipped since the last call.
    func drainSkipped() -> [SkippedImage]
}
