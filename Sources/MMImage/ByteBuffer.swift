import Foundation

/// A raw byte buffer reused from image to image. It grows to the largest need seen, but gives
/// memory back when one outsized image would otherwise pin it for the rest of a run.
final class ByteBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int

    /// Kernels read up to this many bytes past the end (whole SIMD vectors, odd filter taps).
    static let slack = 64

    init(capacity: Int = 0) {
        self.capacity = capacity
        base = .allocate(capacity: capacity + Self.slack)
        base.initialize(repeating: 0, count: capacity + Self.slack)
    }

    deinit { base.deallocate() }

    /// Makes room for `count` bytes; the previous contents are not kept.
    func reserve(_ count: Int) {
        if count <= capacity && capacity <= max(4 * count, 32 << 20) { return }
        base.deallocate()
        capacity = count
        base = .allocate(capacity: count + Self.slack)
        // Zeroed so that over-reads into the slack never see uninitialised memory.
        (base + count).initialize(repeating: 0, count: Self.slack)
    }

    /// Keeps the first `count` bytes while growing to at least `newCount`.
    func grow(keeping count: Int, to newCount: Int) {
        guard newCount > capacity else { return }
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCount + Self.slack)
        bigger.update(from: base, count: count)
        (bigger + newCount).initialize(repeating: 0, count: Self.slack)
        base.deallocate()
        base = bigger
        capacity = newCount
    }
}
