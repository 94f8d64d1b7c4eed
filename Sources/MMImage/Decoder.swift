import CJPEG
import CPNG
import Foundation

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

/// A decoded image in a decoder's buffer, valid until the decoder's next call.
struct DecodedImage {
    var width: Int
    var height: Int
    var layout: PixelLayout
    /// `width * 4` bytes per row.
    var pixels: UnsafeMutablePointer<UInt8>
    var format: ImageFormat
    /// The size stored in the file (larger than width×height after DCT scaling).
    var sourceWidth: Int
    var sourceHeight: Int
}

/// Reads files and decodes JPEG/PNG into a reused buffer. Not thread-safe: one per thread.
final class Decoder {
    private let jpeg: OpaquePointer
    private let file = ByteBuffer(capacity: 1 << 20)
    private let pixels = ByteBuffer(capacity: 1 << 20)
    private var fileCount = 0

    init() {
        guard let j = mm_jpeg_create() else { fatalError("out of memory creating a JPEG decompressor") }
        jpeg = j
    }

    deinit { mm_jpeg_destroy(jpeg) }

    /// Decodes `path`. With `minShortSide`, a JPEG is decoded with libjpeg's DCT-domain scaling
    /// at the smallest scale n/8 whose shorter side is still at least `minShortSide`.
    func decode(path: String, minShortSide: Int? = nil) throws -> DecodedImage {
        try read(path)
        let bytes = UnsafeRawBufferPointer(start: file.base, count: fileCount)
        if fileCount == 0 { throw ImageError(path: path, reason: .empty) }
        switch ImageFormat.detect(bytes) {
        case .jpeg: return try decodeJPEG(path, minShortSide: minShortSide)
        case .png: return try decodePNG(path)
        case .unsupported(let name): throw ImageError(path: path, reason: .unsupported(format: name))
        case .unknown: throw ImageError(path: path, reason: .unrecognised(ImageFormat.describeUnknown(bytes)))
        }
    }

    private func read(_ path: String) throws {
        fileCount = 0
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError(path: path, reason: .unreadable(String(cString: strerror(errno)))) }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFDIR { throw ImageError(path: path, reason: .unreadable("is a directory")) }
            if Int(info.st_size) > file.capacity { file.reserve(Int(info.st_size)) }
        }
        while true {
            if fileCount == file.capacity { file.grow(keeping: fileCount, to: max(2 * file.capacity, 1 << 16)) }
            let n = Foundation.read(fd, file.base + fileCount, file.capacity - fileCount)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError(path: path, reason: .unreadable(String(cString: strerror(errno))))
            }
            fileCount += n
        }
    }

    private func checkSize(_ path: String, _ width: Int, _ height: Int) throws {
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

    private func decodeJPEG(_ path: String, minShortSide: Int?) throws -> DecodedImage {
        var w: Int32 = 0, h: Int32 = 0
        var color = MM_JPEG_COLOR
        guard mm_jpeg_read_header(jpeg, file.base, fileCount, &w, &h, &color) == 0 else { throw jpegFailure(path) }
        do { try checkSize(path, Int(w), Int(h)) } catch { mm_jpeg_abort(jpeg); throw error }

        // libjpeg-turbo's output size at scale n/8 is ceil(size·n/8).
        var scale = 8
        if let target = minShortSide {
            let short = Int(min(w, h))
            scale = (1...8).first { (short * $0 + 7) / 8 >= target } ?? 8
        }
        var ow: Int32 = 0, oh: Int32 = 0
        guard mm_jpeg_start(jpeg, Int32(scale), &ow, &oh) == 0 else { throw jpegFailure(path) }
        let width = Int(ow), height = Int(oh)
        pixels.reserve(width * height * 4)
        guard mm_jpeg_read(jpeg, pixels.base, width * 4) == 0 else { throw jpegFailure(path) }

        var layout = PixelLayout.rgb
        if color == MM_JPEG_CMYK {
            // PIL always assumes Adobe's inverted CMYK ("CMYK;I") and holds 255 − stored value.
            invert(pixels.base, count: width * height * 4)
            layout = .cmyk
        }
        return DecodedImage(width: width, height: height, layout: layout, pixels: pixels.base, format: .jpeg,
                            sourceWidth: Int(w), sourceHeight: Int(h))
    }

    private func decodePNG(_ path: String) throws -> DecodedImage {
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
        pixels.reserve(width * height * 4)
        guard mm_png_read(png, pixels.base, width * 4) == 0 else { throw failure() }
        let layout: PixelLayout = kind == MM_PNG_ALPHA ? .rgba : kind == MM_PNG_INDEXED ? .indexed : .rgb
        return DecodedImage(width: width, height: height, layout: layout, pixels: pixels.base, format: .png,
                            sourceWidth: width, sourceHeight: height)
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
