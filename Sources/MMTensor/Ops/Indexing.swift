// Ops indexed by integer ids: embedding lookup, one row per batch item (EOT pooling),
// and cross-entropy against integer targets.

import Foundation

extension Tensor {
    /// Rows of `weight` [V, D] picked by `ids` → [ids.shape…, D].
    public static func embedding(_ weight: Tensor, ids: IntTensor) -> Tensor {
        precondition(weight.rank == 2, "embedding table must be [V, D], got \(weight.shape)")
        let (v, d) = (weight.shape[0], weight.shape[1])
        for id in ids.values { precondition(id >= 0 && Int(id) < v, "embedding id \(id) outside a table of \(v) rows") }
        let out = Tensor.result(ids.shape + [d])
        let w = weight.data, y = out.data
        ids.values.withUnsafeBufferPointer { idp in
            parallelFor(ids.count, grain: max(1, 4096 / d)) { r in
                for i in r { (y + i * d).update(from: w + Int(idp[i]) * d, count: d) }
            }
        }
        if let tape = Tape.recording(weight) {
            tape.append(out) {
                let dw = weight.gradient().data, dy = out.grad!.data
                // Serial: repeated ids add into the same row.
                for (i, id) in ids.values.enumerated() { accumulateRow(dw + Int(id) * d, dy + i * d, d) }
            }
        }
        return out
    }

    /// Rows of each sequence picked by index: x [B, L, D] with index [B] → [B, D] (pooling at the
    /// EOT token), or with index [B, K] → [B, K, D] (the tokens patch dropout keeps).
    public func gatherRows(_ index: IntTensor) -> Tensor {
        precondition(
            rank == 3 && (index.shape == [shape[0]] || (index.shape.count == 2 && index.shape[0] == shape[0])),
            "gatherRows expects x [B, L, D] and index [B] or [B, K], got \(shape) and \(index.shape)")
        let (b, l, d) = (shape[0], shape[1], shape[2])
        let k = index.shape.count == 1 ? 1 : index.shape[1]
        for i in index.values { precondition(i >= 0 && Int(i) < l, "gatherRows index \(i) outside length \(l)") }
        let out = Tensor.result(index.shape.count == 1 ? [b, d] : [b, k, d])
        let x = data, y = out.data
        index.values.withUnsafeBufferPointer { ip in
            parallelFor(b, grain: max(1, 4096 / (k * d))) { r in
                for i in r {
                    for j in 0..<k {
                        let row = i * l + Int(ip[i * k + j])
                        (y + (i * k + j) * d).update(from: x + row * d, count: d)
                    }
                }
            }
        }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                let dx = self.gradient().data, dy = out.grad!.data
                // Items write disjoint rows; within one, a repeated index adds into the same row.
                index.values.withUnsafeBufferPointer { ip in
                    parallelFor(b, grain: max(1, 4096 / (k * d))) { r in
                        for i in r {
                            for j in 0..<k {
                                let row = i * l + Int(ip[i * k + j])
                                accumulateRow(dx + row * d, dy + (i * k + j) * d, d)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Mean cross-entropy of `logits` [N, C] against class ids `targets` [N], as a 0-d tensor.
    public func crossEntropy(targets: IntTensor) -> Tensor {
        precondition(
            rank == 2 && targets.shape == [shape[0]], "crossEntropy expects logits [N, C] and targets [N], got \(shape) and \(targets.shape)")
        let (n, c) = (shape[0], shape[1])
        for t in targets.values { precondition(t >= 0 && Int(t) < c, "target class \(t) outside \(c) classes") }
        var total: Double = 0
        for i in 0..<n {
            // −log p computed from the logits, stable for confident rows.
            let row = data + i * c
            let m = rowMax(row, c)
            var s: Double = 0
            for j in 0..<c { s += Foundation.exp(Double(row[j] - m)) }
            total += Double(m) + Foundation.log(s) - Double(row[Int(targets.values[i])])
        }
        let out = Tensor.result([])
        out.data[0] = Float(total / Double(max(n, 1)))
        if let tape = Tape.recording(self) {
            let probs = Tensor.result([n, c])
            softmaxRows(data, probs.data, rows: n, d: c)
            tape.append(out) {
                // d/dlogits = (softmax − onehot) / N
                let g = out.grad!.data[0] / Float(max(n, 1))
                let dx = self.gradient().data
                for i in 0..<n {
                    let row = dx + i * c, p = probs.data + i * c
                    for j in 0..<c { row[j] += g * p[j] }
                    row[Int(targets.values[i])] -= g
                }
            }
        }
        return out
    }
}

/// y += scale · x over one row of n.
@inline(__always)
func accumulateRow(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, scale: Float = 1) {
    var i = 0
    while i < n { store(load(y, i, n) + scale * load(x, i, n), y, i, n); i += 8 }
}
