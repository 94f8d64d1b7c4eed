import Foundation
import MMNN
import MMTestSupport
import Testing

/// Five AdamW steps on fc → LayerNorm with loss mean((y − t)²), against torch.optim.AdamW
/// (Fixtures/adamw.safetensors): β (0.9, 0.98), eps 1e-6, weight decay 0.2 on fc.weight only.
@Suite struct AdamWTests {
    final class Net: Module {
        let fc = Linear(6, 4)
        let ln = LayerNorm(4)
        func callAsFunction(_ x: Tensor) -> Tensor { ln(fc(x)) }
    }

    @Test func fiveStepsMatchTorch() throws {
        let f = try loadFixture("adamw.safetensors", bundle: .module)
        let net = Net()
        let initial = Dictionary(
            uniqueKeysWithValues: f.tensors.compactMap { k, t in
                k.hasPrefix("init.") ? (String(k.dropFirst(5)), t) : nil
            })
        try net.load(initial)
        let opt = AdamW(net, weightDecay: 0.2)
        #expect(opt.groups[0].parameters.map { $0 === net.fc.weight } == [true])
        let x = try #require(f.tensors["in.x"]), t = try #require(f.tensors["in.t"])
        let losses = try #require(f.tensors["loss"])
        for step in 1...5 {
            opt.zeroGradients()
            let tape = Tape()
            let loss = tape.record { () -> Tensor in
                let d = net(x) - t
                return (d * d).mean()
            }
            expectClose("loss before step \(step)", loss, Tensor.scalar(losses.data[step - 1]), atol: 1e-6)
            tape.backward(loss)
            for (key, p) in net.namedParameters() {
                expectClose("step \(step) ∂\(key)", p.grad, f.tensors["grad\(step).\(key)"], atol: 1e-6)
            }
            opt.update(lr: 1e-2)
            for (key, p) in net.namedParameters() {
                expectClose("step \(step) \(key)", p, f.tensors["step\(step).\(key)"], atol: 1e-6, rtol: 1e-5)
            }
        }
    }
}
