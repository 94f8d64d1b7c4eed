import MMFoundation

/// Image container formats, recognised from the file's first bytes (never from its name).
public enum ImageFormat: Sendable, Equatable {
    case jpeg
    case png
    case webp
    /// A known format that mm does not decode, by name ("GIF", "TIFF"…).
    case unsupported(String)
    /// No known signature.
    case unknown

    /// The format whose signature starts `bytes`.
    public static func detect(_ bytes: UnsafeRawBufferPointer) -> ImageFormat {
        func starts(_ signature: [UInt8], at offset: Int = 0) -> Bool {
            guard bytes.count >= offset + signature.count else { return false }
            for (i, b) in signature.enumerated() where bytes[offset + i] != b { return false }
            return true
        }
        if starts([0xFF, 0xD8, 0xFF]) { return .jpeg }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) { return .unsupported("GIF") }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return .webp }
        if starts(Array("BM".utf8)) && bytes.count >= 26 { return .unsupported("BMP") }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return .unsupported("TIFF") }
        if starts(Array("ftyp".utf8), at: 4) {
            let brand = bytes.count >= 12 ? String(decoding: bytes[8..<12], as: UTF8.self) : ""
            if brand.hasPrefix("avi") { return .unsupported("AVIF") }
            if brand.hasPrefix("hei") || brand.hasPrefix("mif") { return .unsupported("HEIF") }
        }
        if starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]) || starts([0xFF, 0x4F, 0xFF, 0x51]) { return .unsupported("JPEG 2000") }
        if starts([0xFF, 0x0A]) || starts([0x00, 0x00, 0x00, 0x0C, 0x4A, 0x58, 0x4C, 0x20]) { return .unsupported("JPEG XL") }
        if starts(Array("8BPS".utf8)) { return .unsupported("PSD") }
        if starts(Array("qoif".utf8)) { return .unsupported("QOI") }
        if starts([0x00, 0x00, 0x01, 0x00]) && bytes.count >= 22 { return .unsupported("ICO") }
        return .unknown
    }

    /// The format whose signature the file starts but stops inside (a JPEG of two bytes is a
    /// truncated JPEG, not text).
    public static func truncatedSignature(_ bytes: UnsafeRawBufferPointer) -> String? {
        for (name, signature) in [("JPEG", [0xFF, 0xD8, 0xFF]), ("PNG", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])] as [(String, [UInt8])]
        where !bytes.isEmpty && bytes.count < signature.count && signature.starts(with: bytes) {
            return name
        }
        return nil
    }

    /// A short account of unrecognised bytes for error messages.
    static func describeUnknown(_ bytes: UnsafeRawBufferPointer) -> String {
        let head = bytes.prefix(64)
        // Text: printable ASCII and whitespace, with any other bytes valid UTF-8 (the sample
        // may cut the last character short).
        let printable = head.allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D || $0 >= 0x80 }
        let invalid = Array(head).withUnsafeBufferPointer { Text.firstInvalidUTF8($0) }
        let utf8 = invalid == nil || (bytes.count > head.count && invalid! >= head.count - 3)
        if printable && utf8 && !head.isEmpty { return "the file looks like text, not image data" }
        let hex = bytes.prefix(8).map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")
        return "unknown format (first bytes \(hex))"
    }
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
