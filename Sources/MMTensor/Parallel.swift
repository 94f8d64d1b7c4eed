import CBLAS
import Dispatch
import Foundation

/// How many threads mm's kernels use. One pool serves our own kernels and BLAS: OpenBLAS runs
/// single-threaded and we split products across our threads, so the two never oversubscribe.
public enum Threads {
    /// `MM_THREADS` if set, else the number of online cores.
    public private(set) static var count: Int = {
        openblas_set_num_threads(1)
        if let s = ProcessInfo.processInfo.environment["MM_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }()

    /// Overrides the thread count for this process (e.g. one per MPI rank).
    public static func set(_ n: Int) {
        precondition(n > 0, "thread count must be positive")
        _ = count
        count = n
    }
}

/// Splits `0..<n` into at most `Threads.count` contiguous chunks of at least `grain` items and
/// runs `body` on each chunk in parallel.
@inline(__always)
func parallelFor(_ n: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = min(Threads.count, max(1, n / max(grain, 1)))
    if chunks <= 1 {
        if n > 0 { body(0..<n) }
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = n * c / chunks, hi = n * (c + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}
