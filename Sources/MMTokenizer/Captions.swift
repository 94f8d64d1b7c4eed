import MMFoundation

/// Reads a caption file: one caption a line, UTF-8. Lines end at LF, CRLF or CR; a final line
/// break does not start another caption. Invalid UTF-8 is an error naming the line, or, with
/// `replaceInvalid`, each invalid sequence becomes U+FFFD.
public func readCaptions(_ path: String, replaceInvalid: Bool = false) throws -> [String] {
    let bytes = try readBytes(path)
    var lines = Text.lineRanges(bytes)
    if lines.last?.isEmpty == true { lines.removeLast() }
    return try lines.enumerated().map { n, range in
        let slice = bytes[range]
        if !replaceInvalid, let at = slice.withUnsafeBufferPointer({ Text.firstInvalidUTF8($0) }) {
            throw TokenizerError.invalidUTF8(path: path, line: n + 1, column: at + 1, byte: slice[range.lowerBound + at])
        }
        return String(decoding: slice, as: UTF8.self)
    }
}
