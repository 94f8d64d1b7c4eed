import Foundation
import MMTensor

/// Turns image files into normalised `[3, size, size]` float planes. Owns its decoder and every
/// scratch buffer, reused from image to image: make one per thread (MMData's loader does).
public final class ImagePipeline {
    public let transform: ImageTransform
    private let decoder = Decoder()
    private let columnTaps = Taps(), rowTaps = Taps()
    private let rows = ByteBuffer()
    private let window = ByteBuffer()
    /// (v/255 − mean)/std for every byte value and channel, computed in Float exactly as
    /// torchvision's ToTensor + Normalize do, so the lookup is bit-identical.
    private let lookup: [Float]

    public init(transform: ImageTransform) {
        self.transform = transform
        let n = transform.normalization
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - n.mean[c]) / n.std[c] }
        }
        lookup = table
    }

    /// Decodes and transforms `path` into `out` (3·size·size floats, channel planes R, G, B).
    /// `seed` drives the training augmentation and is ignored for evaluation.
    public func process(path: String, into out: UnsafeMutablePointer<Float>, seed: UInt64 = 0) throws {
        try process(.file(path), into: out, seed: seed)
    }

    /// Decodes and transforms a file or in-memory encoded image (a shard member) into `out`.
    public func process(_ input: ImageInput, into out: UnsafeMutablePointer<Float>, seed: UInt64 = 0) throws {
        var rng = SeededGenerator(seed: SeededGenerator.finalize(seed))
        var plan: ResizePlan?
        let size = transform.size
        var image = try decoder.decode(input, minShortSide: minShortSide) { width, height in
            let p =
                self.transform.augmentation.map {
                    ResizePlan.train(width: width, height: height, size: size, augmentation: $0, using: &rng)
                } ?? ResizePlan.eval(width: width, height: height, size: size)
            plan = p
            return self.prepare(p)
        }
        render(&image, plan!, into: out, rng: &rng)
    }

    /// Resizes the `crop` box of `path` (in full-size pixel coordinates) to size×size, as
    /// torchvision's `resized_crop` — the deterministic half of RandomResizedCrop.
    public func process(path: String, crop: CropBox, into out: UnsafeMutablePointer<Float>) throws {
        var plan: ResizePlan?
        let size = transform.size
        var image = try decoder.decode(path: path, minShortSide: minShortSide) { width, height in
            // A fast (DCT-scaled) decode is smaller than the file: the box shrinks with it.
            let full = self.decoderSourceSize
            let sx = Double(width) / Double(full.width), sy = Double(height) / Double(full.height)
            let left = min(Int(Double(crop.left) * sx), width - 1), top = min(Int(Double(crop.top) * sy), height - 1)
            let w = max(1, min(Int((Double(crop.width) * sx).rounded()), width - left))
            let h = max(1, min(Int((Double(crop.height) * sy).rounded()), height - top))
            let p = ResizePlan(
                x: left, y: top, width: w, height: h, outWidth: size, outHeight: size,
                columns: 0..<size, rows: 0..<size)
            plan = p
            return self.prepare(p)
        }
        precondition(
            crop.left >= 0 && crop.top >= 0 && crop.width > 0 && crop.height > 0
                && crop.left + crop.width <= image.sourceWidth && crop.top + crop.height <= image.sourceHeight,
            "crop \(crop) outside the \(image.sourceWidth)×\(image.sourceHeight) image \(path)")
        var rng = SeededGenerator(seed: 0)
        render(&image, plan!, into: out, rng: &rng)
    }

    private var minShortSide: Int? { transform.decode == .fast ? 2 * transform.size : nil }

    /// The file's own size, known once the decoder has read the header.
    private var decoderSourceSize: (width: Int, height: Int) { decoder.lastSourceSize }

    /// Computes the filter taps for `plan` and returns the source pixels they read, with a
    /// margin so that block edges of a partial JPEG decode never reach a used pixel.
    private func prepare(_ plan: ResizePlan) -> (columns: Range<Int>, rows: Range<Int>) {
        var columns = plan.columns, rows = plan.rows
        if plan.outWidth != plan.width {
            columnTaps.bicubic(inSize: plan.width, outSize: plan.outWidth, window: plan.columns)
            columns = columnTaps.span
        }
        if plan.outHeight != plan.height {
            rowTaps.bicubic(inSize: plan.height, outSize: plan.outHeight, window: plan.rows)
            rows = rowTaps.span
        }
        let margin = 16
        return (
            (plan.x + columns.lowerBound - margin)..<(plan.x + columns.upperBound + margin),
            (plan.y + rows.lowerBound - margin)..<(plan.y + rows.upperBound + margin)
        )
    }

    private func render(
        _ image: inout DecodedImage, _ plan: ResizePlan, into out: UnsafeMutablePointer<Float>,
        rng: inout SeededGenerator
    ) {
        let size = transform.size
        if image.layout == .rgba { premultiply(&image, plan) }
        let stride = (size * 4 + 15) & ~15
        window.reserve(stride * size)
        if image.layout == .indexed {
            nearest(image, plan, stride)
        } else {
            bicubic(image, plan, stride)
        }

        if let augmentation = transform.augmentation,
            augmentation.colorJitter != nil || augmentation.grayscaleProbability > 0
        {
            toPlanes(image.layout, stride, out, table: Self.unitLookup)
            ColorOps.augment(out, count: size * size, augmentation, using: &rng)
            ColorOps.normalise(out, count: size * size, transform.normalization)
        } else {
            lookup.withUnsafeBufferPointer { toPlanes(image.layout, stride, out, table: $0.baseAddress!) }
        }
    }

    /// Decodes and transforms `path` into a new `[3, size, size]` tensor.
    public func process(path: String, seed: UInt64 = 0) throws -> Tensor {
        let t = Tensor.zeros([3, transform.size, transform.size])
        try process(path: path, into: t.data, seed: seed)
        return t
    }

    /// PIL's RGBA → RGBa before resizing: each colour times alpha/255, rounded as MULDIV255.
    private func premultiply(_ image: inout DecodedImage, _ plan: ResizePlan) {
        for y in plan.y..<plan.y + plan.height {
            let row = image.address(x: plan.x, y: y)
            for x in 0..<plan.width {
                let p = row + 4 * x
                let a = UInt32(p[3])
                for c in 0..<3 {
                    let t = UInt32(p[c]) * a + 128
                    p[c] = UInt8(truncatingIfNeeded: ((t >> 8) + t) >> 8)
                }
            }
        }
    }

    /// Pillow's bicubic resize of the plan's source rectangle, computing only the kept window,
    /// with the taps `prepare` computed.
    private func bicubic(_ image: DecodedImage, _ plan: ResizePlan, _ stride: Int) {
        let size = transform.size
        // Pillow skips a pass when that axis keeps its size; the identity taps would agree anyway.
        let resizeColumns = plan.outWidth != plan.width
        let resizeRows = plan.outHeight != plan.height
        let needed = resizeRows ? rowTaps.span : plan.rows

        // Horizontal pass over the source rows the kept output rows depend on.
        var src = UnsafePointer(image.address(x: plan.x + plan.columns.lowerBound, y: plan.y + needed.lowerBound))
        var srcStride = image.stride
        if resizeColumns {
            rows.reserve(stride * needed.count)
            Resample.horizontal(
                src: image.address(x: plan.x, y: plan.y + needed.lowerBound), srcStride: image.stride,
                srcColumn: 0, rows: needed.count, taps: columnTaps, dst: rows.base, dstStride: stride)
            src = UnsafePointer(rows.base)
            srcStride = stride
        }

        // Vertical pass into the window.
        if resizeRows {
            rowTaps.shift(by: -needed.lowerBound)
            Resample.vertical(
                src: src, srcStride: srcStride, rowBytes: stride, taps: rowTaps,
                dst: window.base, dstStride: stride)
        } else {
            for y in 0..<size { (window.base + y * stride).update(from: src + y * srcStride, count: size * 4) }
        }
    }

    /// Pillow's nearest-neighbour resize (used for palette and 1-bit images).
    private func nearest(_ image: DecodedImage, _ plan: ResizePlan, _ stride: Int) {
        let xs = Resample.nearestIndices(inSize: plan.width, outSize: plan.outWidth, window: plan.columns)
        let ys = Resample.nearestIndices(inSize: plan.height, outSize: plan.outHeight, window: plan.rows)
        let out = UnsafeMutableRawPointer(window.base)
        for (r, y) in ys.enumerated() {
            let row = UnsafeRawPointer(image.address(x: plan.x, y: plan.y + y))
            for (c, x) in xs.enumerated() {
                out.storeBytes(
                    of: row.loadUnaligned(fromByteOffset: 4 * x, as: UInt32.self),
                    toByteOffset: r * stride + 4 * c, as: UInt32.self)
            }
        }
    }

    /// The window's pixels → RGB the way PIL's `convert("RGB")` does for the layout → planes.
    private func toPlanes(
        _ layout: PixelLayout, _ stride: Int, _ out: UnsafeMutablePointer<Float>,
        table: UnsafePointer<Float>
    ) {
        let size = transform.size
        let plane = size * size
        let red = table, green = table + 256, blue = table + 512
        for y in 0..<size {
            let row = window.base + y * stride
            let o = out + y * size
            switch layout {
            case .rgb, .indexed:
                for x in 0..<size {
                    let p = row + 4 * x
                    o[x] = red[Int(p[0])]
                    o[plane + x] = green[Int(p[1])]
                    o[2 * plane + x] = blue[Int(p[2])]
                }
            case .cmyk:
                for x in 0..<size {
                    let p = row + 4 * x
                    let nk = 255 - Int(p[3])
                    func channel(_ v: UInt8) -> Int {
                        let t = Int(v) * nk + 128
                        return min(max(nk - (((t >> 8) + t) >> 8), 0), 255)
                    }
                    o[x] = red[channel(p[0])]
                    o[plane + x] = green[channel(p[1])]
                    o[2 * plane + x] = blue[channel(p[2])]
                }
            case .rgba:
                for x in 0..<size {
                    let p = row + 4 * x
                    let a = Int(p[3])
                    // PIL's RGBa → RGBA undoes the premultiplication (integer division), then
                    // RGBA → RGB drops alpha.
                    func channel(_ v: UInt8) -> Int { a == 255 || a == 0 ? Int(v) : min(255 * Int(v) / a, 255) }
                    o[x] = red[channel(p[0])]
                    o[plane + x] = green[channel(p[1])]
                    o[2 * plane + x] = blue[channel(p[2])]
                }
            }
        }
    }

    private static let unitLookupStorage: UnsafeMutablePointer<Float> = {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: 768)
        for c in 0..<3 { for v in 0..<256 { p[c * 256 + v] = Float(v) / 255 } }
        return p
    }()
    private static var unitLookup: UnsafePointer<Float> { UnsafePointer(unitLookupStorage) }
}
