import Foundation
import MMNN
import MMTestSupport
import Testing

/// open_clip's ResidualAttentionBlock and Transformer against ours, forward and every gradient
/// (Fixtures/block.safetensors from tools/make_tensor_fixtures.py). Tolerance
/// |ours − torch| ≤ 2e-5 + 1e-4·|torch|: a block chains a dozen float32 reductions.
@Suite struct GoldenBlockTests {
    let fixture: Safetensors
    init() throws { fixture = try loadFixture("block.safetensors", bundle: .module) }

    /// Loads a case's parameters into `model` (strictly), runs it and compares everything.
    func check(_ name: String, _ model: Module, _ forward: (Tensor) -> Tensor) throws {
        let prefix = "\(name).param."
        let state = Dictionary(uniqueKeysWithValues: fixture.tensors.compactMap { key, t in
            key.hasPrefix(prefix) ? (String(key.dropFirst(prefix.count)), t) : nil
        })
        try model.load(state)
        let x = try #require(fixture.tensors["\(name).in.x"]).copy(requiresGrad: true)
        let tape = Tape()
        let y = tape.record { forward(x) }
        expectClose("\(name) forward", y, fixture.tensors["\(name).out"], atol: 2e-5)
        let upstream = try #require(fixture.tensors["\(name).grad_out"])
        tape.backward(y, seed: upstream)
        expectClose("\(name) ∂x", x.grad, fixture.tensors["\(name).grad.x"], atol: 2e-5)
        for (key, p) in model.namedParameters() {
            expectClose("\(name) ∂\(key)", p.grad, fixture.tensors["\(name).grad.param.\(key)"], atol: 2e-5)
        }
    }

    @Test func block() throws {
        let b = ResidualAttentionBlock(width: 16, heads: 2)
        try check("block", b) { b($0, causal: false) }
    }

    @Test func causalBlock() throws {
        let b = ResidualAttentionBlock(width: 16, heads: 2)
        try check("block_causal", b) { b($0, causal: true) }
    }

    @Test func quickGeluBlock() throws {
        let b = ResidualAttentionBlock(width: 16, heads: 2, activation: .quickGelu)
        try check("block_quickgelu", b) { b($0, causal: false) }
    }

    @Test func transformerStack() throws {
        let t = Transformer(width: 16, layers: 2, heads: 2)
        try check("transformer", t) { t($0, causal: true) }
    }
}
