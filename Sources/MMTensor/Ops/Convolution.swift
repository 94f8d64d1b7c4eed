import Foundation

// The ops of a convolutional image tower (open_clip's ModifiedResNet): Conv2d without bias,
// AvgPool2d with kernel = stride, and BatchNorm2d, all over [B, C, H, W].
//
// A convolution is one matrix product per image, W [O, C·k·k] · columns [C·k·k, H'·W'], where the
// columns unfold the image (im2col; a 1×1 convolution with stride 1 and no padding is the image
// itself). Images are split into one contiguous block per thread, each thread unfolding one
// image at a time into its own buffer and calling single-threaded BLAS, so memory stays at one
// image's columns per thread whatever the batch. Backward unfolds again rather than keeping the
// columns of the whole batch alive until then.

/// The sizes of one convolution.
private struct ConvGeometry {
    let channels, height, width, kernel, stride, padding: Int
    var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
    var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
    /// Rows of the unfolded image: (channel, kernel row, kernel column), as the weight's layout.
    var columnRows: Int { channels * kernel * kernel }
    var columnLength: Int { outHeight * outWidth }
    var isPointwise: Bool { kernel == 1 && stride == 1 && padding == 0 }

    /// The output columns ox whose input column ox·stride − padding + kx lies inside the image.
    func validColumns(_ kx: Int) -> Range<Int> {
        let first = padding - kx
        let lo = first <= 0 ? 0 : min(outWidth, (first + stride - 1) / stride)
        let last = width - 1 + padding - kx
        let hi = last < 0 ? 0 : min(outWidth, last / stride + 1)
        return lo..<max(lo, hi)
    }

    /// Runs `move(row of columns, input row, valid output columns, first input column)` for every
    /// output row of every (channel, ky, kx) whose input row is inside the image, and
    /// `outside(row of columns)` for the others.
    @inline(__always)
    func forEachRow(
        _ move: (_ columnRow: Int, _ inputRow: Int, _ valid: Range<Int>, _ inputColumn: Int) -> Void,
        outside: (_ columnRow: Int) -> Void
    ) {
        let (oh, ow) = (outHeight, outWidth)
        for ch in 0..<channels {
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let row = ((ch * kernel + ky) * kernel + kx) * oh * ow
                    let valid = validColumns(kx)
                    for oy in 0..<oh {
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= height {
                            outside(row + oy * ow)
                        } else {
                            move(row + oy * ow, (ch * height + iy) * width, valid, valid.lowerBound * stride - padding + kx)
                        }
                    }
                }
            }
        }
    }
}

/// columns [C·k·k, H'·W'] ← one image [C, H, W], zero outside the image.
private func unfold(_ x: UnsafePointer<Float>, into columns: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let (ow, s) = (g.outWidth, g.stride)
    g.forEachRow(
        { row, input, valid, column in
            let dst = columns + row, src = x + input + column
            dst.update(repeating: 0, count: valid.lowerBound)
            if s == 1 {
                (dst + valid.lowerBound).update(from: src, count: valid.count)
            } else {
                for j in 0..<valid.count { dst[valid.lowerBound + j] = src[j * s] }
            }
            (dst + valid.upperBound).update(repeating: 0, count: ow - valid.upperBound)
        },
        outside: { row in (columns + row).update(repeating: 0, count: ow) })
}

/// dx [C, H, W] += the columns folded back onto the pixels they were unfolded from (col2im).
private func fold(_ columns: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let s = g.stride
    g.forEachRow(
        { row, input, valid, column in
            let src = columns + row + valid.lowerBound, dst = dx + input + column
            if s == 1 {
                accumulateRow(dst, src, valid.count)
            } else {
                for j in 0..<valid.count { dst[j * s] += src[j] }
            }
        },
        outside: { _ in })
}

/// A batch split into contiguous blocks of images: one block per thread, each making
/// single-threaded products, when there are at least as many images as threads; else one block
/// whose products are split across the threads.
private struct ImageBlocks {
    let batch, count: Int
    init(_ batch: Int) {
        self.batch = batch
        count = Threads.count > 1 && batch >= Threads.count ? Threads.count : 1
    }
    var parallelProducts: Bool { count == 1 }

    func forEachBlock(_ body: (_ block: Int, _ images: Range<Int>) -> Void) {
        parallelFor(count) { r in
            for block in r { body(block, (batch * block / count)..<(batch * (block + 1) / count)) }
        }
    }
}

extension Tensor {
    /// PyTorch's Conv2d without bias (dilation 1, groups 1): self [B, C, H, W], weight [O, C, k, k]
    /// → [B, O, H', W'] with H' = (H + 2·padding − k) / stride + 1 (floor), zero padding.
    public func conv2d(_ weight: Tensor, stride: Int = 1, padding: Int = 0) -> Tensor {
        precondition(
            rank == 4 && weight.rank == 4 && weight.shape[1] == shape[1] && weight.shape[2] == weight.shape[3],
            "conv2d needs input [B, C, H, W] and a square weight [O, C, k, k], got \(shape) and \(weight.shape)")
        precondition(stride >= 1 && padding >= 0, "conv2d: stride \(stride) must be ≥ 1 and padding \(padding) ≥ 0")
        let g = ConvGeometry(
            channels: shape[1], height: shape[2], width: shape[3], kernel: weight.shape[2], stride: stride, padding: padding)
        precondition(
            g.height + 2 * padding >= g.kernel && g.width + 2 * padding >= g.kernel,
            "conv2d: kernel \(g.kernel) larger than the padded input \(shape) (padding \(padding))")
        let (batch, o) = (shape[0], weight.shape[0])
        let (rowsK, p) = (g.columnRows, g.columnLength)
        let out = Tensor.result([batch, o, g.outHeight, g.outWidth])
        let x = data, w = weight.data, y = out.data
        let imageSize = g.channels * g.height * g.width

        let blocks = ImageBlocks(batch), parallel = blocks.parallelProducts
        // One image's columns per block (none for a pointwise convolution).
        let columnSize = g.isPointwise ? 0 : rowsK * p
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, blocks.count * columnSize))
        defer { scratch.deallocate() }
        blocks.forEachBlock { block, images in
            let buffer = scratch + block * columnSize
            for i in images {
                let xi = x + i * imageSize
                if !g.isPointwise { unfold(xi, into: buffer, g) }
                sgemm(
                    transA: false, transB: false, m: o, n: p, k: rowsK, a: w, lda: rowsK,
                    b: g.isPointwise ? xi : buffer, ldb: p, c: y + i * o * p, ldc: p, parallel: parallel)
            }
        }

        if let tape = Tape.recording(self, weight) {
            tape.append(out) {
                let dy = out.grad!.data
                let wantsX = self.requiresGrad, wantsW = weight.requiresGrad
                let (dx, accumulateX) = wantsX ? self.gradientForWriting() : (x, false)
                // Per block: an image's columns, their gradient, and a partial weight gradient.
                let partialSize = wantsW ? o * rowsK : 0
                let perBlock = 2 * columnSize + partialSize
                let work = UnsafeMutablePointer<Float>.allocate(capacity: max(1, blocks.count * perBlock))
                defer { work.deallocate() }
                blocks.forEachBlock { block, images in
                    let columns = work + block * perBlock, dcolumns = columns + columnSize
                    let dw = dcolumns + columnSize
                    dw.update(repeating: 0, count: partialSize)
                    for i in images {
                        let dyi = dy + i * o * p, xi = x + i * imageSize, dxi = dx + i * imageSize
                        if wantsW {
                            // dW += dY_i · columns_iᵀ
                            if !g.isPointwise { unfold(xi, into: columns, g) }
                            sgemm(
                                transA: false, transB: true, m: o, n: rowsK, k: p, a: dyi, lda: p,
                                b: g.isPointwise ? xi : columns, ldb: p, beta: 1, c: dw, ldc: rowsK, parallel: parallel)
                        }
                        guard wantsX else { continue }
                        // ∂columns = Wᵀ · dY_i, folded back onto the image's pixels.
                        if g.isPointwise {
                            sgemm(
                                transA: true, transB: false, m: rowsK, n: p, k: o, a: w, lda: rowsK, b: dyi, ldb: p,
                                beta: accumulateX ? 1 : 0, c: dxi, ldc: p, parallel: parallel)
                        } else {
                            sgemm(
                                transA: true, transB: false, m: rowsK, n: p, k: o, a: w, lda: rowsK, b: dyi, ldb: p,
                                c: dcolumns, ldc: p, parallel: parallel)
                            if !accumulateX { dxi.update(repeating: 0, count: imageSize) }
                            fold(dcolumns, into: dxi, g)
                        }
                    }
                }
                if wantsW {
                    let dw = weight.gradient().data
                    for block in 0..<blocks.count { accumulate(dw, work + block * perBlock + 2 * columnSize, partialSize) }
                }
            }
        }
        return out
    }

    /// PyTorch's AvgPool2d(kernel_size: k, stride: k) (no padding, floor, so a remainder row/column
    /// is dropped): [B, C, H, W] → [B, C, H / k, W / k]. k == 1 returns self.
    public func avgPool2d(_ k: Int) -> Tensor {
        precondition(
            rank == 4 && k >= 1 && shape[2] >= k && shape[3] >= k,
            "avgPool2d(\(k)) needs images [B, C, H, W] of at least \(k)×\(k), got \(shape)")
        if k == 1 { return self }
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let (oh, ow) = (h / k, w / k)
        let out = Tensor.result([shape[0], shape[1], oh, ow])
        let x = data, y = out.data
        let scale = 1 / Float(k * k)
        parallelFor(planes, grain: max(1, 4096 / (h * w))) { r in
            for plane in r {
                let xp = x + plane * h * w, yp = y + plane * oh * ow
                for oy in 0..<oh {
                    let yr = yp + oy * ow
                    yr.update(repeating: 0, count: ow)
                    for ky in 0..<k {
                        let xr = xp + (oy * k + ky) * w
                        for ox in 0..<ow {
                            var s: Float = 0
                            for kx in 0..<k { s += xr[ox * k + kx] }
                            yr[ox] += s
                        }
                    }
                    for ox in 0..<ow { yr[ox] *= scale }
                }
            }
        }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                // Each input pixel of a window gets 1/k² of its output's gradient; dropped ones none.
                let dy = out.grad!.data, dx = self.gradient().data
                parallelFor(planes, grain: max(1, 4096 / (h * w))) { r in
                    for plane in r {
                        let dxp = dx + plane * h * w, dyp = dy + plane * oh * ow
                        for oy in 0..<oh {
                            for ky in 0..<k {
                                let dxr = dxp + (oy * k + ky) * w
                                for ox in 0..<ow {
                                    let g = dyp[oy * ow + ox] * scale
                                    for kx in 0..<k { dxr[ox * k + kx] += g }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// PyTorch's BatchNorm2d (affine, track_running_stats) over [B, C, H, W]. Training: normalise
    /// with the batch's per-channel mean and biased variance, and update the running statistics in
    /// place, outside the tape, as torch does: running_mean ← (1−m)·running_mean + m·mean,
    /// running_var ← (1−m)·running_var + m·unbiased_var (unbiased: n/(n−1), n = B·H·W).
    /// Evaluation: normalise with the running statistics. Gradients to self, weight, bias in both modes.
    /// With `relu`, max(·, 0) of the result, in the same pass (a ResNet's BN → ReLU).
    public func batchNorm2d(
        weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5, relu: Bool = false
    ) -> Tensor {
        precondition(rank == 4, "batchNorm2d needs [B, C, H, W], got \(shape)")
        let (batch, c, plane) = (shape[0], shape[1], shape[2] * shape[3])
        for (name, t) in [("weight", weight), ("bias", bias), ("running mean", runningMean), ("running var", runningVar)] {
            precondition(t.shape == [c], "batchNorm2d: \(name) \(t.shape) does not match the \(c) channels of \(shape)")
        }
        let n = batch * plane
        precondition(!training || n > 1, "batchNorm2d in training needs more than one value per channel, got \(shape)")
        let out = Tensor.result(shape)
        // Per channel: the mean and 1/σ the output was normalised with, kept for backward.
        let stats = Tensor.result([c, 2])
        let x = data, y = out.data, st = stats.data
        let gamma = weight.data, beta = bias.data, rm = runningMean.data, rv = runningVar.data
        parallelFor(c) { r in
            for ch in r {
                var mean = rm[ch], variance = rv[ch]
                if training {
                    // Two passes; each plane sums in float lanes, the planes add up in Double.
                    var total = 0.0
                    for i in 0..<batch { total += Double(horizontalSum(planeSum(x + (i * c + ch) * plane, plane) { $0 })) }
                    mean = Float(total / Double(n))
                    var squares = 0.0
                    for i in 0..<batch {
                        squares += Double(horizontalSum(planeSum(x + (i * c + ch) * plane, plane) { v in (v - mean) * (v - mean) }))
                    }
                    let biased = squares / Double(n)
                    variance = Float(biased)
                    rm[ch] = (1 - momentum) * rm[ch] + momentum * mean
                    rv[ch] = (1 - momentum) * rv[ch] + momentum * Float(biased * Double(n) / Double(n - 1))
                }
                let rstd = 1 / (variance + eps).squareRoot()
                st[2 * ch] = mean
                st[2 * ch + 1] = rstd
                // y = x·a + b with a = γ/σ, b = β − μ·a
                let a = gamma[ch] * rstd, b = beta[ch] - mean * a
                for i in 0..<batch {
                    let xp = x + (i * c + ch) * plane, yp = y + (i * c + ch) * plane
                    var j = 0
                    while j < plane {
                        var v = load(xp, j, plane) * a + b
                        if relu { v = v.replacing(with: 0, where: v .< 0) }
                        store(v, yp, j, plane)
                        j += 8
                    }
                }
            }
        }
        if let tape = Tape.recording(self, weight, bias) {
            tape.append(out) {
                let st = stats.data  // through the tensor, so that the closure keeps it alive
                let dyRaw = out.grad!.data
                // ∂(pre-activation): the ReLU passes the gradient where its output is positive.
                @inline(__always) func dyAt(_ p: Int, _ j: Int) -> Vec {
                    let d = load(dyRaw + p, j, plane)
                    return relu ? d.replacing(with: 0, where: load(y + p, j, plane) .<= 0) : d
                }
                let wantsX = self.requiresGrad
                let (dx, accumulate) = wantsX ? self.gradientForWriting() : (dyRaw, false)
                let dgamma = weight.requiresGrad ? weight.gradient().data : nil
                let dbeta = bias.requiresGrad ? bias.gradient().data : nil
                parallelFor(c) { r in
                    for ch in r {
                        let mean = st[2 * ch], rstd = st[2 * ch + 1]
                        // Σ dy and Σ dy·x̂ over the channel
                        var sumDy = 0.0, sumDyXhat = 0.0
                        for i in 0..<batch {
                            let p = (i * c + ch) * plane
                            var s1 = Vec(repeating: 0), s2 = Vec(repeating: 0)
                            var j = 0
                            while j < plane {
                                let d = maskTail(dyAt(p, j), valid: plane - j)
                                s1 += d
                                s2 += d * (load(x + p, j, plane) - mean)
                                j += 8
                            }
                            sumDy += Double(horizontalSum(s1))
                            sumDyXhat += Double(horizontalSum(s2))
                        }
                        sumDyXhat *= Double(rstd)
                        dgamma?[ch] += Float(sumDyXhat)
                        dbeta?[ch] += Float(sumDy)
                        guard wantsX else { continue }
                        // training: dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)); evaluation: dx = γ/σ · dy
                        let a = weight.data[ch] * rstd
                        let meanDy = training ? Float(sumDy / Double(n)) : 0
                        let meanDyXhat = training ? Float(sumDyXhat / Double(n)) : 0
                        for i in 0..<batch {
                            let p = (i * c + ch) * plane
                            var j = 0
                            while j < plane {
                                let xhat = (load(x + p, j, plane) - mean) * rstd
                                var v = a * (dyAt(p, j) - meanDy - xhat * meanDyXhat)
                                if accumulate { v += load(dx + p, j, plane) }
                                store(v, dx + p, j, plane)
                                j += 8
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// The lane sums of f(x) over one plane of `count` floats (the tail's padding lanes excluded).
@inline(__always)
private func planeSum(_ x: UnsafePointer<Float>, _ count: Int, _ f: (Vec) -> Vec) -> Vec {
    var s = Vec(repeating: 0)
    var j = 0
    while j < count {
        s += maskTail(f(load(x, j, count)), valid: count - j)
        j += 8
    }
    return s
}
