// Resampling that reproduces Pillow's `Image.resize` bit for bit (libImaging/Resample.c and
// Geometry.c, read, not copied): separable antialiased filters whose support widens with the
// downscale factor, coefficients normalised in Double then rounded to 22-bit fixed point, a
// horizontal pass into 8-bit rows, then a vertical pass — each rounding and clamping to 0…255.
//
// Only the output pixels inside `window` are computed: a center crop after the resize then
// costs nothing, and each output pixel depends only on its own taps, so the result is the same.

/// Filter taps for one axis: for each output pixel, the first source pixel and the weights.
final class Taps {
    /// Source index of each output pixel's first tap (relative to the source region).
    private(set) var first: [Int32] = []
    /// How many taps each output pixel really has.
    private(set) var count: [Int32] = []
    /// `stride` weights per output pixel, zero beyond `count`; `stride` is even so that the
    /// horizontal kernel can take taps two at a time.
    private(set) var weights: [Int32] = []
    private(set) var stride = 0
    /// The weights again, a pair of taps per 8-lane vector (w0 ×4, w1 ×4) for the horizontal
    /// kernel, which multiplies two 4-byte pixels at once.
    private(set) var pairs: [SIMD8<Int32>] = []
    private var scratch: [Double] = []

    static let precisionBits: Int32 = 22

    /// Pillow's cubic convolution kernel with a = −0.5, evaluated in the same order.
    @inline(__always)
    static func bicubic(_ t: Double) -> Double {
        let a = -0.5
        let x = t < 0 ? -t : t
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// Taps resizing `inSize` source pixels to `outSize`, for the outputs in `window`.
    func bicubic(inSize: Int, outSize: Int, window: Range<Int>) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 2.0 * filterScale
        stride = (Int(support.rounded(.up)) * 2 + 1 + 1) & ~1
        let inverse = 1.0 / filterScale
        first.removeAll(keepingCapacity: true)
        count.removeAll(keepingCapacity: true)
        weights.removeAll(keepingCapacity: true)
        weights.reserveCapacity(window.count * stride)
        if scratch.count < stride { scratch = Array(repeating: 0, count: stride) }

        for xx in window {
            let center = (Double(xx) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)
            let n = min(Int(center + support + 0.5), inSize) - xmin
            var total = 0.0
            for x in 0..<n {
                let w = Self.bicubic((Double(x + xmin) - center + 0.5) * inverse)
                scratch[x] = w
                total += w
            }
            let one = Double(1 << Self.precisionBits)
            for x in 0..<stride {
                var k = x < n ? scratch[x] : 0
                if total != 0 && x < n { k /= total }
                weights.append(Int32(k < 0 ? -0.5 + k * one : 0.5 + k * one))
            }
            first.append(Int32(xmin))
            count.append(Int32(n))
        }
        pairs.removeAll(keepingCapacity: true)
        pairs.reserveCapacity(weights.count / 2)
        for i in Swift.stride(from: 0, to: weights.count, by: 2) {
            let w0 = weights[i], w1 = weights[i + 1]
            pairs.append(SIMD8(w0, w0, w0, w0, w1, w1, w1, w1))
        }
    }

    /// The union of source indices the taps touch.
    var span: Range<Int> {
        guard let lo = first.first else { return 0..<0 }
        var hi = 0
        for i in first.indices { hi = max(hi, Int(first[i] + count[i])) }
        return Int(lo)..<hi
    }

    /// Moves every tap by `offset` source pixels (after cutting rows out of a larger buffer).
    func shift(by offset: Int) {
        for i in first.indices { first[i] += Int32(offset) }
    }

    func withBuffers<R>(_ body: (UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafePointer<Int32>) -> R) -> R {
        first.withUnsafeBufferPointer { f in
            count.withUnsafeBufferPointer { c in
                weights.withUnsafeBufferPointer { w in body(f.baseAddress!, c.baseAddress!, w.baseAddress!) }
            }
        }
    }
}

enum Resample {
    /// Horizontal pass on 4-byte pixels: `rows` rows from `src` (starting at `srcColumn`) into
    /// `dst`, one output pixel per tap set. Taps are taken two at a time in one 8-lane vector.
    static func horizontal(
        src: UnsafePointer<UInt8>, srcStride: Int, srcColumn: Int, rows: Int,
        taps: Taps, dst: UnsafeMutablePointer<UInt8>, dstStride: Int
    ) {
        let outCount = taps.first.count
        let pairsPerPixel = taps.stride / 2
        let half = SIMD4<Int32>(repeating: 1 << (Taps.precisionBits - 1))
        taps.first.withUnsafeBufferPointer { first in
            taps.count.withUnsafeBufferPointer { count in
                taps.pairs.withUnsafeBufferPointer { pairs in
                    for r in 0..<rows {
                        let line = UnsafeRawPointer(src + r * srcStride + srcColumn * 4)
                        let out = dst + r * dstStride
                        for xx in 0..<outCount {
                            let p = line + Int(first[xx]) * 4
                            let k = pairs.baseAddress! + xx * pairsPerPixel
                            let used = (Int(count[xx]) + 1) / 2
                            // Two accumulators: the multiplies of consecutive pairs overlap.
                            var a = SIMD8<Int32>(repeating: 0), b = SIMD8<Int32>(repeating: 0)
                            var t = 0
                            while t + 1 < used {
                                a &+= SIMD8<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: 8 * t, as: SIMD8<UInt8>.self)) &* k[t]
                                b &+= SIMD8<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: 8 * t + 8, as: SIMD8<UInt8>.self)) &* k[t + 1]
                                t += 2
                            }
                            if t < used {
                                a &+= SIMD8<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: 8 * t, as: SIMD8<UInt8>.self)) &* k[t]
                            }
                            a &+= b
                            store(clip(a.lowHalf &+ a.highHalf &+ half), to: out + xx * 4)
                        }
                    }
                }
            }
        }
    }

    /// Vertical pass: each output row is a weighted sum of `src` rows, 16 bytes at a time.
    /// `rowBytes` is rounded up to whole vectors; the buffers have the slack for it.
    static func vertical(
        src: UnsafePointer<UInt8>, srcStride: Int, rowBytes: Int, taps: Taps,
        dst: UnsafeMutablePointer<UInt8>, dstStride: Int
    ) {
        let outCount = taps.first.count
        taps.withBuffers { first, count, weights in
            for yy in 0..<outCount {
                let k = weights + yy * taps.stride
                let top = src + Int(first[yy]) * srcStride
                let n = Int(count[yy])
                let out = dst + yy * dstStride
                var x = 0
                while x < rowBytes {
                    var acc = SIMD16<Int32>(repeating: 1 << (Taps.precisionBits - 1))
                    var p = UnsafeRawPointer(top + x)
                    for t in 0..<n {
                        let px = SIMD16<Int32>(truncatingIfNeeded: p.loadUnaligned(as: SIMD16<UInt8>.self))
                        acc &+= px &* SIMD16(repeating: k[t])
                        p += srcStride
                    }
                    let v = (acc &>> Taps.precisionBits).clamped(lowerBound: .zero, upperBound: SIMD16(repeating: 255))
                    UnsafeMutableRawPointer(out + x).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v), as: SIMD16<UInt8>.self)
                    x += 16
                }
            }
        }
    }

    @inline(__always)
    private static func clip(_ sum: SIMD4<Int32>) -> SIMD4<Int32> {
        (sum &>> Taps.precisionBits).clamped(lowerBound: .zero, upperBound: SIMD4(repeating: 255))
    }

    @inline(__always)
    private static func store(_ v: SIMD4<Int32>, to p: UnsafeMutablePointer<UInt8>) {
        UnsafeMutableRawPointer(p).storeBytes(of: SIMD4<UInt8>(truncatingIfNeeded: v), as: SIMD4<UInt8>.self)
    }

    /// Source indices Pillow's nearest-neighbour resize picks (`ImagingScaleAffine`): positions
    /// accumulate step by step in Double, so they are accumulated the same way here.
    static func nearestIndices(inSize: Int, outSize: Int, window: Range<Int>) -> [Int] {
        let step = Double(inSize) / Double(outSize)
        var position = step * 0.5
        var result: [Int] = []
        result.reserveCapacity(window.count)
        for x in 0..<window.upperBound {
            if x >= window.lowerBound { result.append(min(max(Int(position), 0), inSize - 1)) }
            position += step
        }
        return result
    }
}
