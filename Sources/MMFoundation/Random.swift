import Foundation

/// SplitMix64: a small, fast, seedable generator whose whole state is one integer, so that
/// training can checkpoint and resume it exactly. Every seeded stream in mm comes from here.
public struct SeededGenerator: RandomNumberGenerator, Sendable, Codable, Equatable {
    public var state: UInt64

    /// The generator whose first output is `finalize(seed + increment)`.
    public init(seed: UInt64) { state = seed }

    /// The stream for item `index` of a run seeded with `seed` (one per sample, so results do
    /// not depend on which thread takes which item).
    public init(seed: UInt64, index: Int) {
        state = Self.finalize(seed ^ Self.finalize(UInt64(truncatingIfNeeded: index) &+ 0x632B_E59B_D9B4_E019))
    }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= Self.increment
        return Self.finalize(state)
    }

    /// The golden-ratio step between successive states.
    public static let increment: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// SplitMix64's output function: a bijection on UInt64 that scatters nearby inputs.
    @inlinable @inline(__always)
    public static func finalize(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// One SplitMix64 step from state `x` (`SeededGenerator(seed: x).next()`): for deriving
    /// independent seeds from a seed and a tag.
    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 { finalize(x &+ increment) }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Standard normal, by Box–Muller.
    public mutating func normal() -> Float {
        let u = Double(next() >> 11) * 0x1p-53, v = Double(next() >> 11) * 0x1p-53
        return Float((-2 * Foundation.log(1 - u)).squareRoot() * Foundation.cos(2 * .pi * v))
    }
}
