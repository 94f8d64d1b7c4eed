import Foundation

/// A contiguous, 64-byte aligned float32 buffer. Buffers are recycled through `BufferPool`,
/// because a training step allocates the same sizes every step and fresh pages cost page faults.
public final class TensorStorage: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let count: Int

    /// A buffer of `count` floats; its contents are undefined unless `zeroed`.
    public init(count: Int, zeroed: Bool) {
        precondition(count >= 0, "negative element count \(count)")
        self.count = count
        self.base = BufferPool.shared.take(count)
        if zeroed { base.update(repeating: 0, count: count) }
    }

    deinit { BufferPool.shared.give(base, count) }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: base, count: count) }
}

/// Free buffers keyed by exact element count, bounded in total size.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var cachedBytes = 0
    private let lock = NSLock()
    /// Enough for every activation of a CPU training step; beyond it buffers go back to malloc.
    private let capacityBytes = 4 << 30

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        lock.lock()
        if let p = free[count]?.popLast() {
            cachedBytes -= count * 4
            lock.unlock()
            return p
        }
        lock.unlock()
        var raw: UnsafeMutableRawPointer?
        let status = posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<Float>.stride)
        guard status == 0, let raw else { fatalError("out of memory allocating \(count) floats") }
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        lock.lock()
        if cachedBytes + count * 4 <= capacityBytes {
            free[count, default: []].append(p)
            cachedBytes += count * 4
            lock.unlock()
        } else {
            lock.unlock()
            Foundation.free(p)
        }
    }
}
