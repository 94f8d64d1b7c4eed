/// Bad input to the tokenizer: unreadable or malformed vocabulary files, invalid caption files.
/// Each description is one line that names the file (and line); command-line advice is the
/// CLI's to add.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A file could not be opened or read.
    case unreadable(path: String, reason: String)
    /// A vocabulary file is not what it should be; `line` is 1-based, 0 when not about one line.
    case malformedVocabulary(path: String, line: Int, reason: String)
    /// A caption file line is not valid UTF-8.
    case invalidUTF8(path: String, line: Int, column: Int, byte: UInt8)
    /// No vocabulary was found where one was looked for.
    case vocabularyNotFound(searched: [String])
    /// A training request that cannot be met (e.g. a size below the byte alphabet).
    case invalidTrainingRequest(String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            return "\(path): cannot read (\(reason))"
        case let .malformedVocabulary(path, line, reason):
            let place = line > 0 ? "\(path):\(line)" : path
            return "\(place): malformed vocabulary: \(reason)"
        case let .invalidUTF8(path, line, column, byte):
            let hex = String(byte, radix: 16, uppercase: true)
            return "\(path):\(line): invalid UTF-8 (byte 0x\(hex.count == 1 ? "0" + hex : hex) at byte \(column) of the line)"
        case let .vocabularyNotFound(searched):
            return
                "CLIP vocabulary not found (looked in \(searched.joined(separator: ", "))); set MM_VOCAB to the merges file or a vocabulary directory"
        case let .invalidTrainingRequest(reason):
            return "cannot train a vocabulary: \(reason)"
        }
    }
}
