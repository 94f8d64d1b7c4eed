import MMTensor

/// The order in which one data-parallel rank visits the samples, epoch by epoch.
///
/// - Epoch `e` shuffles all samples with a Fisher–Yates permutation driven by a generator seeded
///   from `(seed, e)` alone, so any epoch can be rebuilt on resume without replaying earlier ones.
/// - The permutation is cut into global batches of `batchSize × worldSize`; rank `r` takes every
///   `worldSize`-th sample of each, starting at `r`. So `n` ranks of batch `b` see exactly the
///   samples one rank of batch `n·b` sees, in the same global order.
/// - Batches are full: `batchesPerEpoch = count / globalBatchSize`, and the last partial global
///   batch is dropped (as open_clip does); the dropped samples differ from epoch to epoch.
/// - Beyond its batches, a rank's *stream* continues into the dropped tail and then wraps to the
///   epoch's start: that is where the loader takes replacements for images that fail to load.
public struct EpochOrder: Sendable, Equatable {
    public let sampleCount: Int
    /// Samples per batch on this rank.
    public let batchSize: Int
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int

    public init(sampleCount: Int, batchSize: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1) throws {
        precondition(batchSize > 0, "batch size must be positive")
        precondition(worldSize > 0 && rank >= 0 && rank < worldSize, "rank \(rank) outside world size \(worldSize)")
        if batchSize * worldSize > sampleCount {
            throw DataError.batchLargerThanData(batchSize: batchSize * worldSize, samples: sampleCount)
        }
        self.sampleCount = sampleCount
        self.batchSize = batchSize
        self.seed = seed
        self.rank = rank
        self.worldSize = worldSize
    }

    public var globalBatchSize: Int { batchSize * worldSize }
    public var batchesPerEpoch: Int { sampleCount / globalBatchSize }
    /// Samples left out of each epoch's batches.
    public var droppedPerEpoch: Int { sampleCount - batchesPerEpoch * globalBatchSize }

    /// Epoch `epoch`'s shuffle of `0..<sampleCount` (the same on every rank).
    public func permutation(epoch: Int) -> [Int] {
        var order = Array(0..<sampleCount)
        var rng = SeededGenerator(seed: Seeds.permutation(seed: seed, epoch: epoch))
        var i = sampleCount - 1
        while i > 0 {
            order.swapAt(i, Int(rng.below(UInt64(i + 1))))
            i -= 1
        }
        return order
    }

    /// Positions in this rank's stream per epoch before it wraps.
    public var streamLength: Int { (sampleCount - rank + worldSize - 1) / worldSize }

    /// The sample at `position` of this rank's stream over `permutation` (wrapping).
    @inline(__always)
    public func sample(at position: Int, in permutation: [Int]) -> Int {
        permutation[rank + worldSize * (position % streamLength)]
    }

    /// The samples of batch `index` when every image loads (the loader's batch when none fails).
    public func batch(_ index: Int, epoch: Int) -> [Int] {
        precondition(index >= 0 && index < batchesPerEpoch, "batch \(index) outside 0..<\(batchesPerEpoch)")
        let order = permutation(epoch: epoch)
        return (index * batchSize..<(index + 1) * batchSize).map { sample(at: $0, in: order) }
    }
}

/// Seeds derived from the run seed; each use has its own tag so streams never coincide.
enum Seeds {
    /// SplitMix64's step: a bijection on UInt64, so distinct inputs stay distinct.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 { SeededGenerator.mix(x) }

    static func permutation(seed: UInt64, epoch: Int) -> UInt64 {
        mix(mix(seed ^ 0x5045_524D) ^ UInt64(truncatingIfNeeded: epoch))
    }

    /// The augmentation seed of one sample in one epoch: independent of batch, slot and thread.
    static func augmentation(seed: UInt64, epoch: Int, sample: Int) -> UInt64 {
        mix(mix(mix(seed ^ 0x4155_474D) ^ UInt64(truncatingIfNeeded: epoch)) ^ UInt64(truncatingIfNeeded: sample))
    }
}

extension SeededGenerator {
    /// Uniform in `0..<bound` without modulo bias (Lemire's multiply-and-reject), written out
    /// so the permutation does not depend on the standard library's choice of algorithm.
    mutating func below(_ bound: UInt64) -> UInt64 {
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = next().multipliedFullWidth(by: bound) }
        }
        return product.high
    }
}
