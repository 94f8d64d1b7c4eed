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
        let state = Dictionary(
            uniqueKeysWithValues: fixture.tensors.compactMap { key, t in
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

    /// The pooled stack (last block at one position per sequence) gives open_clip's rows at
    /// those positions, and the gradients of the full stack seeded only at those rows.
    @Test func transformerAtOnePosition() throws {
        let t = Transformer(width: 16, layers: 2, heads: 2)
        let prefix = "transformer.param."
        try t.load(
            Dictionary(
                uniqueKeysWithValues: fixture.tensors.compactMap { key, v in
                    key.hasPrefix(prefix) ? (String(key.dropFirst(prefix.count)), v) : nil
                }))
        let x = try #require(fixture.tensors["transformer.in.x"]).copy(requiresGrad: true)
        let (b, l, w) = (x.shape[0], x.shape[1], x.shape[2])
        let positions = IntTensor(shape: [b], values: (0..<b).map { Int32((3 * $0 + 1) % l) })
        let reference = try #require(fixture.tensors["transformer.out"]).gatherRows(positions)

        let tape = Tape()
        let y = tape.record { t(x, causal: true, at: positions) }
        expectClose("pooled forward", y, reference, atol: 2e-5)
        var g = SeededGenerator(seed: 3)
        let upstream = Tensor.zeros([b, w])
        upstream.fillNormal(std: 1, using: &g)
        tape.backward(y, seed: upstream)
        let pooledGrads = [x.grad!.copy()] + t.parameters.map { $0.grad!.copy() }

        x.grad = nil
        for p in t.parameters { p.grad = nil }
        let full = Tape()
        let yFull = full.record { t(x, causal: true) }
        let seed = Tensor.zeros(yFull.shape)
        for i in 0..<b {
            (seed.data + (i * l + Int(positions.values[i])) * w).update(from: upstream.data + i * w, count: w)
        }
        full.backward(yFull, seed: seed)
        let fullGrads = [x.grad!] + t.parameters.map { $0.grad! }
        for (n, (a, e)) in zip(pooledGrads, fullGrads).enumerated() {
            expectClose("pooled gradient \(n)", a, e, atol: 1e-5)
        }
    }
}
