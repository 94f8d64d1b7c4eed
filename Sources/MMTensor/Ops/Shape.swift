// Reductions and layout ops: sum, mean, reshape, permute/transpose, slice, concatenate.

extension Tensor {
    /// The sum of all elements, as a 0-d tensor.
    public func sum() -> Tensor {
        let out = Tensor.result([])
        var total: Double = 0
        // Accumulate 8-wide blocks of 4096 in float, blocks in double: exact enough for any size.
        var i = 0
        while i < count {
            let end = min(i + 4096, count)
            var v = Vec(repeating: 0)
            var j = i
            while j < end { v += load(data, j, end); j += 8 }
            total += Double(horizontalSum(v))
            i = end
        }
        out.data[0] = Float(total)
        if let tape = Tape.recording(self) {
            tape.append(out) {
                let g = out.grad!.data[0]
                let dx = self.gradient().data
                parallelFor(self.count, grain: 1 << 15) { r in for i in r { dx[i] += g } }
            }
        }
        return out
    }

    /// The mean of all elements, as a 0-d tensor.
    public func mean() -> Tensor { sum().scaled(by: 1 / Float(max(count, 1))) }

    /// The same elements under a new shape (no copy). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var shape = newShape
        if let free = shape.firstIndex(of: -1) {
            let known = shape.enumerated().filter { $0.offset != free }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(self.shape) to \(newShape)")
            shape[free] = count / known
        }
        precondition(shape.reduce(1, *) == count, "cannot reshape \(self.shape) (\(count) elements) to \(newShape)")
        let out = Tensor(shape: shape, storage: storage, requiresGrad: false, isLeaf: false)
        if let tape = Tape.recording(self) {
            tape.append(out) { accumulate(self.gradient().data, out.grad!.data, self.count) }
        }
        return out
    }

    /// Reorders dimensions: output dimension i is input dimension `dims[i]`.
    public func permuted(_ dims: [Int]) -> Tensor {
        precondition(rank > 0, "permute of a 0-d tensor")
        let dims = dims.map(axis)
        precondition(dims.sorted() == Array(0..<rank), "permutation \(dims) invalid for shape \(shape)")
        let outShape = dims.map { shape[$0] }
        let out = Tensor.result(outShape)
        permuteCopy(from: data, shape: shape, dims: dims, to: out.data, accumulate: false)
        if let tape = Tape.recording(self) {
            tape.append(out) {
                var inverse = [Int](repeating: 0, count: dims.count)
                for (i, d) in dims.enumerated() { inverse[d] = i }
                permuteCopy(from: out.grad!.data, shape: outShape, dims: inverse, to: self.gradient().data, accumulate: true)
            }
        }
        return out
    }

    /// Swaps two dimensions.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var dims = Array(0..<rank)
        dims.swapAt(axis(a), axis(b))
        return permuted(dims)
    }

    /// Elements `range` along `axis`.
    public func slice(axis a: Int, _ range: Range<Int>) -> Tensor {
        let ax = axis(a)
        precondition(
            range.lowerBound >= 0 && range.upperBound <= shape[ax],
            "slice \(range) out of bounds for dimension \(ax) of \(shape)")
        var outShape = shape
        outShape[ax] = range.count
        let out = Tensor.result(outShape)
        let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
        let src = shape[ax] * inner, dst = range.count * inner, offset = range.lowerBound * inner
        for o in 0..<outer {
            (out.data + o * dst).update(from: data + o * src + offset, count: dst)
        }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                let g = self.gradient().data, dy = out.grad!.data
                for o in 0..<outer { accumulate(g + o * src + offset, dy + o * dst, dst) }
            }
        }
        return out
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    public static func concatenate(_ parts: [Tensor], axis a: Int) -> Tensor {
        precondition(!parts.isEmpty, "concatenate of nothing")
        let ax = parts[0].axis(a)
        var outShape = parts[0].shape
        outShape[ax] = 0
        for p in parts {
            var s = p.shape
            precondition(s.count == outShape.count, "concatenate: ranks differ (\(parts.map(\.shape)))")
            outShape[ax] += s[ax]
            s[ax] = 0
            var o = outShape
            o[ax] = 0
            precondition(s == o, "concatenate: shapes \(parts.map(\.shape)) differ outside axis \(ax)")
        }
        let out = Tensor.result(outShape)
        let outer = outShape[..<ax].reduce(1, *), inner = outShape[(ax + 1)...].reduce(1, *)
        let dstRow = outShape[ax] * inner
        var offset = 0
        var offsets: [Int] = []
        for p in parts {
            offsets.append(offset)
            let n = p.shape[ax] * inner
            for o in 0..<outer { (out.data + o * dstRow + offset).update(from: p.data + o * n, count: n) }
            offset += n
        }
        if let tape = Tape.current, parts.contains(where: \.requiresGrad) {
            tape.append(out) {
                let dy = out.grad!.data
                for (p, off) in zip(parts, offsets) where p.requiresGrad {
                    let n = p.shape[ax] * inner, g = p.gradient().data
                    for o in 0..<outer { accumulate(g + o * n, dy + o * dstRow + off, n) }
                }
            }
        }
        return out
    }
}

/// Copies a tensor of `shape` into the layout permuted by `dims` (or adds into it).
private func permuteCopy(from x: UnsafePointer<Float>, shape: [Int], dims: [Int], to y: UnsafeMutablePointer<Float>, accumulate: Bool) {
    let rank = shape.count
    var strides = [Int](repeating: 1, count: rank)
    for i in stride(from: rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
    let outShape = dims.map { shape[$0] }
    let inStrides = dims.map { strides[$0] }  // input stride of each output dimension
    let count = shape.reduce(1, *)
    guard count > 0 else { return }
    let innerN = outShape[rank - 1], innerStride = inStrides[rank - 1]
    let rows = count / innerN
    parallelFor(rows, grain: max(1, 4096 / innerN)) { r in
        var index = [Int](repeating: 0, count: rank)  // multi-index of the row's first element
        var rem = r.lowerBound
        for d in stride(from: rank - 2, through: 0, by: -1) { index[d] = rem % outShape[d]; rem /= outShape[d] }
        for row in r {
            var src = 0
            for d in 0..<(rank - 1) { src += index[d] * inStrides[d] }
            let dst = y + row * innerN
            if accumulate {
                for j in 0..<innerN { dst[j] += x[src + j * innerStride] }
            } else {
                for j in 0..<innerN { dst[j] = x[src + j * innerStride] }
            }
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                if index[d] < outShape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
    }
}
