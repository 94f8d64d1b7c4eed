import Dispatch
import Foundation
import MMTensor

/// One batch of images: `pixels` is `[B, 3, size, size]`; a sample that failed to load is left
/// zero and listed in `failures` (a training run skips and counts these).
public struct ImageBatch {
    public let pixels: Tensor
    public let failures: [(index: Int, error: ImageError)]
}

/// Decodes and transforms batches of files in parallel into one contiguous float buffer.
/// The buffer is reused: the tensor a call returns is overwritten by the next call with the
/// same batch size, so copy it (or finish with it) first.
public final class ImageBatchLoader {
    public let transform: ImageTransform
    public let threads: Int
    private let pipelines: [ImagePipeline]
    private var buffer: Tensor?

    public init(transform: ImageTransform, threads: Int = Threads.count) {
        precondition(threads > 0, "thread count must be positive")
        self.transform = transform
        self.threads = threads
        pipelines = (0..<threads).map { _ in ImagePipeline(transform: transform) }
    }

    /// Loads `paths` into `[paths.count, 3, size, size]`. Sample `i` is augmented with the
    /// stream `SeededGenerator(seed: seed, index: i)` — pass a new seed per batch and epoch.
    public func load(_ paths: [String], seed: UInt64 = 0) -> ImageBatch {
        let size = transform.size
        let shape = [paths.count, 3, size, size]
        let out: Tensor
        if let b = buffer, b.shape == shape { out = b } else { out = Tensor.zeros(shape); buffer = out }
        let sampleCount = 3 * size * size
        let base = out.data

        let next = Counter()
        let failures = FailureList()
        let workers = min(threads, paths.count)
        let body = { (worker: Int) in
            let pipeline = self.pipelines[worker]
            while case let i = next.take(), i < paths.count {
                let dst = base + i * sampleCount
                do {
                    try pipeline.process(path: paths[i], into: dst, seed: SeededGenerator(seed: seed, index: i).seedValue)
                } catch let error as ImageError {
                    dst.update(repeating: 0, count: sampleCount)
                    failures.add(i, error)
                } catch {
                    dst.update(repeating: 0, count: sampleCount)
                    failures.add(i, ImageError(path: paths[i], reason: .unreadable("\(error)")))
                }
            }
        }
        if workers <= 1 {
            if !paths.isEmpty { body(0) }
        } else {
            DispatchQueue.concurrentPerform(iterations: workers, execute: body)
        }
        return ImageBatch(pixels: out, failures: failures.sorted())
    }
}

extension SeededGenerator {
    /// A single seed value summarising this stream, for `ImagePipeline.process(seed:)`.
    var seedValue: UInt64 { var copy = self; return copy.next() }
}

/// The next unclaimed sample index, shared by the workers (images vary in cost, so workers
/// take one at a time rather than fixed slices).
private final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func take() -> Int {
        lock.lock(); defer { lock.unlock() }
        value += 1
        return value - 1
    }
}

private final class FailureList: @unchecked Sendable {
    private var items: [(index: Int, error: ImageError)] = []
    private let lock = NSLock()
    func add(_ index: Int, _ error: ImageError) {
        lock.lock(); defer { lock.unlock() }
        items.append((index, error))
    }
    func sorted() -> [(index: Int, error: ImageError)] { items.sorted { $0.index < $1.index } }
}
