import Foundation

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
