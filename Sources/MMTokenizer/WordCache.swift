/// The BPE result of each word seen so far, keyed by the word's bytes: one open-addressing table
/// over two arenas (key bytes and ids), so a lookup hashes the bytes in place and allocates nothing.
/// Not thread-safe: each worker owns one. Clears itself when full, bounding memory on endless input.
final class WordCache {
    /// 16 bytes, so more of the table stays in cache: lookups are mostly memory latency.
    private struct Entry {
        var hash: UInt32 = 0  // 0 marks an empty slot
        var keyOffset: UInt32 = 0
        var idOffset: UInt32 = 0
        var keyLength: UInt16 = 0
        var idCount: UInt16 = 0
    }

    private var slots: UnsafeMutablePointer<Entry>
    private var mask: Int
    private var count = 0
    private var keys: UnsafeMutablePointer<UInt8>
    private var keyCapacity: Int
    private var keyUsed = 0
    private var ids: UnsafeMutablePointer<Int32>
    private var idCapacity: Int
    private var idUsed = 0

    /// Entries kept before the cache starts over.
    static let maxEntries = 1 << 18

    init() {
        mask = (1 << 12) - 1
        slots = .allocate(capacity: mask + 1)
        slots.initialize(repeating: Entry(), count: mask + 1)
        keyCapacity = 1 << 15
        keys = .allocate(capacity: keyCapacity)
        idCapacity = 1 << 13
        ids = .allocate(capacity: idCapacity)
    }

    deinit {
        slots.deallocate()
        keys.deallocate()
        ids.deallocate()
    }

    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt32 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(n)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= n {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(p[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 29
        return UInt32(truncatingIfNeeded: h >> 32) | 1
    }

    /// The cached ids of a word, if any.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt32) -> UnsafeBufferPointer<Int32>? {
        var i = Int(h) & mask
        while true {
            let e = slots[i]
            if e.hash == 0 { return nil }
            if e.hash == h && Int(e.keyLength) == n && WordCache.equal(keys + Int(e.keyOffset), p, n) {
                return UnsafeBufferPointer(start: ids + Int(e.idOffset), count: Int(e.idCount))
            }
            i = (i + 1) & mask
        }
    }

    /// Byte equality, eight at a time: words are short, so a libc call costs more than the compare.
    @inline(__always)
    static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        let x = UnsafeRawPointer(a), y = UnsafeRawPointer(b)
        var i = 0
        while i + 8 <= n {
            if x.loadUnaligned(fromByteOffset: i, as: UInt64.self) != y.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        while i < n {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt32, ids wordIDs: UnsafeBufferPointer<Int32>) {
        // Words too long for the compact entry are not cached (they are rare, and BPE'd anew).
        guard n <= Int(UInt16.max) && wordIDs.count <= Int(UInt16.max) else { return }
        if count >= WordCache.maxEntries || keyUsed + n > Int(UInt32.max) || idUsed + wordIDs.count > Int(UInt32.max) {
            clear()
        }
        if (count + 1) * 2 > mask + 1 { grow() }
        reserveKeys(n)
        reserveIDs(wordIDs.count)
        (keys + keyUsed).update(from: p, count: n)
        (ids + idUsed).update(from: wordIDs.baseAddress!, count: wordIDs.count)
        var i = Int(h) & mask
        while slots[i].hash != 0 { i = (i + 1) & mask }
        slots[i] = Entry(hash: h, keyOffset: UInt32(keyUsed), idOffset: UInt32(idUsed), keyLength: UInt16(n), idCount: UInt16(wordIDs.count))
        keyUsed += n
        idUsed += wordIDs.count
        count += 1
    }

    func clear() {
        slots.update(repeating: Entry(), count: mask + 1)
        count = 0
        keyUsed = 0
        idUsed = 0
    }

    private func grow() {
        let old = slots, oldSize = mask + 1
        mask = oldSize * 2 - 1
        slots = .allocate(capacity: mask + 1)
        slots.initialize(repeating: Entry(), count: mask + 1)
        for k in 0..<oldSize where old[k].hash != 0 {
            var i = Int(old[k].hash) & mask
            while slots[i].hash != 0 { i = (i + 1) & mask }
            slots[i] = old[k]
        }
        old.deallocate()
    }

    private func reserveKeys(_ n: Int) { reserve(&keys, used: keyUsed, capacity: &keyCapacity, adding: n) }

    private func reserveIDs(_ n: Int) { reserve(&ids, used: idUsed, capacity: &idCapacity, adding: n) }
}

/// Grows `buffer` (doubling) so that `used + n` elements fit, keeping the first `used`.
private func reserve<T>(_ buffer: inout UnsafeMutablePointer<T>, used: Int, capacity: inout Int, adding n: Int) {
    guard used + n > capacity else { return }
    var grown = capacity * 2
    while used + n > grown { grown *= 2 }
    let fresh = UnsafeMutablePointer<T>.allocate(capacity: grown)
    fresh.update(from: buffer, count: used)
    buffer.deallocate()
    buffer = fresh
    capacity = grown
}
