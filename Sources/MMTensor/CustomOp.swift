// Ops defined outside MMTensor (e.g. collectives across processes) join the autodiff graph here.

extension Tensor {
    /// A tensor of `shape` filled by `forward`, recorded as a function of `inputs` when a tape
    /// wants their gradients. On backward, `backward` receives the output's gradient and, per
    /// input, its gradient buffer (nil for inputs that need none), into which it must add.
    public static func custom(
        shape: [Int], inputs: [Tensor],
        forward: (UnsafeMutablePointer<Float>) -> Void,
        backward: @escaping (_ outputGradient: UnsafePointer<Float>, _ inputGradients: [UnsafeMutablePointer<Float>?]) -> Void
    ) -> Tensor {
        let out = Tensor.result(shape)
        forward(out.data)
        if let tape = Tape.current, inputs.contains(where: \.requiresGrad) {
            tape.append(out) {
                backward(out.grad!.data, inputs.map { $0.requiresGrad ? $0.gradient().data : nil })
            }
        }
        return out
    }
}
