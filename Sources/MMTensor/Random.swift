import Foundation

/// A small, fast, seedable generator (SplitMix64) whose whole state is one integer, so that
/// training can checkpoint and resume it exactly.
public struct SeededGenerator: RandomNumberGenerator, Sendable, Codable, Equatable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Standard normal, by Box–Muller.
    public mutating func normal() -> Float {
        let u = Double(next() >> 11) * 0x1p-53, v = Double(next() >> 11) * 0x1p-53
        return Float((-2 * Foundation.log(1 - u)).squareRoot() * Foundation.cos(2 * .pi * v))
    }
}

extension Tensor {
    /// Fills in place with N(mean, std²) draws.
    public func fillNormal(mean: Float = 0, std: Float, using g: inout SeededGenerator) {
        for i in 0..<count { data[i] = mean + std * g.normal() }
    }

    /// Fills in place with U(low, high) draws.
    public func fillUniform(_ low: Float, _ high: Float, using g: inout SeededGenerator) {
        for i in 0..<count { data[i] = low + (high - low) * g.uniform() }
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }
}
