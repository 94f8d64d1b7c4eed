import Foundation
import MMCLIP
import MMFoundation

/// LiT's precomputed image features. With the image tower locked and images not augmented, a
/// sample's image-tower output is the same every epoch, so the trainer computes it once — the
/// first time it trains on the sample — and reads it back after that; the loader then neither
/// decodes the image nor runs the tower (`LoaderSource` asks `contains`).
///
/// Rows are the tower's output before normalisation (what the objective consumes), by manifest
/// index: one `dimension`-float row per sample. They are held in RAM up to `memoryLimit` bytes,
/// else in a scratch file in `directory` (memory-mapped, unlinked at once; see `ScratchMap`),
/// allocated on the first store. The cache lives as long as the process: a resumed run
/// recomputes the features, so it can never use those of other weights or another transform.
/// Lookups are safe from any thread (the loader's while the trainer stores).
public final class ImageFeatureCache: @unchecked Sendable {
    public let sampleCount: Int
    public let dimension: Int
    /// Whether the rows live in a file (more than `memoryLimit` bytes) rather than in RAM.
    public let onDisk: Bool
    let directory: URL
    private var rows: UnsafeMutablePointer<Float>?
    private var scratch: ScratchMap?
    private var present: [Bool]
    private var stored = 0
    private let lock = NSLock()

    public init(sampleCount: Int, dimension: Int, memoryLimit: Int, directory: URL) {
        precondition(sampleCount > 0 && dimension > 0, "an image feature cache needs samples and a dimension")
        self.sampleCount = sampleCount
        self.dimension = dimension
        self.directory = directory
        onDisk = sampleCount * dimension * MemoryLayout<Float>.size > memoryLimit
        present = [Bool](repeating: false, count: sampleCount)
    }

    deinit { if scratch == nil { rows?.deallocate() } }

    /// Samples whose features are stored.
    public var count: Int { lock.withLock { stored } }

    /// Whether every sample's features are stored.
    public var isComplete: Bool { count == sampleCount }

    public func contains(_ sample: Int) -> Bool {
        lock.withLock { sample >= 0 && sample < sampleCount && present[sample] }
    }

    /// Stores row i of `features` [n, dimension] as sample `samples[i]`'s, unless that one is stored already.
    func store(_ features: Tensor, samples: [Int]) throws {
        precondition(features.shape == [samples.count, dimension], "features \(features.shape) for \(samples.count) samples of \(dimension)")
        let rows = try storage()
        lock.withLock {
            for (i, s) in samples.enumerated() where !present[s] {
                (rows + s * dimension).update(from: features.data + i * dimension, count: dimension)
                present[s] = true
                stored += 1
            }
        }
    }

    /// The stored rows of `samples`, in order: [n, dimension].
    func features(_ samples: [Int]) -> Tensor {
        let out = Tensor.zeros([samples.count, dimension])
        lock.withLock {
            for (i, s) in samples.enumerated() {
                precondition(present[s], "no cached image features for sample \(s)")
                (out.data + i * dimension).update(from: rows! + s * dimension, count: dimension)
            }
        }
        return out
    }

    private func storage() throws -> UnsafeMutablePointer<Float> {
        if let rows { return rows }
        let floats = sampleCount * dimension
        if onDisk {
            let map = try ScratchMap(size: floats * MemoryLayout<Float>.size, in: directory.path)
            scratch = map
            rows = map.bytes.baseAddress!.bindMemory(to: Float.self, capacity: floats)
        } else {
            rows = .allocate(capacity: floats)
        }
        return rows!
    }
}
