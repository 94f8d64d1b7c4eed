// The AdamW update kernel (MMNN.AdamW holds the state and schedule). One pass per parameter,
// SIMD, spread over the threads: it streams seven floats per element, so it is memory-bound.

/// p ← p·decay − stepSize · m / (√v / rootBC2 + eps) after m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g².
public func adamWUpdate(
    _ p: Tensor, gradient g: Tensor, m: Tensor, v: Tensor, decay: Float, beta1: Float, beta2: Float,
    stepSize: Float, rootBC2: Float, eps: Float
) {
    precondition(
        g.count == p.count && m.count == p.count && v.count == p.count,
        "AdamW: parameter \(p.shape), gradient \(g.shape), moments \(m.shape) / \(v.shape) differ")
    let n = p.count
    let pp = p.data, gp = g.data, mp = m.data, vp = v.data
    parallelFor(n, grain: 1 << 15) { r in
        var i = r.lowerBound
        let end = r.upperBound
        while i < end {
            let gi = load(gp, i, end)
            let mi = beta1 * load(mp, i, end) + (1 - beta1) * gi
            let vi = beta2 * load(vp, i, end) + (1 - beta2) * gi * gi
            store(mi, mp, i, end)
            store(vi, vp, i, end)
            store(load(pp, i, end) * decay - stepSize * mi / (vi.squareRoot() / rootBC2 + eps), pp, i, end)
            i += 8
        }
    }
}
