import Dispatch
import Foundation

/// Runs model calls and searches one at a time on one thread, off the server's event loops: each
/// job already spreads its BLAS products over every core, so running two at once would only
/// oversubscribe them. Waiting jobs are bounded; past that a request is refused with 503.
final class ComputeQueue: @unchecked Sendable {
    private let queue = DispatchQueue(label: "mm.serve.compute", qos: .userInitiated)
    private let lock = NSLock()
    private var waiting = 0
    let maximumWaiting: Int

    init(maximumWaiting: Int) { self.maximumWaiting = maximumWaiting }

    /// Jobs queued or running now.
    var depth: Int { lock.withLock { waiting } }

    func run<T>(_ job: @escaping () throws -> T) async throws -> T {
        try lock.withLock {
            guard waiting < maximumWaiting else { throw ServeError(503, "busy: \(waiting) requests are waiting for the model; retry later") }
            waiting += 1
        }
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                defer { self.lock.withLock { self.waiting -= 1 } }
                continuation.resume(with: Result { try job() })
            }
        }
    }
}
