// Non-overlapping patches of an image batch, laid out so that a convolution with
// kernel = stride = patch becomes one matrix product with its weight [C_out, C·p·p].

extension Tensor {
    /// images [B, C, H, W] → [B, (H/p)·(W/p), C·p·p], each patch flattened as (channel, row, column)
    /// like a Conv2d weight, patches in row-major grid order.
    public func patches(size p: Int) -> Tensor {
        precondition(
            rank == 4 && shape[2] % p == 0 && shape[3] % p == 0,
            "patches of \(p) need images [B, C, H, W] with H and W divisible by \(p), got \(shape)")
        let (b, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (gh, gw) = (h / p, w / p)
        let patchLength = c * p * p
        let out = Tensor.result([b, gh * gw, patchLength])
        let x = data, y = out.data
        // Each (image, channel, patch row) copies p rows of p pixels per patch.
        func move(_ forward: Bool, _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>) {
            parallelFor(b * gh) { r in
                for item in r {
                    let (i, py) = (item / gh, item % gh)
                    for ch in 0..<c {
                        for ky in 0..<p {
                            let pixelRow = ((i * c + ch) * h + py * p + ky) * w
                            for px in 0..<gw {
                                let patch = (i * gh * gw + py * gw + px) * patchLength + (ch * p + ky) * p
                                let pixel = pixelRow + px * p
                                if forward {
                                    dst.advanced(by: patch).update(from: src + pixel, count: p)
                                } else {
                                    for k in 0..<p { dst[pixel + k] += src[patch + k] }
                                }
                            }
                        }
                    }
                }
            }
        }
        move(true, y, x)
        if let tape = Tape.recording(self) {
            tape.append(out) { move(false, self.gradient().data, out.grad!.data) }
        }
        return out
    }
}
