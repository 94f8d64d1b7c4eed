import CBLAS
import Dispatch
import Foundation

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
