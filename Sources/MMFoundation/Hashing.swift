/// 64-bit FNV-1a. Bytes go in one at a time (the standard hash); `combine(word:)` mixes a
/// whole 64-bit word per multiply, which keeps checksums of large files fast.
public struct FNV1a: Sendable, Equatable {
    public static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    public static let prime: UInt64 = 0x0000_0100_0000_01B3

    public private(set) var value: UInt64

    public init(offsetBasis: UInt64 = FNV1a.offsetBasis) { value = offsetBasis }

    public mutating func combine(word: UInt64) { value = (value ^ word) &* Self.prime }

    public mutating func combine<S: Sequence>(bytes: S) where S.Element == UInt8 {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* Self.prime }
        value = h
    }

    /// Little-endian 64-bit words, then the tail bytes one at a time. Fed in pieces, every
    /// piece but the last must be a multiple of 8 bytes for the result to match one call.
    public mutating func combine(words raw: UnsafeRawBufferPointer) {
        let words = raw.count / 8
        var h = value
        for i in 0..<words { h = (h ^ UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))) &* Self.prime }
        for i in (words * 8)..<raw.count { h = (h ^ UInt64(raw[i])) &* Self.prime }
        value = h
    }

    /// The hash of a string's UTF-8 bytes.
    public static func hash(_ text: String, offsetBasis: UInt64 = FNV1a.offsetBasis) -> UInt64 {
        var h = FNV1a(offsetBasis: offsetBasis)
        h.combine(bytes: text.utf8)
        return h.value
    }

    /// 128 bits as 32 hex digits: two lanes with different offset bases (names cache entries).
    public static func hex128(_ text: String) -> String {
        let a = hash(text), b = hash(text, offsetBasis: 0x6C62_272E_07BB_0142)
        return hex(a) + hex(b)
    }

    public static func hex(_ v: UInt64) -> String {
        let digits = String(v, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
