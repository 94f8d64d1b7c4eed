import Foundation
import MMTensor
import Testing

/// Checks the tape's gradients of `f` against central finite differences.
///
/// The scalar probed is L = Σ r ∘ f(inputs) for a fixed random r, evaluated by the float kernels
/// and accumulated in Double; each input coordinate is perturbed by ±h and
/// ∂L/∂x ≈ (L(x+h) − L(x−h)) / 2h is formed in Double. Float forward passes limit the agreement
/// to about 1e-3 relative, so the tolerance is |numeric − analytic| ≤ atol + rtol·|numeric|.
public func checkGradients(
    _ label: String, _ inputs: [Tensor], h: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
    maxCoordinates: Int = 48, sourceLocation: SourceLocation = #_sourceLocation,
    _ f: ([Tensor]) -> Tensor
) {
    var rng = SeededGenerator(seed: 99)
    let tape = Tape()
    let y = tape.record { f(inputs) }
    let r = rng.tensor(y.shape, requiresGrad: false)
    for x in inputs { x.grad = nil }
    tape.backward(y, seed: r)

    func probe() -> Double {
        let out = withoutGradients { f(inputs) }
        var s: Double = 0
        for i in 0..<out.count { s += Double(out.data[i]) * Double(r.data[i]) }
        return s
    }

    for (n, x) in inputs.enumerated() where x.requiresGrad {
        let analytic = x.grad?.scalars ?? [Float](repeating: 0, count: x.count)
        let stride = max(1, x.count / maxCoordinates)
        var worst = 0.0
        for i in Swift.stride(from: 0, to: x.count, by: stride) {
            let saved = x.data[i]
            x.data[i] = saved + h
            let plus = probe()
            x.data[i] = saved - h
            let minus = probe()
            x.data[i] = saved
            let numeric = (plus - minus) / (2 * Double(h))
            let error = abs(numeric - Double(analytic[i]))
            worst = max(worst, error)
            #expect(
                error <= atol + rtol * abs(numeric),
                "\(label): input \(n) element \(i): numeric \(numeric) vs analytic \(analytic[i])",
                sourceLocation: sourceLocation)
            if error > atol + rtol * abs(numeric) { return }
        }
    }
}
