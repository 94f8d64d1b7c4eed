import Foundation

// Elementwise ops: add / sub / mul with broadcasting over leading dimensions, scale, exp,
// GELU and QuickGELU. Each forward kernel has its backward beside it; backward accumulates.

// MARK: - Kernels

@inline(__always)
private func mapUnary(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ f: (Vec) -> Vec) {
    parallelFor(n, grain: 1 << 15) { r in
        var i = r.lowerBound
        while i < r.upperBound {
            store(f(load(x, i, r.upperBound)), y, i, r.upperBound)
            i += 8
        }
    }
}

/// out = f(x, y) elementwise, all three of length n, or `g += f(x, y)` when accumulating.
@inline(__always)
private func mapBinary(
    _ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    accumulate: Bool, _ f: (Vec, Vec) -> Vec
) {
    parallelFor(n, grain: 1 << 15) { r in
        var i = r.lowerBound
        while i < r.upperBound {
            var v = f(load(a, i, r.upperBound), load(b, i, r.upperBound))
            if accumulate { v += load(out, i, r.upperBound) }
            store(v, out, i, r.upperBound)
            i += 8
        }
    }
}

/// y += x.
func accumulate(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, scale: Float = 1) {
    parallelFor(n, grain: 1 << 15) { r in
        var i = r.lowerBound
        while i < r.upperBound {
            store(load(y, i, r.upperBound) + scale * load(x, i, r.upperBound), y, i, r.upperBound)
            i += 8
        }
    }
}

/// Sums `rows` rows of length `inner` into `out` (accumulating): the backward of broadcasting
/// and of biases.
func accumulateRowSum(
    _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, inner: Int,
    times other: UnsafePointer<Float>? = nil, scale: Float = 1
) {
    sumRows(rows: rows, inner: inner, into: out, scale: scale) { row, sum in
        var c = 0
        while c < inner {
            var v = load(x + row * inner, c, inner)
            if let other { v *= load(other + row * inner, c, inner) }
            store(load(sum, c, inner) + v, sum, c, inner)
            c += 8
        }
    }
}

/// `out` (if given) += scale × the column sums of `rows` rows of `inner`, where `addRow(row, sum)`
/// adds row `row` into a partial sum. Each thread streams a contiguous block of rows into its
/// own partial sum, so no two threads write the same memory and rows are read in order.
@inline(__always)
func sumRows(
    rows: Int, inner: Int, into out: UnsafeMutablePointer<Float>?, scale: Float = 1,
    _ addRow: (Int, UnsafeMutablePointer<Float>) -> Void
) {
    let blocks = min(Threads.count, max(1, rows * inner / (1 << 15)))
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: blocks * inner)
    defer { partial.deallocate() }
    partial.update(repeating: 0, count: blocks * inner)
    parallelFor(blocks) { r in
        for block in r {
            for row in (rows * block / blocks)..<(rows * (block + 1) / blocks) { addRow(row, partial + block * inner) }
        }
    }
    if let out { for block in 0..<blocks { accumulateRow(out, partial + block * inner, inner, scale: scale) } }
}

// MARK: - Broadcasting

/// How two operands broadcast: the smaller one's shape must be a suffix of the larger one's
/// (a bias [N] over [B, L, N], a 0-d scale over anything).
private struct Broadcast {
    let big: Tensor, small: Tensor
    let smallIsLeft: Bool
    var rows: Int { big.count / max(small.count, 1) }
    var inner: Int { small.count }

    init(_ a: Tensor, _ b: Tensor, _ op: String) {
        let aIsSmall = a.rank < b.rank || (a.rank == b.rank && a.count < b.count)
        (big, small, smallIsLeft) = aIsSmall ? (b, a, true) : (a, b, false)
        precondition(
            Array(big.shape.suffix(small.rank)) == small.shape,
            "\(op): shapes \(a.shape) and \(b.shape) do not broadcast (the smaller must be a suffix of the larger)")
    }
}

private enum BinaryOp { case add, sub, mul }

private func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) -> Tensor {
    let bc = Broadcast(a, b, "\(op)")
    let out = Tensor.result(bc.big.shape)
    let rows = bc.rows, inner = bc.inner
    let big = bc.big.data, small = bc.small.data, y = out.data
    let flip = bc.smallIsLeft
    if inner == bc.big.count {
        switch op {
        case .add: mapBinary(inner, a.data, b.data, y, accumulate: false, +)
        case .sub: mapBinary(inner, a.data, b.data, y, accumulate: false, -)
        case .mul: mapBinary(inner, a.data, b.data, y, accumulate: false, *)
        }
    } else if inner == 1 {
        let s = small[0]
        switch op {
        case .add: mapUnary(rows, big, y) { $0 + s }
        case .sub: mapUnary(rows, big, y) { flip ? s - $0 : $0 - s }
        case .mul: mapUnary(rows, big, y) { $0 * s }
        }
    } else {
        parallelFor(rows, grain: max(1, (1 << 14) / inner)) { rr in
            for row in rr {
                let x = big + row * inner, o = y + row * inner
                var i = 0
                while i < inner {
                    let u = load(x, i, inner), v = load(small, i, inner)
                    let r: Vec
                    switch op {
                    case .add: r = u + v
                    case .sub: r = flip ? v - u : u - v
                    case .mul: r = u * v
                    }
                    store(r, o, i, inner)
                    i += 8
                }
            }
        }
    }

    if let tape = Tape.recording(a, b) {
        tape.append(out) {
            if op == .add && inner == bc.big.count {
                passSumGradient(out, to: bc.big, bc.small)
                return
            }
            let dy = out.grad!.data
            let bigSign: Float = (op == .sub && flip) ? -1 : 1
            let smallSign: Float = (op == .sub && !flip) ? -1 : 1
            if bc.big.requiresGrad {
                let g = bc.big.gradient().data
                switch op {
                case .add, .sub: accumulate(g, dy, bc.big.count, scale: bigSign)
                case .mul:
                    if inner == bc.big.count {
                        mapBinary(inner, dy, small, g, accumulate: true, *)
                    } else {
                        for row in 0..<rows { accumulateProduct(g + row * inner, dy + row * inner, small, inner) }
                    }
                }
            }
            if bc.small.requiresGrad {
                let g = bc.small.gradient().data
                accumulateRowSum(g, dy, rows: rows, inner: inner, times: op == .mul ? big : nil, scale: smallSign)
            }
        }
    }
    return out
}

/// The backward of a same-size sum (a residual connection): both operands receive the
/// incoming gradient unchanged. The small operand gets a copy (or adds it), then the big one,
/// whose shape is the output's, takes over the buffer itself when it has no gradient yet: the
/// output's gradient is dropped after this step, so nothing else sees it.
private func passSumGradient(_ out: Tensor, to big: Tensor, _ small: Tensor) {
    let dy = out.grad!
    if small.requiresGrad {
        let (g, accumulate) = small.gradientForWriting()
        if accumulate {
            MMTensor.accumulate(g, dy.data, dy.count)
        } else {
            parallelFor(dy.count, grain: 1 << 16) { r in (g + r.lowerBound).update(from: dy.data + r.lowerBound, count: r.count) }
        }
    }
    if big.requiresGrad {
        if big.grad == nil {
            big.grad = dy
        } else {
            MMTensor.accumulate(big.grad!.data, dy.data, dy.count)
        }
    }
}

/// g += a * b over n elements, single-threaded (called per row).
@inline(__always)
private func accumulateProduct(_ g: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i < n {
        store(load(g, i, n) + load(a, i, n) * load(b, i, n), g, i, n)
        i += 8
    }
}

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .add) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .sub) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .mul) }

    /// s · x for a constant s.
    public func scaled(by s: Float) -> Tensor {
        let out = Tensor.result(shape)
        mapUnary(count, data, out.data) { $0 * s }
        if let tape = Tape.recording(self) {
            tape.append(out) { accumulate(self.gradient().data, out.grad!.data, self.count, scale: s) }
        }
        return out
    }

    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(by: s) }

    /// e^x elementwise.
    public func exp() -> Tensor {
        let out = Tensor.result(shape)
        mapUnary(count, data, out.data) { MMTensor.exp($0) }
        if let tape = Tape.recording(self) {
            tape.append(out) { mapBinary(self.count, out.grad!.data, out.data, self.gradient().data, accumulate: true, *) }
        }
        return out
    }

    /// log σ(x), computed stably as min(x, 0) − log(1 + e^(−|x|)).
    public func logSigmoid() -> Tensor {
        let out = Tensor.result(shape)
        let x = data, y = out.data
        parallelFor(count, grain: 1 << 14) { r in
            for i in r { let v = x[i]; y[i] = min(v, 0) - Float(Foundation.log1p(Foundation.exp(Double(-abs(v))))) }
        }
        if let tape = Tape.recording(self) {
            // d/dx log σ(x) = σ(−x)
            tape.append(out) {
                mapBinary(self.count, self.data, out.grad!.data, self.gradient().data, accumulate: true) { x, dy in dy * sigmoid(-x) }
            }
        }
        return out
    }

    /// GELU with the exact erf: x · Φ(x).
    public func gelu() -> Tensor {
        let out = Tensor.result(shape)
        mapUnary(count, data, out.data) { x in 0.5 * x * (1 + erf(x * 0.707_106_77)) }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                // d/dx x·Φ(x) = Φ(x) + x·φ(x)
                mapBinary(self.count, self.data, out.grad!.data, self.gradient().data, accumulate: true) { x, dy in
                    let cdf = 0.5 * (1 + erf(x * 0.707_106_77))
                    let pdf = 0.398_942_28 * MMTensor.exp(-0.5 * x * x)
                    return dy * (cdf + x * pdf)
                }
            }
        }
        return out
    }

    /// QuickGELU, OpenAI CLIP's activation: x · σ(1.702 x).
    public func quickGelu() -> Tensor {
        let out = Tensor.result(shape)
        mapUnary(count, data, out.data) { x in x * sigmoid(1.702 * x) }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                mapBinary(self.count, self.data, out.grad!.data, self.gradient().data, accumulate: true) { x, dy in
                    let s = sigmoid(1.702 * x)
                    return dy * (s + 1.702 * x * s * (1 - s))
                }
            }
        }
        return out
    }
}
