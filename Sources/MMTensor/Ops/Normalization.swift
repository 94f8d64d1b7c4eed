import Foundation

// Row-wise kernels over the last axis: fused LayerNorm, L2 normalisation, softmax, log-softmax.

extension Tensor {
    /// The number of rows when the last axis is the feature axis.
    var rows: Int { rank == 0 ? 1 : count / max(shape[rank - 1], 1) }
    var lastDim: Int { rank == 0 ? 1 : shape[rank - 1] }

    /// LayerNorm over the last axis: (x − μ)/√(σ² + eps) · gamma + beta.
    public func layerNorm(weight gamma: Tensor, bias beta: Tensor, eps: Float = 1e-5) -> Tensor {
        let d = lastDim, rows = rows
        precondition(
            gamma.shape == [d] && beta.shape == [d], "layerNorm: weight \(gamma.shape) / bias \(beta.shape) do not match features \(d) of \(shape)")
        let out = Tensor.result(shape)
        // Per-row mean and 1/σ, kept for backward.
        let stats = Tensor.result([rows, 2])
        let x = data, y = out.data, g = gamma.data, b = beta.data, st = stats.data
        parallelFor(rows, grain: max(1, 4096 / d)) { r in
            for row in r {
                let xr = x + row * d, yr = y + row * d
                var s = Vec(repeating: 0)
                var i = 0
                while i < d { s += load(xr, i, d); i += 8 }
                let mean = horizontalSum(s) / Float(d)
                var q = Vec(repeating: 0)
                i = 0
                while i < d {
                    let c = maskTail(load(xr, i, d) - mean, valid: d - i)
                    q += c * c
                    i += 8
                }
                let rstd = 1 / (horizontalSum(q) / Float(d) + eps).squareRoot()
                i = 0
                while i < d {
                    store((load(xr, i, d) - mean) * rstd * load(g, i, d) + load(b, i, d), yr, i, d)
                    i += 8
                }
                st[2 * row] = mean
                st[2 * row + 1] = rstd
            }
        }
        if let tape = Tape.recording(self, gamma, beta) {
            tape.append(out) {
                let st = stats.data  // through the tensor, so that the closure keeps it alive
                let dy = out.grad!.data
                // One pass over blocks of rows: dx = rstd · (dy·g − mean(dy·g) − x̂ · mean(dy·g·x̂)),
                // and each block's column sums dgamma = Σ dy·x̂, dbeta = Σ dy into its own partials.
                let wantsX = self.requiresGrad, wantsParams = gamma.requiresGrad || beta.requiresGrad
                let (dx, accumulate) = wantsX ? self.gradientForWriting() : (dy, false)
                let blocks = min(Threads.count, max(1, rows * d / (1 << 14)))
                let partial = UnsafeMutablePointer<Float>.allocate(capacity: blocks * 2 * d)
                defer { partial.deallocate() }
                partial.update(repeating: 0, count: blocks * 2 * d)
                parallelFor(blocks) { r in
                    for block in r {
                        let dg = partial + block * 2 * d, db = dg + d
                        for row in (rows * block / blocks)..<(rows * (block + 1) / blocks) {
                            let xr = x + row * d, dyr = dy + row * d, dxr = dx + row * d
                            let mean = st[2 * row], rstd = st[2 * row + 1]
                            var s1 = Vec(repeating: 0), s2 = Vec(repeating: 0)
                            var i = 0
                            while i < d {
                                let dyv = load(dyr, i, d), xh = (load(xr, i, d) - mean) * rstd
                                let gy = dyv * load(g, i, d)
                                s1 += gy
                                s2 += gy * xh
                                if wantsParams {
                                    store(load(dg, i, d) + dyv * xh, dg, i, d)
                                    store(load(db, i, d) + dyv, db, i, d)
                                }
                                i += 8
                            }
                            guard wantsX else { continue }
                            let m1 = horizontalSum(s1) / Float(d), m2 = horizontalSum(s2) / Float(d)
                            i = 0
                            while i < d {
                                let xh = (load(xr, i, d) - mean) * rstd
                                let v = rstd * (load(dyr, i, d) * load(g, i, d) - m1 - xh * m2)
                                store(accumulate ? load(dxr, i, d) + v : v, dxr, i, d)
                                i += 8
                            }
                        }
                    }
                }
                if wantsParams {
                    let dg = gamma.gradient().data, db = beta.gradient().data
                    for block in 0..<blocks {
                        accumulateRow(dg, partial + block * 2 * d, d)
                        accumulateRow(db, partial + block * 2 * d + d, d)
                    }
                }
            }
        }
        return out
    }

    /// x / max(‖x‖₂, eps) along the last axis (as torch.nn.functional.normalize).
    public func l2Normalized(eps: Float = 1e-12) -> Tensor {
        let d = lastDim, rows = rows
        let out = Tensor.result(shape)
        let norms = Tensor.result([rows])
        let x = data, y = out.data, nr = norms.data
        parallelFor(rows, grain: max(1, 4096 / d)) { r in
            for row in r {
                let xr = x + row * d
                var s = Vec(repeating: 0)
                var i = 0
                while i < d { let v = load(xr, i, d); s += v * v; i += 8 }
                let norm = max(horizontalSum(s).squareRoot(), eps)
                nr[row] = norm
                i = 0
                while i < d { store(load(xr, i, d) / norm, y + row * d, i, d); i += 8 }
            }
        }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                let nr = norms.data  // through the tensor, so that the closure keeps it alive
                // dx = (dy − y·(dy·y)) / ‖x‖, or dy/eps where the norm was clamped.
                let dy = out.grad!.data, dx = self.gradient().data
                parallelFor(rows, grain: max(1, 4096 / d)) { r in
                    for row in r {
                        let yr = y + row * d, dyr = dy + row * d, dxr = dx + row * d
                        let clamped = nr[row] <= eps
                        var s = Vec(repeating: 0)
                        var i = 0
                        while i < d { s += load(dyr, i, d) * load(yr, i, d); i += 8 }
                        let dot = clamped ? 0 : horizontalSum(s)
                        i = 0
                        while i < d {
                            store(load(dxr, i, d) + (load(dyr, i, d) - load(yr, i, d) * dot) / nr[row], dxr, i, d)
                            i += 8
                        }
                    }
                }
            }
        }
        return out
    }

    /// Softmax along the last axis.
    public func softmax() -> Tensor {
        let d = lastDim
        let out = Tensor.result(shape)
        let y = out.data
        softmaxRows(data, y, rows: rows, d: d)
        if let tape = Tape.recording(self) {
            tape.append(out) {
                softmaxBackwardRows(y: y, dy: out.grad!.data, dx: self.gradient().data, rows: self.rows, d: d)
            }
        }
        return out
    }

    /// log(softmax(x)) along the last axis, computed stably.
    public func logSoftmax() -> Tensor {
        let d = lastDim, rows = rows
        let out = Tensor.result(shape)
        let x = data, y = out.data
        parallelFor(rows, grain: max(1, 4096 / d)) { r in
            for row in r {
                let xr = x + row * d, yr = y + row * d
                let m = rowMax(xr, d)
                var s = Vec(repeating: 0)
                var i = 0
                while i < d {
                    let e = MMTensor.exp(load(xr, i, d) - m)
                    s += maskTail(e, valid: d - i)
                    i += 8
                }
                let lse = m + Float(Foundation.log(Double(horizontalSum(s))))
                i = 0
                while i < d { store(load(xr, i, d) - lse, yr, i, d); i += 8 }
            }
        }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                // dx = dy − softmax · Σ dy
                let dy = out.grad!.data, dx = self.gradient().data
                parallelFor(rows, grain: max(1, 4096 / d)) { r in
                    for row in r {
                        let yr = y + row * d, dyr = dy + row * d, dxr = dx + row * d
                        var s = Vec(repeating: 0)
                        var i = 0
                        while i < d { s += load(dyr, i, d); i += 8 }
                        let total = horizontalSum(s)
                        i = 0
                        while i < d {
                            store(load(dxr, i, d) + load(dyr, i, d) - MMTensor.exp(load(yr, i, d)) * total, dxr, i, d)
                            i += 8
                        }
                    }
                }
            }
        }
        return out
    }
}

/// Zeroes the lanes at and beyond `valid` (the padding of a ragged tail).
@inline(__always)
func maskTail(_ v: Vec, valid: Int) -> Vec {
    valid >= 8 ? v : v.replacing(with: 0, where: SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .>= SIMD8<Int32>(repeating: Int32(valid)))
}

@inline(__always)
func rowMax(_ x: UnsafePointer<Float>, _ d: Int) -> Float {
    var m = Vec(repeating: -.infinity)
    var i = 0
    while i + 8 <= d { let v = load(x, i, d); m = m.replacing(with: v, where: v .> m); i += 8 }
    var best = m.max()
    while i < d { best = max(best, x[i]); i += 1 }
    return best
}

/// y = softmax(x) row by row (x and y may alias).
func softmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, d: Int) {
    parallelFor(rows, grain: max(1, 4096 / d)) { r in
        for row in r { softmaxRow(x + row * d, y + row * d, d) }
    }
}

@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ d: Int) {
    let m = rowMax(x, d)
    var s = Vec(repeating: 0)
    var i = 0
    while i < d {
        let e = maskTail(exp(load(x, i, d) - m), valid: d - i)
        s += e
        store(e, y, i, d)
        i += 8
    }
    let inv = 1 / horizontalSum(s)
    i = 0
    while i < d { store(load(y, i, d) * inv, y, i, d); i += 8 }
}

/// dx += y · (dy − Σ dy·y), row by row.
func softmaxBackwardRows(y: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int, d: Int) {
    parallelFor(rows, grain: max(1, 4096 / d)) { r in
        for row in r { softmaxBackwardRow(y + row * d, dy + row * d, dx + row * d, d, scale: 1, accumulate: true) }
    }
}

/// dx (+)= scale · y · (dy − Σ dy·y) for one row.
@inline(__always)
func softmaxBackwardRow(
    _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ d: Int,
    scale: Float, accumulate: Bool
) {
    var s = Vec(repeating: 0)
    var i = 0
    while i < d { s += load(dy, i, d) * load(y, i, d); i += 8 }
    let dot = horizontalSum(s)
    i = 0
    while i < d {
        var v = scale * load(y, i, d) * (load(dy, i, d) - dot)
        if accumulate { v += load(dx, i, d) }
        store(v, dx, i, d)
        i += 8
    }
}
