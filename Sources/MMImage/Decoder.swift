import CJPEG
import CPNG
import CWebP
import Foundation
import MMFoundation

/// How the 4 bytes of each decoded pixel are to be read, following the mode PIL opens the file
/// in — which decides how open_clip resizes it (`Image.resize` depends on the mode) and how it
/// becomes RGB afterwards.
enum PixelLayout {
    /// R, G, B, unused. JPEG colour and greyscale (replicated), PNG RGB and greyscale.
    case rgb
    /// C, M, Y, K as PIL holds them (Adobe-inverted on disk); resized as four channels.
    case cmyk
    /// R, G, B, A (grey replicated). PIL resizes these premultiplied and drops alpha after.
    case rgba
    /// Palette or 1-bit images (PIL modes "P", "1"), expanded to R, G, B, unused. PIL resizes
    /// these with nearest neighbour.
    case indexed
}

/// A decoded image in a decoder's buffer, valid until the decoder's next call. The buffer may
/// hold only part of the image: the region that was asked for, widened to whole JPEG blocks.
struct DecodedImage {
    /// The size of the whole (possibly DCT-scaled) image.
    var width: Int
    var height: Int
    var layout: PixelLayout
    /// Pixel (originX, originY) of the image; rows `stride` bytes apart, 4 bytes per pixel.
    var pixels: UnsafeMutablePointer<UInt8>
    var originX = 0, originY = 0
    var stride: Int
    var format: ImageFormat
    /// The size stored in the file (larger than width×height after DCT scaling).
    var sourceWidth: Int
    var sourceHeight: Int

    /// Where pixel (x, y) of the image is in the buffer (it must lie in the decoded region).
    @inline(__always)
    func address(x: Int, y: Int) -> UnsafeMutablePointer<UInt8> { pixels + (y - originY) * stride + (x - originX) * 4 }
}

/// Where an image's encoded bytes are: a file, or bytes already in memory (a member of a tar
/// shard) with the name errors should give.
public enum ImageInput: Sendable {
    case file(String)
    case bytes([UInt8], name: String)

    /// The name errors give: the path, or the member's name.
    public var name: String {
        switch self {
        case .file(let path): return path
        case .bytes(_, let name): return name
        }
    }
}

/// Reads files and decodes JPEG/PNG/WebP into a reused buffer. Not thread-safe: one per thread.
final class Decoder {
    private let jpeg: OpaquePointer
    private let file = ByteBuffer(capacity: 1 << 20)
    private let pixels = ByteBuffer(capacity: 1 << 20)
    private var fileCount = 0
    /// The size stored in the file last decoded (before any DCT scaling).
    private(set) var lastSourceSize = (width: 0, height: 0)

    init() {
        guard let j = mm_jpeg_create() else { fatalError("out of memory creating a JPEG decompressor") }
        jpeg = j
    }

    deinit { mm_jpeg_destroy(jpeg) }

    /// The part of a width×height image a caller needs (columns, rows); nil for all of it.
    typealias Region = (_ width: Int, _ height: Int) -> (columns: Range<Int>, rows: Range<Int>)?

    /// Decodes `path`. With `minShortSide`, a JPEG is decoded with libjpeg's DCT-domain scaling
    /// at the smallest scale 1/8, 1/4 or 1/2 whose shorter side is still at least `minShortSide`. `region`
    /// is told the image size before the pixels are decoded; a JPEG then decodes only what it
    /// returns (libjpeg skips the IDCT and colour conversion elsewhere).
    func decode(path: String, minShortSide: Int? = nil, region: Region? = nil) throws -> DecodedImage {
        try decode(.file(path), minShortSide: minShortSide, region: region)
    }

    /// Decodes a file or in-memory bytes (see `decode(path:…)`).
    func decode(_ input: ImageInput, minShortSide: Int? = nil, region: Region? = nil) throws -> DecodedImage {
        let path = input.name
        switch input {
        case .file(let path):
            try read(path)
        case .bytes(let bytes, _):
            file.reserve(bytes.count)
            bytes.withUnsafeBufferPointer { if let b = $0.baseAddress { file.base.update(from: b, count: $0.count) } }
            fileCount = bytes.count
        }
        let bytes = UnsafeRawBufferPointer(start: file.base, count: fileCount)
        if fileCount == 0 { throw ImageError(path: path, reason: .empty) }
        if let name = ImageFormat.truncatedSignature(bytes) {
            throw ImageError(path: path, reason: .truncated(format: name, detail: "the file ends after \(fileCount) bytes"))
        }
        switch ImageFormat.detect(bytes) {
        case .jpeg: return try decodeJPEG(path, minShortSide: minShortSide, region: region)
        case .png: return try decodePNG(path, region: region)
        case .webp: return try decodeWebP(path, region: region)
        case .unsupported(let name): throw ImageError(path: path, reason: .unsupported(format: name))
        case .unknown: throw ImageError(path: path, reason: .unrecognised(ImageFormat.describeUnknown(bytes)))
        }
    }

    /// Reads a regular file of at most `ImageLimits.maxFileBytes` into `file`, after its first
    /// bytes show an image format: a FIFO, a device or a huge file of anything is refused
    /// before it is read.
    private func read(_ path: String) throws {
        fileCount = 0
        let source: ReadableFile
        do { source = try ReadableFile(path, maxSize: ImageLimits.maxFileBytes) } catch let error as FileError {
            if case .tooLarge(_, let size, _) = error { throw ImageError(path: path, reason: .fileTooLarge(bytes: size)) }
            throw ImageError(path: path, reason: .unreadable(error.reason))
        }
        if source.size == 0 { throw ImageError(path: path, reason: .empty) }
        if source.size > file.capacity { file.reserve(source.size) }
        do {
            fileCount = try source.read(into: file.base, count: min(source.size, 64), at: 0)
            switch ImageFormat.detect(UnsafeRawBufferPointer(start: file.base, count: fileCount)) {
            case .jpeg, .png, .webp:
                fileCount += try source.read(into: file.base + fileCount, count: source.size - fileCount, at: fileCount)
            case .unsupported, .unknown:
                break  // the first bytes say enough for the error
            }
        } catch let error as FileError {
            throw ImageError(path: path, reason: .unreadable(error.reason))
        }
    }

    fileprivate func checkSize(_ path: String, _ width: Int, _ height: Int) throws {
        if width <= 0 || height <= 0 {
            throw ImageError(path: path, reason: .corrupt(format: "image", detail: "size \(width)×\(height)"))
        }
        if width * height > ImageLimits.maxPixels { throw ImageError(path: path, reason: .tooLarge(width: width, height: height)) }
    }

    private func jpegFailure(_ path: String) -> ImageError {
        let message = String(cString: mm_jpeg_message(jpeg))
        if message.hasPrefix("Premature end") {
            return ImageError(path: path, reason: .truncated(format: "JPEG", detail: message))
        }
        return ImageError(path: path, reason: .corrupt(format: "JPEG", detail: message))
    }

    private func decodeJPEG(_ path: String, minShortSide: Int?, region: Region?) throws -> DecodedImage {
        var w: Int32 = 0, h: Int32 = 0
        var color = MM_JPEG_COLOR
        guard mm_jpeg_read_header(jpeg, file.base, fileCount, &w, &h, &color) == 0 else { throw jpegFailure(path) }
        do { try checkSize(path, Int(w), Int(h)) } catch { mm_jpeg_abort(jpeg); throw error }
        lastSourceSize = (Int(w), Int(h))

        // libjpeg-turbo's output size at scale n/8 is ceil(size·n/8). Of its scales, 1/8, 1/4
        // and 1/2 have SIMD IDCTs; 3/8, 5/8… do not, and measured slower than 1/2 while further
        // from the exact result, so only those three are used.
        var scale = 8
        if let target = minShortSide {
            let short = Int(min(w, h))
            scale = [1, 2, 4].first { (short * $0 + 7) / 8 >= target } ?? 8
        }
        var ow: Int32 = 0, oh: Int32 = 0
        guard mm_jpeg_start(jpeg, Int32(scale), &ow, &oh) == 0 else { throw jpegFailure(path) }
        let width = Int(ow), height = Int(oh)
        var columns = 0..<width, rows = 0..<height
        if let needed = region?(width, height) {
            columns = needed.columns.clamped(to: columns)
            rows = needed.rows.clamped(to: rows)
        }
        var x0: Int32 = 0, delivered: Int32 = 0
        guard mm_jpeg_begin(jpeg, Int32(columns.lowerBound), Int32(columns.count), &x0, &delivered) == 0 else {
            throw jpegFailure(path)
        }
        let stride = Int(delivered) * 4
        pixels.reserve(stride * rows.count)
        guard mm_jpeg_read_rows(jpeg, pixels.base, stride, Int32(rows.lowerBound), Int32(rows.count)) == 0 else {
            throw jpegFailure(path)
        }

        var layout = PixelLayout.rgb
        if color == MM_JPEG_CMYK {
            // PIL always assumes Adobe's inverted CMYK ("CMYK;I") and holds 255 − stored value.
            invert(pixels.base, count: stride * rows.count)
            layout = .cmyk
        }
        return DecodedImage(
            width: width, height: height, layout: layout, pixels: pixels.base,
            originX: Int(x0), originY: rows.lowerBound, stride: stride, format: .jpeg,
            sourceWidth: Int(w), sourceHeight: Int(h))
    }

    private func decodePNG(_ path: String, region: Region?) throws -> DecodedImage {
        guard let png = mm_png_open(file.base, fileCount) else {
            throw ImageError(path: path, reason: .corrupt(format: "PNG", detail: "out of memory"))
        }
        defer { mm_png_destroy(png) }
        func failure() -> ImageError {
            let message = String(cString: mm_png_message(png))
            if message.contains("truncated") || message.contains("Not enough image data") {
                return ImageError(path: path, reason: .truncated(format: "PNG", detail: message))
            }
            return ImageError(path: path, reason: .corrupt(format: "PNG", detail: message))
        }
        if mm_png_failed(png) != 0 { throw failure() }
        var w: Int32 = 0, h: Int32 = 0, depth: Int32 = 0, gray: Int32 = 0
        var kind = MM_PNG_RGB
        mm_png_info(png, &w, &h, &kind, &depth, &gray)
        let width = Int(w), height = Int(h)
        try checkSize(path, width, height)
        lastSourceSize = (width, height)
        _ = region?(width, height)  // PNG has no cheap partial decode: always all of it
        pixels.reserve(width * height * 4)
        guard mm_png_read(png, pixels.base, width * 4) == 0 else { throw failure() }
        let layout: PixelLayout = kind == MM_PNG_ALPHA ? .rgba : kind == MM_PNG_INDEXED ? .indexed : .rgb
        return DecodedImage(
            width: width, height: height, layout: layout, pixels: pixels.base, stride: width * 4, format: .png,
            sourceWidth: width, sourceHeight: height)
    }
}

extension Decoder {
    /// WebP as Pillow opens it: the first frame on the canvas, RGBA when the container's alpha
    /// flag is set (resized premultiplied, like PNG with alpha), else RGB. An animated file gives
    /// its first frame, as `Image.open` does before any `seek`.
    fileprivate func decodeWebP(_ path: String, region: Region?) throws -> DecodedImage {
        var info = mm_webp_info()
        var message: UnsafePointer<CChar>?
        guard mm_webp_read_info(file.base, fileCount, &info, &message) == 0 else {
            let detail = message.map { String(cString: $0) } ?? "invalid"
            let truncated = detail.contains("ends")
            throw ImageError(path: path, reason: truncated ? .truncated(format: "WebP", detail: detail) : .corrupt(format: "WebP", detail: detail))
        }
        let width = Int(info.width), height = Int(info.height)
        try checkSize(path, width, height)
        lastSourceSize = (width, height)
        _ = region?(width, height)  // no partial decode
        pixels.reserve(width * height * 4)
        guard mm_webp_decode_first_frame(file.base, fileCount, pixels.base, width * 4, &message) == 0 else {
            throw ImageError(path: path, reason: .corrupt(format: "WebP", detail: message.map { String(cString: $0) } ?? "invalid"))
        }
        return DecodedImage(
            width: width, height: height, layout: info.has_alpha != 0 ? .rgba : .rgb, pixels: pixels.base,
            stride: width * 4, format: .webp, sourceWidth: width, sourceHeight: height)
    }
}

@inline(__always)
private func invert(_ p: UnsafeMutablePointer<UInt8>, count: Int) {
    var i = 0
    while i + 32 <= count {
        let raw = UnsafeMutableRawPointer(p + i)
        raw.storeBytes(of: ~raw.loadUnaligned(as: SIMD32<UInt8>.self), as: SIMD32<UInt8>.self)
        i += 32
    }
    while i < count { p[i] = ~p[i]; i += 1 }
}
