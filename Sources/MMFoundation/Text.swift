/// Text helpers shared by every reader and writer of text in mm.
public enum Text {
    /// The lines of `text`, split at LF, CRLF and a lone CR (Swift treats "\r\n" as one
    /// Character, so splitting on "\n" alone reads a Windows file as one line). As
    /// `split(omittingEmptySubsequences: false)`: a final line break leaves an empty last line,
    /// so line numbers are 1 + the index. After `maxSplits` breaks the rest is one last line.
    public static func lines(_ text: String, maxSplits: Int = .max) -> [Substring] {
        lineRanges(text.utf8, maxSplits: maxSplits).map { text[$0] }
    }

    /// `lines` over bytes (which need not be valid UTF-8): the range of each line, without its
    /// line break.
    @inlinable
    public static func lineRanges<C: Collection>(_ bytes: C, maxSplits: Int = .max) -> [Range<C.Index>] where C.Element == UInt8 {
        var out: [Range<C.Index>] = []
        var start = bytes.startIndex, i = start
        while i != bytes.endIndex, out.count < maxSplits {
            let b = bytes[i]
            guard b == 0x0A || b == 0x0D else { bytes.formIndex(after: &i); continue }
            out.append(start..<i)
            bytes.formIndex(after: &i)
            if b == 0x0D, i != bytes.endIndex, bytes[i] == 0x0A { bytes.formIndex(after: &i) }
            start = i
        }
        out.append(start..<bytes.endIndex)
        return out
    }

    /// `s` as one line of a names file: backslash, LF and CR become `\\`, `\n`, `\r`, so a
    /// name holding a line break cannot shift the rows after it. Names without those characters
    /// are written as they are. `unescapedLine` is the inverse.
    public static func escapedLine(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x5C || $0 == 0x0A || $0 == 0x0D }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// The name an `escapedLine` line stands for (an unknown escape is kept as written).
    public static func unescapedLine(_ line: Substring) -> String {
        guard line.utf8.contains(0x5C) else { return String(line) }
        var out = "", escaping = false
        for u in line.unicodeScalars {
            if escaping {
                switch u {
                case "n": out += "\n"
                case "r": out += "\r"
                case "\\": out += "\\"
                default: out += "\\"; out.unicodeScalars.append(u)
                }
                escaping = false
            } else if u == "\\" {
                escaping = true
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return escaping ? out + "\\" : out
    }

    /// A JSON string literal: the escapes JSON requires, everything else kept as UTF-8.
    public static func jsonQuoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// The offset of the first byte that does not start a valid UTF-8 sequence (overlong forms,
    /// surrogates and values past U+10FFFF are invalid, as in Swift's own decoder); nil when
    /// valid. Runs of ASCII are skipped eight bytes at a time.
    public static func firstInvalidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let p = bytes.baseAddress else { return nil }
        let n = bytes.count
        var i = 0
        while i < n {
            if i + 8 <= n && UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                i += 8
                continue
            }
            let b = p[i]
            if b < 0x80 { i += 1; continue }
            let length: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF  // allowed range of the second byte
            switch b {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: return i
            }
            guard i + length <= n, p[i + 1] >= low && p[i + 1] <= high else { return i }
            for k in 2..<length where p[i + k] & 0xC0 != 0x80 { return i }
            i += length
        }
        return nil
    }

    /// `firstInvalidUTF8` as a 1-based (line, column, byte) for messages; lines end at LF.
    public static func firstInvalidUTF8Position(_ bytes: [UInt8]) -> (line: Int, column: Int, byte: UInt8)? {
        guard let at = bytes.withUnsafeBufferPointer({ firstInvalidUTF8($0) }) else { return nil }
        var line = 1, lineStart = 0
        for k in 0..<at where bytes[k] == 0x0A { line += 1; lineStart = k + 1 }
        return (line, at - lineStart + 1, bytes[at])
    }

    /// `text` cut to at most `limit` characters with line breaks shown as "⏎", for quoting
    /// untrusted input inside a one-line message.
    public static func excerpt(_ text: Substring, limit: Int = 60) -> String {
        var out = ""
        for (n, c) in text.enumerated() {
            if n == limit { out += "…"; break }
            out += c.isNewline ? "⏎" : String(c)
        }
        return out
    }
}
