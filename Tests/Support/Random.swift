import MMTensor

extension SeededGenerator {
    /// A tensor of N(0, scale²) draws.
    public mutating func tensor(_ shape: [Int], scale: Float = 1, requiresGrad: Bool = true) -> Tensor {
        let t = Tensor.zeros(shape, requiresGrad: requiresGrad)
        t.fillNormal(std: scale, using: &self)
        return t
    }
}
