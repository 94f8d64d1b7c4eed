/// Reads a caption file: one caption a line, UTF-8. A final line break does not start another
/// caption; a carriage return before a line break is dropped. Invalid UTF-8 is an error naming
/// the line, or, with `replaceInvalid`, each invalid sequence becomes U+FFFD.
public func readCaptions(_ path: String, replaceInvalid: Bool = false) throws -> [String] {
    let bytes = try readBytes(path)
    var captions: [String] = []
    var start = 0
    var line = 1
    while start < bytes.count {
        var end = start
        while end < bytes.count && bytes[end] != 0x0A { end += 1 }
        var stop = end
        if stop > start && bytes[stop - 1] == 0x0D { stop -= 1 }
        let slice = bytes[start..<stop]
        if !replaceInvalid, let (_, column, byte) = firstInvalidUTF8(slice) {
            throw TokenizerError.invalidUTF8(path: path, line: line, column: column, byte: byte)
        }
        captions.append(String(decoding: slice, as: UTF8.self))
        start = end + 1
        line += 1
    }
    return captions
}
