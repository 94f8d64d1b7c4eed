/// An image decoded to 8-bit RGB, rows top to bottom, pixels interleaved R, G, B.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]
}

/// Decodes JPEG, PNG and WebP files to RGB the way PIL's `Image.open(path).convert("RGB")` does.
/// Reuses its buffers: one per thread.
public final class ImageDecoder {
    private let decoder = Decoder()

    public init() {}

    /// The format of `path`, from its first bytes.
    public static func format(of bytes: [UInt8]) -> ImageFormat {
        bytes.withUnsafeBytes { ImageFormat.detect($0) }
    }

    /// Decodes `path` at full size; with `minShortSide`, a JPEG is decoded at the smallest
    /// DCT scale (1/8, 1/4, 1/2) whose shorter side is still at least that long.
    public func decode(path: String, minShortSide: Int? = nil) throws -> RGBImage {
        let image = try decoder.decode(path: path, minShortSide: minShortSide)
        let n = image.width * image.height
        var rgb = [UInt8](repeating: 0, count: 3 * n)
        let p = image.pixels
        for i in 0..<n {
            let s = p + 4 * i
            switch image.layout {
            case .rgb, .indexed, .rgba:
                rgb[3 * i] = s[0]; rgb[3 * i + 1] = s[1]; rgb[3 * i + 2] = s[2]
            case .cmyk:
                let nk = 255 - Int(s[3])
                for c in 0..<3 {
                    let t = Int(s[c]) * nk + 128
                    rgb[3 * i + c] = UInt8(min(max(nk - (((t >> 8) + t) >> 8), 0), 255))
                }
            }
        }
        return RGBImage(width: image.width, height: image.height, pixels: rgb)
    }
}
