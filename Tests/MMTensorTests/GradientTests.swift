import MMTensor
import MMTestSupport
import Testing

/// Finite-difference gradient checks for every differentiable op (see `checkGradients`).
@Suite struct GradientTests {
    var rng = SeededGenerator(seed: 1)

    @Test mutating func matmul() {
        checkGradients("nn", [rng.tensor([5, 7]), rng.tensor([7, 3])]) { Tensor.matmul($0[0], $0[1]) }
        checkGradients("nt", [rng.tensor([5, 7]), rng.tensor([3, 7])]) { Tensor.matmul($0[0], $0[1], transposeB: true) }
        checkGradients("tn", [rng.tensor([7, 5]), rng.tensor([7, 3])]) { Tensor.matmul($0[0], $0[1], transposeA: true) }
        checkGradients("tt", [rng.tensor([7, 5]), rng.tensor([3, 7])]) { Tensor.matmul($0[0], $0[1], transposeA: true, transposeB: true) }
        checkGradients("batched", [rng.tensor([2, 3, 4, 5]), rng.tensor([2, 3, 5, 2])]) { Tensor.matmul($0[0], $0[1]) }
        checkGradients("batched tt", [rng.tensor([2, 5, 4]), rng.tensor([2, 3, 5])]) {
            Tensor.matmul($0[0], $0[1], transposeA: true, transposeB: true)
        }
        checkGradients("linear", [rng.tensor([2, 4, 5]), rng.tensor([3, 5])]) { Tensor.matmul($0[0], $0[1], transposeB: true) }
        checkGradients("linear with bias", [rng.tensor([2, 4, 5]), rng.tensor([3, 5]), rng.tensor([3])]) {
            Tensor.linear($0[0], weight: $0[1], bias: $0[2])
        }
        for f in [Activation.gelu, .quickGelu] {
            checkGradients("linear + bias + \(f)", [rng.tensor([2, 4, 5]), rng.tensor([6, 5]), rng.tensor([6])]) {
                Tensor.linear($0[0], weight: $0[1], bias: $0[2], activation: f)
            }
        }
        checkGradients("shared b, transposed a", [rng.tensor([2, 5, 4]), rng.tensor([5, 3])]) { Tensor.matmul($0[0], $0[1], transposeA: true) }
    }

    @Test mutating func broadcastingArithmetic() {
        checkGradients("add", [rng.tensor([3, 4]), rng.tensor([3, 4])]) { $0[0] + $0[1] }
        // Same-size sums hand their gradient buffer on: an operand used twice, or again later.
        checkGradients("add self", [rng.tensor([3, 4])]) { $0[0] + $0[0] }
        checkGradients("add reused", [rng.tensor([3, 4]), rng.tensor([3, 4])]) { ($0[0] + $0[1]) + $0[0] }
        checkGradients("add bias", [rng.tensor([2, 3, 9]), rng.tensor([9])]) { $0[0] + $0[1] }
        checkGradients("sub", [rng.tensor([2, 3, 4]), rng.tensor([3, 4])]) { $0[0] - $0[1] }
        checkGradients("sub left", [rng.tensor([4]), rng.tensor([2, 3, 4])]) { $0[0] - $0[1] }
        checkGradients("mul", [rng.tensor([2, 3, 4]), rng.tensor([4])]) { $0[0] * $0[1] }
        checkGradients("mul same", [rng.tensor([3, 11]), rng.tensor([3, 11])]) { $0[0] * $0[1] }
        checkGradients("mul scalar", [rng.tensor([3, 4]), rng.tensor([])]) { $0[0] * $0[1] }
        checkGradients("scalar sub", [rng.tensor([]), rng.tensor([3, 4])]) { $0[0] - $0[1] }
    }

    @Test mutating func unary() {
        checkGradients("scale", [rng.tensor([3, 4])]) { $0[0].scaled(by: 0.37) }
        checkGradients("log sigmoid", [rng.tensor([3, 5], scale: 3)]) { $0[0].logSigmoid() }
        checkGradients("exp", [rng.tensor([3, 5], scale: 0.5)]) { $0[0].exp() }
        checkGradients("gelu", [rng.tensor([4, 9], scale: 2)]) { $0[0].gelu() }
        checkGradients("quickgelu", [rng.tensor([4, 9], scale: 2)]) { $0[0].quickGelu() }
        checkGradients("sum", [rng.tensor([3, 4])]) { $0[0].sum() }
        checkGradients("mean", [rng.tensor([3, 4])]) { $0[0].mean() }
    }

    @Test mutating func layout() {
        checkGradients("reshape", [rng.tensor([2, 3, 4])]) { $0[0].reshaped([6, -1]) }
        checkGradients("permute", [rng.tensor([2, 3, 4])]) { $0[0].permuted([2, 0, 1]) }
        checkGradients("transpose", [rng.tensor([2, 3, 4])]) { $0[0].transposed() }
        checkGradients("slice", [rng.tensor([4, 6])]) { $0[0].slice(axis: 1, 1..<4) }
        checkGradients("concat", [rng.tensor([2, 3]), rng.tensor([2, 5])]) { Tensor.concatenate($0, axis: 1) }
        checkGradients("concat 0", [rng.tensor([2, 3]), rng.tensor([4, 3])]) { Tensor.concatenate($0, axis: 0) }
    }

    @Test mutating func rowwise() {
        checkGradients("layernorm", [rng.tensor([3, 5, 11]), rng.tensor([11]), rng.tensor([11])]) {
            $0[0].layerNorm(weight: $0[1], bias: $0[2])
        }
        checkGradients("softmax", [rng.tensor([3, 7], scale: 2)]) { $0[0].softmax() }
        checkGradients("log softmax", [rng.tensor([3, 13], scale: 2)]) { $0[0].logSoftmax() }
        checkGradients("l2 normalise", [rng.tensor([3, 10])]) { $0[0].l2Normalized() }
    }

    @Test mutating func convolution() {
        // Kernel 1 (plain product when stride 1, unfolded when stride 2) and 3, with and without
        // padding; batch 2 takes one block per thread, batch 1 splits the products instead.
        for (k, stride, padding) in [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0), (3, 2, 0)] {
            for batch in [1, 2] {
                checkGradients(
                    "conv2d k\(k) s\(stride) p\(padding) batch \(batch)", [rng.tensor([batch, 3, 7, 6]), rng.tensor([5, 3, k, k], scale: 0.5)]
                ) {
                    $0[0].conv2d($0[1], stride: stride, padding: padding)
                }
            }
        }
        // An input and a weight used twice: the second backward accumulates onto the first's gradients.
        for (k, padding) in [(1, 0), (3, 1)] {
            checkGradients("conv2d k\(k) reused", [rng.tensor([3, 4, 5, 5]), rng.tensor([4, 4, k, k], scale: 0.5)]) {
                $0[0].conv2d($0[1], padding: padding).conv2d($0[1], padding: padding) + $0[0]
            }
        }
        checkGradients("avg pool 2", [rng.tensor([2, 3, 6, 8])]) { $0[0].avgPool2d(2) }
        checkGradients("avg pool 3, remainder dropped", [rng.tensor([2, 2, 7, 8])]) { $0[0].avgPool2d(3) }
    }

    @Test mutating func batchNorm() {
        for training in [true, false] {
            let mean = rng.tensor([4], scale: 0.5, requiresGrad: false)
            let variance = Tensor(shape: [4], values: [0.5, 1, 2, 3])
            let weight = rng.tensor([4], scale: 0.5)
            for i in 0..<4 { weight.data[i] += 1 }
            checkGradients("batch norm training=\(training)", [rng.tensor([3, 4, 5, 3], scale: 2), weight, rng.tensor([4])]) {
                $0[0].batchNorm2d(weight: $0[1], bias: $0[2], runningMean: mean, runningVar: variance, training: training)
            }
        }
    }

    @Test mutating func attention() {
        for causal in [false, true] {
            checkGradients("attention causal=\(causal)", [rng.tensor([2, 5, 3 * 8])]) {
                Tensor.attention(qkv: $0[0], heads: 2, causal: causal)
            }
            let queries = IntTensor(shape: [3], values: [4, 0, 2])
            checkGradients("attention at one query causal=\(causal)", [rng.tensor([3, 5, 3 * 8])]) {
                Tensor.attention(qkv: $0[0], heads: 2, causal: causal, queries: queries)
            }
        }
    }

    @Test mutating func packedProjection() {
        let queries = IntTensor(shape: [3], values: [4, 0, 2])
        checkGradients("packed projection at queries", [rng.tensor([3, 5, 4]), rng.tensor([12, 4]), rng.tensor([12])]) {
            Tensor.packedProjection($0[0], weight: $0[1], bias: $0[2], queries: queries)
        }
        // Its key/value columns and query rows are the plain linear's; other query slots are zero.
        let x = rng.tensor([3, 5, 4], requiresGrad: false), w = rng.tensor([12, 4], requiresGrad: false)
        let bias = rng.tensor([12], requiresGrad: false)
        let full = Tensor.linear(x, weight: w, bias: bias), packed = Tensor.packedProjection(x, weight: w, bias: bias, queries: queries)
        var worst: Float = 0
        for row in 0..<15 {
            let isQuery = queries.values[row / 5] == Int32(row % 5)
            for c in 0..<12 {
                let expected = c < 4 && !isQuery ? 0 : full.data[row * 12 + c]
                worst = max(worst, abs(packed.data[row * 12 + c] - expected))
            }
        }
        #expect(worst < 1e-5, "packed projection differs from linear by \(worst)")
    }

    /// The one-query attention gives exactly the rows of the full one.
    @Test mutating func attentionAtOneQueryMatchesFull() {
        let qkv = rng.tensor([3, 6, 3 * 8], requiresGrad: false)
        let queries = IntTensor(shape: [3], values: [5, 0, 3])
        for causal in [false, true] {
            let full = Tensor.attention(qkv: qkv, heads: 2, causal: causal).gatherRows(queries)
            let one = Tensor.attention(qkv: qkv, heads: 2, causal: causal, queries: queries)
            #expect(one.shape == [3, 8])
            let diff = zip(full.scalars, one.scalars).map { abs($0 - $1) }.max()!
            #expect(diff < 1e-6, "causal=\(causal): max difference \(diff)")
        }
    }

    @Test mutating func indexed() {
        let ids = IntTensor(shape: [2, 3], values: [1, 4, 1, 0, 9, 4])
        checkGradients("embedding", [rng.tensor([10, 4])]) { Tensor.embedding($0[0], ids: ids) }
        checkGradients("gather rows", [rng.tensor([3, 5, 4])]) { $0[0].gatherRows(IntTensor(shape: [3], values: [4, 0, 2])) }
        // Several rows per item (patch dropout), one repeated: its gradient is the sum of both uses.
        checkGradients("gather rows [B, K]", [rng.tensor([2, 5, 3])]) {
            $0[0].gatherRows(IntTensor(shape: [2, 3], values: [0, 3, 1, 4, 2, 4]))
        }
        checkGradients("cross entropy", [rng.tensor([5, 7], scale: 2)]) {
            $0[0].crossEntropy(targets: IntTensor(shape: [5], values: [0, 6, 3, 3, 1]))
        }
    }

    @Test mutating func patches() {
        let images = rng.tensor([2, 3, 4, 6])
        let p = images.patches(size: 2)
        #expect(p.shape == [2, 6, 12])
        // Patch (row 1, column 2) of image 1, channel 2, its second pixel row: pixels (3, 4), (3, 5).
        let patch = 1 * 6 + 1 * 3 + 2, offset = (2 * 2 + 1) * 2
        #expect(p.data[patch * 12 + offset] == images.data[((1 * 3 + 2) * 4 + 3) * 6 + 4])
        #expect(p.data[patch * 12 + offset + 1] == images.data[((1 * 3 + 2) * 4 + 3) * 6 + 5])
        checkGradients("patches", [rng.tensor([2, 3, 4, 6])]) { $0[0].patches(size: 2) }
    }

    @Test mutating func composedGraphReusesInputs() {
        // x feeds two branches: gradients from both must add up.
        checkGradients("shared input", [rng.tensor([4, 6]), rng.tensor([6, 6])]) { xs in
            let h = Tensor.matmul(xs[0], xs[1]).gelu()
            return (h * xs[0]).l2Normalized() + xs[0]
        }
    }
}
