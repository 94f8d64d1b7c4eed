import Foundation

/// Why an image file could not be turned into pixels. The description is one line that names
/// the file, e.g. `photos/cat.jpg: truncated JPEG (Premature end of JPEG file)`.
public struct ImageError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        /// The file could not be opened or read (missing, a directory, no permission…).
        case unreadable(String)
        case empty
        /// The data stops before the image does.
        case truncated(format: String, detail: String)
        /// Bytes that are not an image format at all (text, random data…).
        case unrecognised(String)
        /// A real image format that mm does not decode (GIF, BMP, TIFF…).
        case unsupported(format: String)
        /// The decoder rejected the data.
        case corrupt(format: String, detail: String)
        case tooLarge(width: Int, height: Int)
        /// A file larger than `ImageLimits.maxFileBytes`, refused before reading.
        case fileTooLarge(bytes: Int)
    }

    public let path: String
    public let reason: Reason

    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(explanation)" }

    /// The reason alone, without the path.
    public var explanation: String {
        switch reason {
        case .unreadable(let why): return "cannot read file (\(why))"
        case .empty: return "empty file (0 bytes)"
        case .truncated(let format, let detail): return "truncated \(format) (\(detail))"
        case .unrecognised(let what): return "not an image: \(what)"
        case .unsupported(let format): return "\(format) images are not supported (convert to JPEG, PNG or WebP)"
        case .corrupt(let format, let detail): return "corrupt \(format) (\(detail))"
        case .tooLarge(let w, let h): return "image is \(w)×\(h), more than the \(ImageLimits.maxPixels) pixels allowed"
        case .fileTooLarge(let n): return "file is \(n) bytes, more than the \(ImageLimits.maxFileBytes) allowed for an image"
        }
    }
}

public enum ImageLimits {
    /// Larger images are refused before decoding: a decompression bomb must not take the machine
    /// down. 2²⁸ pixels is a 16384×16384 image, far beyond any training photo.
    public static let maxPixels = 1 << 28
    /// Larger files are refused before reading (a sparse multi-GB file named .jpg must not be
    /// read into memory); 512 MiB is far beyond any real photo.
    public static let maxFileBytes = 1 << 29
}
