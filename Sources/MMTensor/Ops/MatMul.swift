// Matrix products through BLAS. a: [..., M, K] (or [..., K, M] with transposeA),
// b: [K, N] shared by every leading index of a, or [..., K, N] with a's leading dims
// (or [..., N, K] with transposeB) → [..., M, N].

extension Tensor {
    /// op(a) · op(b), batched over leading dimensions.
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs matrices, got \(a.shape) and \(b.shape)")
        let (m, k) = transposeA ? (a.shape[a.rank - 1], a.shape[a.rank - 2]) : (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (kb, n) = transposeB ? (b.shape[b.rank - 1], b.shape[b.rank - 2]) : (b.shape[b.rank - 2], b.shape[b.rank - 1])
        precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
        let lead = Array(a.shape.dropLast(2))
        let sharedB = b.rank == 2
        precondition(
            sharedB || Array(b.shape.dropLast(2)) == lead,
            "matmul batch dimensions differ: \(a.shape) and \(b.shape)")
        let batch = lead.reduce(1, *)
        let out = Tensor.result(lead + [m, n])
        let lda = a.shape[a.rank - 1], ldb = b.shape[b.rank - 1]

        // With a shared 2-D b and an untransposed a, the batch folds into one tall product.
        let folds = sharedB && !transposeA
        if folds {
            sgemm(
                transA: false, transB: transposeB, m: batch * m, n: n, k: k,
                a: a.data, lda: lda, b: b.data, ldb: ldb, c: out.data, ldc: n)
        } else {
            batchedGemm(
                batch, transA: transposeA, transB: transposeB, m: m, n: n, k: k,
                a: a.data, lda: lda, strideA: m * k, b: b.data, ldb: ldb, strideB: sharedB ? 0 : k * n,
                beta: 0, c: out.data, ldc: n, strideC: m * n)
        }

        if let tape = Tape.recording(a, b) {
            tape.append(out) {
                let dc = out.grad!.data
                if a.requiresGrad && folds {
                    // dA = dC · op(B)ᵀ
                    let da = a.gradientForWriting()
                    sgemm(
                        transA: false, transB: !transposeB, m: batch * m, n: k, k: n,
                        a: dc, lda: n, b: b.data, ldb: ldb, beta: da.accumulate ? 1 : 0, c: da.data, ldc: k)
                } else if a.requiresGrad {
                    let da = a.gradient().data
                    if !transposeA {
                        batchedGemm(
                            batch, transA: false, transB: !transposeB, m: m, n: k, k: n,
                            a: dc, lda: n, strideA: m * n, b: b.data, ldb: ldb, strideB: sharedB ? 0 : k * n,
                            beta: 1, c: da, ldc: k, strideC: m * k)
                    } else {
                        // A is stored [K, M]: dA = op(B) · dCᵀ
                        batchedGemm(
                            batch, transA: transposeB, transB: true, m: k, n: m, k: n,
                            a: b.data, lda: ldb, strideA: sharedB ? 0 : k * n, b: dc, ldb: n, strideB: m * n,
                            beta: 1, c: da, ldc: m, strideC: m * k)
                    }
                }
                if b.requiresGrad && folds {
                    let db = b.gradientForWriting()
                    let beta: Float = db.accumulate ? 1 : 0
                    if !transposeB {
                        // dB = Aᵀ · dC over the folded batch
                        sgemm(
                            transA: true, transB: false, m: k, n: n, k: batch * m,
                            a: a.data, lda: lda, b: dc, ldb: n, beta: beta, c: db.data, ldc: n)
                    } else {
                        // B is stored [N, K]: dB = dCᵀ · A
                        sgemm(
                            transA: true, transB: false, m: n, n: k, k: batch * m,
                            a: dc, lda: n, b: a.data, ldb: lda, beta: beta, c: db.data, ldc: k)
                    }
                } else if b.requiresGrad {
                    let db = b.gradient().data
                    if !transposeB {
                        // dB = op(A)ᵀ · dC, summed into one matrix when b is shared
                        if sharedB {
                            for i in 0..<batch {
                                sgemm(
                                    transA: !transposeA, transB: false, m: k, n: n, k: m,
                                    a: a.data + i * m * k, lda: lda, b: dc + i * m * n, ldb: n, beta: 1, c: db, ldc: n)
                            }
                        } else {
                            batchedGemm(
                                batch, transA: !transposeA, transB: false, m: k, n: n, k: m,
                                a: a.data, lda: lda, strideA: m * k, b: dc, ldb: n, strideB: m * n,
                                beta: 1, c: db, ldc: n, strideC: k * n)
                        }
                    } else {
                        // B is stored [N, K]: dB = dCᵀ · op(A)
                        if sharedB {
                            for i in 0..<batch {
                                sgemm(
                                    transA: true, transB: transposeA, m: n, n: k, k: m,
                                    a: dc + i * m * n, lda: n, b: a.data + i * m * k, ldb: lda, beta: 1, c: db, ldc: k)
                            }
                        } else {
                            batchedGemm(
                                batch, transA: true, transB: transposeA, m: n, n: k, k: m,
                                a: dc, lda: n, strideA: m * n, b: a.data, ldb: lda, strideB: m * k,
                                beta: 1, c: db, ldc: k, strideC: k * n)
                        }
                    }
                }
            }
        }
        return out
    }
}

/// `count` independent products at fixed strides, spread across threads (each one BLAS call).
func batchedGemm(
    _ count: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, strideA: Int,
    b: UnsafePointer<Float>, ldb: Int, strideB: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int
) {
    if count == 1 {
        sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
        return
    }
    parallelFor(count) { r in
        for i in r {
            sgemm(
                transA: transA, transB: transB, m: m, n: n, k: k, a: a + i * strideA, lda: lda,
                b: b + i * strideB, ldb: ldb, beta: beta, c: c + i * strideC, ldc: ldc, parallel: false)
        }
    }
}

extension Tensor {
    /// x Wᵀ + b for x [..., in], W [out, in], b [out]: the bias is written first and the
    /// product accumulated onto it, saving a pass over the output.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        guard let bias else { return matmul(x, weight, transposeB: true) }
        precondition(
            weight.rank == 2 && x.lastDim == weight.shape[1] && bias.shape == [weight.shape[0]],
            "linear: input \(x.shape), weight \(weight.shape), bias \(bias.shape) do not fit")
        let (n, k) = (weight.shape[0], weight.shape[1])
        let m = x.rows
        let out = Tensor.result(Array(x.shape.dropLast()) + [n])
        let y = out.data, b = bias.data
        parallelFor(m, grain: max(1, 4096 / n)) { r in
            for row in r { (y + row * n).update(from: b, count: n) }
        }
        sgemm(
            transA: false, transB: true, m: m, n: n, k: k, a: x.data, lda: k, b: weight.data, ldb: k,
            beta: 1, c: y, ldc: n)
        if let tape = Tape.recording(x, weight, bias) {
            tape.append(out) {
                let dy = out.grad!.data
                backpropagateLinear(dy, x: x, weight: weight, m: m, n: n, k: k)
                if bias.requiresGrad { accumulateRowSum(bias.gradient().data, dy, rows: m, inner: n) }
            }
        }
        return out
    }
}

/// A nonlinearity that `Tensor.linear(_:weight:bias:activation:)` applies in the same pass.
public enum Activation: String, Sendable, Codable {
    /// GELU with the exact erf, x · Φ(x).
    case gelu
    /// OpenAI CLIP's QuickGELU, x · σ(1.702 x).
    case quickGelu = "quick_gelu"
}

/// (f(x), f′(x)) for one vector: the forward keeps the slope so that backward is one multiply,
/// and GELU's Φ and φ share one exponential.
@inline(__always)
func activationWithSlope(_ x: Vec, _ f: Activation) -> (value: Vec, slope: Vec) {
    switch f {
    case .gelu:
        let (cdf, pdf) = normalCDFAndPDF(x)
        return (x * cdf, cdf + x * pdf)
    case .quickGelu:
        let s = sigmoid(1.702 * x)
        return (x * s, s + 1.702 * x * s * (1 - s))
    }
}

extension Tensor {
    /// f(x Wᵀ + b) for x [..., in], W [out, in], b [out], as `linear` followed by `gelu()` or
    /// `quickGelu()`, fused: each thread adds the bias and applies f to its rows of the product
    /// right after computing them, keeping f′ instead of the pre-activation for backward, which
    /// then scales the incoming gradient by f′ and sums the bias gradient in one pass.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor, activation f: Activation) -> Tensor {
        precondition(
            weight.rank == 2 && x.lastDim == weight.shape[1] && bias.shape == [weight.shape[0]],
            "linear: input \(x.shape), weight \(weight.shape), bias \(bias.shape) do not fit")
        let (n, k) = (weight.shape[0], weight.shape[1])
        let m = x.rows
        let out = Tensor.result(Array(x.shape.dropLast()) + [n])
        let recording = Tape.recording(x, weight, bias)
        let slope = recording != nil ? Tensor.result(out.shape) : nil
        let y = out.data, b = bias.data, s = slope?.data
        // Small products stay on one thread, as in `sgemm`.
        let grain = m * n * k >= 1 << 20 ? 16 : max(m, 1)
        parallelFor(m, grain: grain) { r in
            sgemm(
                transA: false, transB: true, m: r.count, n: n, k: k, a: x.data + r.lowerBound * k, lda: k,
                b: weight.data, ldb: k, c: y + r.lowerBound * n, ldc: n, parallel: false)
            for row in r {
                let yr = y + row * n
                var i = 0
                while i < n {
                    let (v, d) = activationWithSlope(load(yr, i, n) + load(b, i, n), f)
                    store(v, yr, i, n)
                    if let s { store(d, s + row * n, i, n) }
                    i += 8
                }
            }
        }
        if let tape = recording, let slope {
            tape.append(out) {
                // The incoming gradient is consumed here, so it becomes ∂pre = ∂out ∘ f′ in place.
                let dpre = out.grad!.data
                scaleAndSumRows(dpre, by: slope.data, rows: m, inner: n, sum: bias.requiresGrad ? bias.gradient().data : nil)
                backpropagateLinear(dpre, x: x, weight: weight, m: m, n: n, k: k)
            }
        }
        return out
    }
}

/// dx (+)= dy · W and dW (+)= dyᵀ · x for y [m, n] = x [m, k] · Wᵀ, for the operands that need them.
private func backpropagateLinear(_ dy: UnsafePointer<Float>, x: Tensor, weight: Tensor, m: Int, n: Int, k: Int) {
    if x.requiresGrad {
        let dx = x.gradientForWriting()
        sgemm(
            transA: false, transB: false, m: m, n: k, k: n, a: dy, lda: n, b: weight.data, ldb: k,
            beta: dx.accumulate ? 1 : 0, c: dx.data, ldc: k)
    }
    if weight.requiresGrad {
        let dw = weight.gradientForWriting()
        sgemm(
            transA: true, transB: false, m: n, n: k, k: m, a: dy, lda: n, b: x.data, ldb: k,
            beta: dw.accumulate ? 1 : 0, c: dw.data, ldc: k)
    }
}

/// x ∘= scale over `rows` rows of `inner`, and (if given) sum += the column sums of the result,
/// in one pass.
func scaleAndSumRows(
    _ x: UnsafeMutablePointer<Float>, by scale: UnsafePointer<Float>, rows: Int, inner: Int,
    sum: UnsafeMutablePointer<Float>?
) {
    sumRows(rows: rows, inner: inner, into: sum) { row, total in
        let xr = x + row * inner, sr = scale + row * inner
        var c = 0
        while c < inner {
            let v = load(xr, c, inner) * load(sr, c, inner)
            store(v, xr, c, inner)
            store(load(total, c, inner) + v, total, c, inner)
            c += 8
        }
    }
}
