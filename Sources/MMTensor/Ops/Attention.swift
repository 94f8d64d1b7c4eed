// Multi-head scaled-dot-product attention over a packed projection, as open_clip's
// nn.MultiheadAttention computes it after `in_proj`:
//   qkv [B, L, 3W] → per head h: softmax(Q_h K_hᵀ / √Dh [+ causal mask]) V_h → out [B, L, W].
// Heads are addressed in place through BLAS leading dimensions: no split, no merge copies.

extension Tensor {
    public static func attention(qkv: Tensor, heads: Int, causal: Bool) -> Tensor {
        precondition(
            qkv.rank == 3 && qkv.shape[2] % (3 * heads) == 0,
            "attention expects packed qkv [B, L, 3·W] with W divisible by \(heads) heads, got \(qkv.shape)")
        let (b, l, w) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
        let dh = w / heads
        let scale = 1 / Float(dh).squareRoot()
        let out = Tensor.result([b, l, w])
        let recording = Tape.recording(qkv)
        // The attention weights are kept for backward only when recording; else per-thread scratch.
        let probs = recording != nil ? Tensor.result([b, heads, l, l]) : nil
        let src = qkv.data, dst = out.data

        parallelFor(b * heads) { r in
            let scratch = probs == nil ? UnsafeMutablePointer<Float>.allocate(capacity: l * l) : nil
            defer { scratch?.deallocate() }
            for item in r {
                let (batch, head) = (item / heads, item % heads)
                let q = src + batch * l * 3 * w + head * dh
                let p = probs.map { $0.data + item * l * l } ?? scratch!
                sgemm(
                    transA: false, transB: true, m: l, n: l, k: dh, alpha: scale,
                    a: q, lda: 3 * w, b: q + w, ldb: 3 * w, c: p, ldc: l, parallel: false)
                for i in 0..<l {
                    let row = p + i * l
                    let visible = causal ? i + 1 : l
                    softmaxRow(row, row, visible)
                    if visible < l { (row + visible).update(repeating: 0, count: l - visible) }
                }
                sgemm(
                    transA: false, transB: false, m: l, n: dh, k: l,
                    a: p, lda: l, b: q + 2 * w, ldb: 3 * w, c: dst + batch * l * w + head * dh, ldc: w, parallel: false)
            }
        }

        if let tape = recording, let probs {
            tape.append(out) {
                // Each (item, head) writes all of its dQ, dK, dV: no zero fill for a fresh gradient.
                let (dqkv, accumulate) = qkv.gradientForWriting()
                let beta: Float = accumulate ? 1 : 0
                let dout = out.grad!.data
                parallelFor(b * heads) { r in
                    let dp = UnsafeMutablePointer<Float>.allocate(capacity: l * l)
                    defer { dp.deallocate() }
                    for item in r {
                        let (batch, head) = (item / heads, item % heads)
                        let offset = batch * l * 3 * w + head * dh
                        let q = src + offset, k = q + w, v = q + 2 * w
                        let dq = dqkv + offset, dk = dq + w, dv = dq + 2 * w
                        let p = probs.data + item * l * l
                        let dO = dout + batch * l * w + head * dh
                        // dV += Pᵀ dO
                        sgemm(
                            transA: true, transB: false, m: l, n: dh, k: l, a: p, lda: l, b: dO, ldb: w,
                            beta: beta, c: dv, ldc: 3 * w, parallel: false)
                        // dP = dO Vᵀ, then dS = P ∘ (dP − rowsum(dP ∘ P)) · scale, in place
                        sgemm(
                            transA: false, transB: true, m: l, n: l, k: dh, a: dO, lda: w, b: v, ldb: 3 * w,
                            c: dp, ldc: l, parallel: false)
                        for i in 0..<l {
                            let visible = causal ? i + 1 : l
                            softmaxBackwardRow(p + i * l, dp + i * l, dp + i * l, visible, scale: scale, accumulate: false)
                            if visible < l { (dp + i * l + visible).update(repeating: 0, count: l - visible) }
                        }
                        // dQ += dS K, dK += dSᵀ Q
                        sgemm(
                            transA: false, transB: false, m: l, n: dh, k: l, a: dp, lda: l, b: k, ldb: 3 * w,
                            beta: beta, c: dq, ldc: 3 * w, parallel: false)
                        sgemm(
                            transA: true, transB: false, m: l, n: dh, k: l, a: dp, lda: l, b: q, ldb: 3 * w,
                            beta: beta, c: dk, ldc: 3 * w, parallel: false)
                    }
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// Attention for one query position per sequence: row b of the result is row `queries[b]`
    /// of `attention(qkv:heads:causal:)`, [B, L, 3W] → [B, W]. A tower that pools one token
    /// needs nothing else from its last block, so it skips the other L − 1 queries.
    public static func attention(qkv: Tensor, heads: Int, causal: Bool, queries: IntTensor) -> Tensor {
        precondition(
            qkv.rank == 3 && qkv.shape[2] % (3 * heads) == 0,
            "attention expects packed qkv [B, L, 3·W] with W divisible by \(heads) heads, got \(qkv.shape)")
        let (b, l, w) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
        precondition(queries.shape == [b], "attention queries must be [\(b)], got \(queries.shape)")
        for i in queries.values { precondition(i >= 0 && Int(i) < l, "attention query \(i) outside length \(l)") }
        let dh = w / heads
        let scale = 1 / Float(dh).squareRoot()
        let out = Tensor.result([b, w])
        let recording = Tape.recording(qkv)
        // One row of attention weights per (item, head), kept for backward when recording.
        let probs = Tensor.result([b, heads, l])
        let src = qkv.data, dst = out.data, pr = probs.data
        let index = queries.values
        // Keys visible from the query of item i.
        func visible(_ i: Int) -> Int { causal ? Int(index[i]) + 1 : l }

        parallelFor(b * heads) { r in
            for item in r {
                let (batch, head) = (item / heads, item % heads)
                let base = src + batch * l * 3 * w + head * dh
                let q = base + Int(index[batch]) * 3 * w
                let p = pr + item * l, n = visible(batch)
                // p = q Kᵀ · scale over the visible keys, softmax, then out = p V
                sgemm(
                    transA: false, transB: true, m: 1, n: n, k: dh, alpha: scale,
                    a: q, lda: 3 * w, b: base + w, ldb: 3 * w, c: p, ldc: l, parallel: false)
                softmaxRow(p, p, n)
                if n < l { (p + n).update(repeating: 0, count: l - n) }
                sgemm(
                    transA: false, transB: false, m: 1, n: dh, k: n,
                    a: p, lda: l, b: base + 2 * w, ldb: 3 * w, c: dst + batch * w + head * dh, ldc: w, parallel: false)
            }
        }

        if let tape = recording {
            tape.append(out) {
                let pr = probs.data  // through the tensor, so that the closure keeps it alive
                let dout = out.grad!.data, dqkv = qkv.gradient().data
                parallelFor(b * heads) { r in
                    let dp = UnsafeMutablePointer<Float>.allocate(capacity: l)
                    defer { dp.deallocate() }
                    for item in r {
                        let (batch, head) = (item / heads, item % heads)
                        let offset = batch * l * 3 * w + head * dh
                        let qRow = Int(index[batch]) * 3 * w
                        let q = src + offset + qRow, k = src + offset + w, v = src + offset + 2 * w
                        let dq = dqkv + offset + qRow, dk = dqkv + offset + w, dv = dqkv + offset + 2 * w
                        let p = pr + item * l, n = visible(batch)
                        let dO = dout + batch * w + head * dh
                        // dV += pᵀ dO (an outer product)
                        sgemm(
                            transA: true, transB: false, m: n, n: dh, k: 1, a: p, lda: l, b: dO, ldb: w,
                            beta: 1, c: dv, ldc: 3 * w, parallel: false)
                        // dp = dO Vᵀ, then ds = p ∘ (dp − dp·p) · scale
                        sgemm(
                            transA: false, transB: true, m: 1, n: n, k: dh, a: dO, lda: w, b: v, ldb: 3 * w,
                            c: dp, ldc: l, parallel: false)
                        softmaxBackwardRow(p, dp, dp, n, scale: scale, accumulate: false)
                        // dq += ds K, dK += dsᵀ q
                        sgemm(
                            transA: false, transB: false, m: 1, n: dh, k: n, a: dp, lda: l, b: k, ldb: 3 * w,
                            beta: 1, c: dq, ldc: 3 * w, parallel: false)
                        sgemm(
                            transA: true, transB: false, m: n, n: dh, k: 1, a: dp, lda: l, b: q, ldb: 3 * w,
                            beta: 1, c: dk, ldc: 3 * w, parallel: false)
                    }
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// The packed projection x Wᵀ + b, x [B, L, W], W [3W, W] → [B, L, 3W], for
    /// `attention(qkv:heads:causal:queries:)`: keys and values at every position, queries only
    /// at `queries` (one row per sequence); the other query slots are zero, as nothing reads them.
    public static func packedProjection(_ x: Tensor, weight: Tensor, bias: Tensor, queries: IntTensor) -> Tensor {
        precondition(
            x.rank == 3 && weight.rank == 2 && weight.shape[0] == 3 * x.shape[2] && weight.shape[1] == x.shape[2]
                && bias.shape == [weight.shape[0]],
            "packedProjection: input \(x.shape), weight \(weight.shape), bias \(bias.shape) do not fit")
        let (b, l, w) = (x.shape[0], x.shape[1], x.shape[2])
        precondition(queries.shape == [b], "packedProjection queries must be [\(b)], got \(queries.shape)")
        for i in queries.values { precondition(i >= 0 && Int(i) < l, "packedProjection query \(i) outside length \(l)") }
        let rows = b * l
        let row = queries.values.enumerated().map { $0.offset * l + Int($0.element) }  // flat row of each query
        let out = Tensor.result([b, l, 3 * w])
        let y = out.data, bp = bias.data
        parallelFor(rows, grain: max(1, 4096 / w)) { r in
            for i in r {
                (y + i * 3 * w).update(repeating: 0, count: w)
                (y + i * 3 * w + w).update(from: bp + w, count: 2 * w)
            }
        }
        // Keys and values: rows W..<3W of the weight, into columns W..<3W of every row.
        sgemm(
            transA: false, transB: true, m: rows, n: 2 * w, k: w, a: x.data, lda: w, b: weight.data + w * w, ldb: w,
            beta: 1, c: y + w, ldc: 3 * w)
        // Queries: the gathered rows times rows 0..<W of the weight.
        let xq = Tensor.result([b, w]), q = Tensor.result([b, w])
        for (i, r) in row.enumerated() {
            (xq.data + i * w).update(from: x.data + r * w, count: w)
            (q.data + i * w).update(from: bp, count: w)
        }
        sgemm(
            transA: false, transB: true, m: b, n: w, k: w, a: xq.data, lda: w, b: weight.data, ldb: w,
            beta: 1, c: q.data, ldc: w)
        for (i, r) in row.enumerated() { (y + r * 3 * w).update(from: q.data + i * w, count: w) }

        if let tape = Tape.recording(x, weight, bias) {
            tape.append(out) {
                let dy = out.grad!.data
                // The query gradient, gathered from its rows (the other query slots get none).
                let dq = Tensor.result([b, w])
                for (i, r) in row.enumerated() { (dq.data + i * w).update(from: dy + r * 3 * w, count: w) }
                if x.requiresGrad {
                    let dx = x.gradientForWriting()
                    sgemm(
                        transA: false, transB: false, m: rows, n: w, k: 2 * w, a: dy + w, lda: 3 * w,
                        b: weight.data + w * w, ldb: w, beta: dx.accumulate ? 1 : 0, c: dx.data, ldc: w)
                    let dxq = Tensor.result([b, w])
                    sgemm(
                        transA: false, transB: false, m: b, n: w, k: w, a: dq.data, lda: w, b: weight.data, ldb: w,
                        c: dxq.data, ldc: w)
                    for (i, r) in row.enumerated() { accumulateRow(dx.data + r * w, dxq.data + i * w, w) }
                }
                if weight.requiresGrad {
                    let dw = weight.gradientForWriting()
                    let beta: Float = dw.accumulate ? 1 : 0
                    sgemm(
                        transA: true, transB: false, m: w, n: w, k: b, a: dq.data, lda: w, b: xq.data, ldb: w,
                        beta: beta, c: dw.data, ldc: w)
                    sgemm(
                        transA: true, transB: false, m: 2 * w, n: w, k: rows, a: dy + w, lda: 3 * w, b: x.data, ldb: w,
                        beta: beta, c: dw.data + w * w, ldc: w)
                }
                if bias.requiresGrad {
                    // Key/value columns summed over every row, query columns over the query rows only.
                    let sums = Tensor.zeros([3 * w])
                    accumulateRowSum(sums.data, dy, rows: rows, inner: 3 * w)
                    let db = bias.gradient().data
                    accumulateRow(db + w, sums.data + w, 2 * w)
                    accumulateRowSum(db, dq.data, rows: b, inner: w)
                }
            }
        }
        return out
    }
}
