import Foundation
import MMTensor

/// The ranks of a data-parallel run as threads of one process: `ThreadGroup.make(size:)` gives
/// one group per rank; run each rank's work on its own thread. Collectives meet at a barrier,
/// read each other's buffers in place and meet again before returning, so sums are taken in rank
/// order and every rank gets bitwise the same result (as with MPI on two ranks).
public final class ThreadGroup: ProcessGroup {
    public let rank: Int
    public var size: Int { hub.size }
    private let hub: Hub

    /// One group per rank of a `size`-rank job; `timeout` bounds each wait for the other ranks.
    public static func make(size: Int, timeout: TimeInterval = 120) -> [ThreadGroup] {
        precondition(size >= 1, "a group of \(size) ranks")
        let hub = Hub(size: size, timeout: timeout)
        return (0..<size).map { ThreadGroup(rank: $0, hub: hub) }
    }

    private init(rank: Int, hub: Hub) {
        self.rank = rank
        self.hub = hub
    }

    /// Runs `body(group)` for every rank on its own thread and returns the ranks' results in
    /// rank order, or rethrows the first rank's error.
    public static func run<R>(size: Int, timeout: TimeInterval = 120, _ body: @escaping (ThreadGroup) throws -> R) throws -> [R] {
        let groups = make(size: size, timeout: timeout)
        let results = RankResults<R>(size), done = DispatchGroup()
        var refused: Error?
        for group in groups {
            done.enter()
            do {
                try Threads.spawn("mm-rank-\(group.rank)", stackSize: 16 << 20) {
                    results.set(group.rank, Result { try body(group) })
                    done.leave()
                }
            } catch {
                // The ranks already started end when their collectives time out.
                done.leave()
                refused = error
                break
            }
        }
        done.wait()
        if let refused { throw refused }
        return try results.values.map { try $0!.get() }
    }

    /// The ranks' results, filled by their threads.
    private final class RankResults<R>: @unchecked Sendable {
        let lock = NSLock()
        var values: [Result<R, Error>?]
        init(_ size: Int) { values = Array(repeating: nil, count: size) }
        func set(_ rank: Int, _ r: Result<R, Error>) { lock.withLock { values[rank] = r } }
    }

    // MARK: - ProcessGroup

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        let n = buffer.count
        let sum = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { sum.deallocate() }
        try hub.exchange(rank, UnsafeRawPointer(buffer.baseAddress), "all-reduce of \(n) floats") { peers in
            sum.update(repeating: 0)
            for p in peers {
                let x = p!.assumingMemoryBound(to: Float.self)
                for i in 0..<n { sum[i] += x[i] }
            }
        }
        _ = buffer.update(fromContentsOf: sum)  // every rank has read the buffers by now
    }

    public func allGather(_ local: UnsafeRawBufferPointer, into all: UnsafeMutableRawBufferPointer) throws {
        precondition(all.count == local.count * size, "all-gather into \(all.count) bytes of \(local.count) × \(size)")
        let n = local.count
        try hub.exchange(rank, local.baseAddress, "all-gather of \(n) bytes") { peers in
            for (r, p) in peers.enumerated() where n > 0 { (all.baseAddress! + r * n).copyMemory(from: p!, byteCount: n) }
        }
    }

    public func reduceScatterSum(_ all: UnsafeBufferPointer<Float>, into local: UnsafeMutableBufferPointer<Float>) throws {
        precondition(all.count == local.count * size, "reduce-scatter of \(all.count) floats into \(local.count) × \(size)")
        let n = local.count, first = rank * n
        try hub.exchange(rank, UnsafeRawPointer(all.baseAddress), "reduce-scatter of \(all.count) floats") { peers in
            local.update(repeating: 0)
            for p in peers {
                let x = p!.assumingMemoryBound(to: Float.self) + first
                for i in 0..<n { local[i] += x[i] }
            }
        }
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws {
        try hub.exchange(rank, UnsafeRawPointer(bytes.baseAddress), "broadcast of \(bytes.count) bytes") { peers in
            if rank != root, bytes.count > 0 { bytes.baseAddress!.copyMemory(from: peers[root]!, byteCount: bytes.count) }
        }
    }

    public func barrier() throws { try hub.meet(rank, "barrier") }

    // MARK: - The meeting point

    final class Hub {
        let size: Int
        let timeout: TimeInterval
        private let condition = NSCondition()
        private var arrived = 0
        private var generation = 0
        private var slots: [UnsafeRawPointer?]

        init(size: Int, timeout: TimeInterval) {
            self.size = size
            self.timeout = timeout
            slots = [UnsafeRawPointer?](repeating: nil, count: size)
        }

        /// Posts `pointer`, waits for every rank's, runs `read` on all of them (in rank order), and
        /// waits until every rank has read before returning (the buffers stay valid until then).
        func exchange(_ rank: Int, _ pointer: UnsafeRawPointer?, _ what: String, read: ([UnsafeRawPointer?]) -> Void) throws {
            condition.lock()
            slots[rank] = pointer
            condition.unlock()
            try meet(rank, what)
            condition.lock()
            let peers = slots
            condition.unlock()
            read(peers)
            try meet(rank, what)
        }

        /// Returns once all ranks have called it (a barrier), or throws after `timeout`.
        func meet(_ rank: Int, _ what: String) throws {
            condition.lock()
            defer { condition.unlock() }
            let mine = generation
            arrived += 1
            if arrived == size {
                arrived = 0
                generation += 1
                condition.broadcast()
                return
            }
            let deadline = Date().addingTimeInterval(timeout)
            while generation == mine {
                if !condition.wait(until: deadline) && generation == mine {
                    throw DistributedError.timedOut(rank: rank, operation: what, seconds: timeout)
                }
            }
        }
    }
}
