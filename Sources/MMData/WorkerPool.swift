import Foundation
import MMFoundation

/// A few dedicated threads that share one job at a time with the thread that posts it.
/// The loader uses its own threads rather than Dispatch's shared pool so that decoding never
/// queues behind (or starves) the training step's parallel kernels, and so that exactly
/// `helpers + 1` threads do data work.
final class WorkerPool: @unchecked Sendable {
    private let condition = NSCondition()
    private var body: ((_ worker: Int, _ item: Int) -> Void)?
    private var items = 0, claimed = 0, finished = 0
    private var stopping = false
    private var running: Int

    /// Throws `ThreadError` when a helper cannot be started (the ones already started are stopped).
    init(helpers: Int, name: String, background: Bool) throws {
        running = 0
        for worker in stride(from: 1, through: helpers, by: 1) {
            do {
                try Threads.spawn("\(name)-\(worker)") { [self] in
                    if background { runAtIdlePriority() }
                    helperLoop(worker)
                }
            } catch {
                shutdown()
                throw error
            }
            condition.withLock { running += 1 }
        }
    }

    /// Runs `body(worker, item)` for every item of `0..<count` on the caller (worker 0) and the
    /// helpers (workers 1…); returns when all are done. Items are claimed one at a time, since
    /// images vary in cost.
    func run(_ count: Int, _ body: @escaping (_ worker: Int, _ item: Int) -> Void) {
        condition.lock()
        self.body = body
        items = count
        claimed = 0
        finished = 0
        condition.broadcast()
        condition.unlock()
        work(as: 0)
        condition.lock()
        while finished < items { condition.wait() }
        self.body = nil
        condition.unlock()
    }

    /// Stops the helpers and waits for them to exit.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    private func work(as worker: Int) {
        while true {
            condition.lock()
            guard let body, claimed < items else { condition.unlock(); return }
            let item = claimed
            claimed += 1
            condition.unlock()
            body(worker, item)
            condition.lock()
            finished += 1
            if finished == items { condition.broadcast() }
            condition.unlock()
        }
    }

    private func helperLoop(_ worker: Int) {
        while true {
            condition.lock()
            while !stopping && (body == nil || claimed >= items) { condition.wait() }
            if stopping {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            condition.unlock()
            work(as: worker)
        }
    }
}

/// Moves the calling thread to Linux's SCHED_IDLE class: it gets a core only when no normal
/// thread wants one, so it cannot delay a training step's kernels (nor make one of their
/// parallel chunks a straggler). Elsewhere a no-op.
func runAtIdlePriority() {
    #if os(Linux)
        var parameters = sched_param()
        let idle: Int32 = 5  // SCHED_IDLE in <sched.h>, which Swift's Glibc module does not export
        _ = pthread_setschedparam(pthread_self(), idle, &parameters)
    #endif
}

/// The bounded hand-over between the producing thread and the training loop.
final class BatchQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [PairBatch] = []
    private var ended = false
    private var failure: Error?
    private var cancelled = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var isCancelled: Bool {
        condition.lock(); defer { condition.unlock() }
        return cancelled
    }

    /// Waits for room; false when the consumer has gone.
    func put(_ batch: PairBatch) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while items.count >= capacity && !cancelled { condition.wait() }
        if cancelled { return false }
        items.append(batch)
        condition.broadcast()
        return true
    }

    /// No more batches: the end of the data, or an error the consumer sees after the batches before it.
    func finish(_ error: Error? = nil) {
        condition.lock(); defer { condition.unlock() }
        ended = true
        failure = error
        condition.broadcast()
    }

    func take() throws -> PairBatch? {
        condition.lock(); defer { condition.unlock() }
        while items.isEmpty && !ended { condition.wait() }
        if !items.isEmpty {
            condition.broadcast()
            return items.removeFirst()
        }
        if let failure { throw failure }
        return nil
    }

    func cancel() {
        condition.lock(); defer { condition.unlock() }
        cancelled = true
        items.removeAll()
        condition.broadcast()
    }
}
