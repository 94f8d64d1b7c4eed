import Foundation
import MMTensor
import MMTestSupport
import Testing

/// Every op's forward and backward against PyTorch (Fixtures/ops.safetensors, written by
/// tools/make_tensor_fixtures.py). Tolerance: |ours − torch| ≤ 1e-5 + 1e-4·|torch|, the
/// round-off of float32 kernels that sum in a different order. The convolutional tower's ops
/// (conv2d, avg_pool2d, batch_norm2d) hold |ours − torch| ≤ 1e-5 absolute (5.7e-6 seen, on weight
/// gradients of magnitude 23), and the running statistics ≤ 1e-6 (1.2e-7 seen).
@Suite struct GoldenOpsTests {
    let fixture: Safetensors
    init() throws { fixture = try loadFixture("ops.safetensors", bundle: .module) }

    var cases: [String] {
        (try? JSONDecoder().decode([String].self, from: Data((fixture.metadata["cases"] ?? "[]").utf8))) ?? []
    }

    /// Builds the op a case names from its inputs.
    func run(_ name: String, _ x: [String: Tensor], _ ids: [String: IntTensor]) -> Tensor? {
        let attrs = Attributes(fixture, name)
        switch name {
        case let n where n.hasPrefix("matmul"):
            return .matmul(x["a"]!, x["b"]!, transposeA: attrs.bool("transpose_a"), transposeB: attrs.bool("transpose_b"))
        case let n where n.hasPrefix("add"): return x["a"]! + x["b"]!
        case let n where n.hasPrefix("sub"): return x["a"]! - x["b"]!
        case let n where n.hasPrefix("mul"): return x["a"]! * x["b"]!
        case "scale": return x["x"]!.scaled(by: attrs.float("scale"))
        case "sum": return x["x"]!.sum()
        case "mean": return x["x"]!.mean()
        case "reshape": return x["x"]!.reshaped(attrs.ints("shape"))
        case "permute", "transpose": return x["x"]!.permuted(attrs.ints("dims"))
        case "slice": return x["x"]!.slice(axis: attrs.int("axis"), attrs.int("start")..<attrs.int("end"))
        case let n where n.hasPrefix("concat"): return .concatenate([x["a"]!, x["b"]!], axis: attrs.int("axis"))
        case "embedding": return .embedding(x["weight"]!, ids: ids["ids"]!)
        case "layernorm": return x["x"]!.layerNorm(weight: x["weight"]!, bias: x["bias"]!, eps: attrs.float("eps"))
        case "gelu": return x["x"]!.gelu()
        case "quickgelu": return x["x"]!.quickGelu()
        case "softmax": return x["x"]!.softmax()
        case "log_softmax": return x["x"]!.logSoftmax()
        case let n where n.hasPrefix("attention"):
            return .attention(qkv: x["qkv"]!, heads: attrs.int("heads"), causal: attrs.bool("causal"))
        case "l2norm": return x["x"]!.l2Normalized()
        case "cross_entropy": return x["logits"]!.crossEntropy(targets: ids["targets"]!)
        case "exp": return x["x"]!.exp()
        case "gather_rows": return x["x"]!.gatherRows(ids["index"]!)
        case let n where n.hasPrefix("conv2d"):
            return x["x"]!.conv2d(x["weight"]!, stride: attrs.int("stride"), padding: attrs.int("padding"))
        case let n where n.hasPrefix("avg_pool2d"): return x["x"]!.avgPool2d(attrs.int("kernel"))
        case let n where n.hasPrefix("batch_norm2d"):
            let (mean, variance) = runningStatistics(name)
            return batchNorm(name, x, mean, variance)
        default: return nil
        }
    }

    /// A batch-norm case's running statistics before torch's op, copied so that the op may update them.
    func runningStatistics(_ name: String) -> (mean: Tensor, variance: Tensor) {
        (fixture.tensors["\(name).state.running_mean"]!.copy(), fixture.tensors["\(name).state.running_var"]!.copy())
    }

    func batchNorm(_ name: String, _ x: [String: Tensor], _ mean: Tensor, _ variance: Tensor) -> Tensor {
        let attrs = Attributes(fixture, name)
        return x["x"]!.batchNorm2d(
            weight: x["weight"]!, bias: x["bias"]!, runningMean: mean, runningVar: variance,
            training: attrs.bool("training"), momentum: attrs.float("momentum"), eps: attrs.float("eps"),
            relu: attrs.bool("relu"))
    }

    /// Training updates the running statistics in place as torch does (the variance unbiased);
    /// evaluation leaves them untouched.
    @Test func batchNormRunningStatisticsMatchPyTorch() throws {
        let names = cases.filter { $0.hasPrefix("batch_norm2d") }
        #expect(names.count == 3)
        for name in names {
            var inputs: [String: Tensor] = [:]
            for key in ["x", "weight", "bias"] { inputs[key] = try #require(fixture.tensors["\(name).in.\(key)"]) }
            let (mean, variance) = runningStatistics(name)
            _ = batchNorm(name, inputs, mean, variance)
            if Attributes(fixture, name).bool("training") {
                expectClose("\(name) running mean", mean, fixture.tensors["\(name).state_out.running_mean"], atol: 1e-6, rtol: 0)
                expectClose("\(name) running var", variance, fixture.tensors["\(name).state_out.running_var"], atol: 1e-6, rtol: 0)
            } else {
                #expect(mean.scalars == fixture.tensors["\(name).state.running_mean"]?.scalars, "\(name) running mean")
                #expect(variance.scalars == fixture.tensors["\(name).state.running_var"]?.scalars, "\(name) running var")
            }
        }
    }

    /// The fused linear + activation with W = I and b = 0 is the activation alone: checked
    /// against torch's gelu / quickgelu cases, forward and ∂x.
    @Test func fusedLinearActivationMatchesPyTorch() throws {
        for (name, f) in [("gelu", Activation.gelu), ("quickgelu", .quickGelu)] {
            let x = try #require(fixture.tensors["\(name).in.x"]).copy(requiresGrad: true)
            let d = x.shape.last!
            let identity = Tensor.zeros([d, d])
            for i in 0..<d { identity.data[i * d + i] = 1 }
            let tape = Tape()
            let out = tape.record { Tensor.linear(x, weight: identity, bias: .zeros([d]), activation: f) }
            expectClose("fused \(name) forward", out, fixture.tensors["\(name).out"])
            tape.backward(out, seed: try #require(fixture.tensors["\(name).grad_out"]))
            expectClose("fused \(name) ∂x", x.grad, fixture.tensors["\(name).grad.x"])
        }
    }

    @Test func fixtureCoversEveryOp() {
        #expect(cases.count >= 30, "ops fixture lists \(cases.count) cases")
    }

    @Test func forwardAndBackwardMatchPyTorch() throws {
        for name in cases {
            var inputs: [String: Tensor] = [:], ids: [String: IntTensor] = [:]
            for (key, t) in fixture.tensors where key.hasPrefix("\(name).in.") {
                inputs[String(key.dropFirst("\(name).in.".count))] = t.copy(requiresGrad: true)
            }
            for (key, t) in fixture.ids where key.hasPrefix("\(name).ids.") {
                ids[String(key.dropFirst("\(name).ids.".count))] = t
            }
            let tape = Tape()
            guard let out = tape.record({ run(name, inputs, ids) }) else {
                Issue.record("no op for fixture case \(name)")
                continue
            }
            let convolutional = ["conv2d", "avg_pool2d", "batch_norm2d"].contains { name.hasPrefix($0) }
            let (atol, rtol): (Float, Float) = convolutional ? (1e-5, 0) : (1e-5, 1e-4)
            expectClose("\(name) forward", out, fixture.tensors["\(name).out"], atol: atol, rtol: rtol)
            let upstream = try #require(fixture.tensors["\(name).grad_out"], "\(name).grad_out")
            tape.backward(out, seed: upstream)
            for (input, t) in inputs {
                expectClose("\(name) ∂\(input)", t.grad, fixture.tensors["\(name).grad.\(input)"], atol: atol, rtol: rtol)
            }
        }
    }
}
