/// How open_clip's split pattern
/// `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` sees one Unicode scalar.
public enum SplitClass: UInt8, Sendable {
    /// Neither space, letter nor number: runs of these form one piece.
    case other = 0
    /// `\p{L}`: runs of letters form one piece.
    case letter = 1
    /// `\p{N}`: every number scalar is a piece of its own.
    case number = 2
    /// Separates pieces and is never part of one: Python's `str.split()` whitespace (which the
    /// cleaning collapses before the pattern runs) together with the pattern's own `\s`.
    case space = 3

    /// Letters and numbers come from the Swift standard library's Unicode tables (general
    /// category L* and N*), which agree with the `regex` module's `\p{L}`/`\p{N}` on every code
    /// point assigned in the standard library's Unicode version (tested over all code points).
    public static func of(_ scalar: Unicode.Scalar) -> SplitClass {
        let v = scalar.value
        if isSpace(v) { return .space }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    /// Python's `str.isspace()` set; it contains every scalar of the `regex` module's `\s`.
    static func isSpace(_ v: UInt32) -> Bool {
        switch v {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F,
            0x205F, 0x3000:
            return true
        default:
            return false
        }
    }
}

/// The split class of every BMP scalar, so the scanner never consults Unicode tables for them.
/// Built once; lives for the process.
let bmpSplitClasses: UnsafeMutablePointer<UInt8> = {
    let table = UnsafeMutablePointer<UInt8>.allocate(capacity: 0x10000)
    for v in 0..<0x10000 {
        table[v] = Unicode.Scalar(UInt32(v)).map { SplitClass.of($0).rawValue } ?? SplitClass.other.rawValue
    }
    return table
}()

/// A literal that the pattern matches before anything else (open_clip puts its special tokens
/// first in the pattern, case-insensitively).
struct SpecialLiteral {
    let bytes: [UInt8]
    let id: Int32
}

/// Splits cleaned UTF-8 text into the pieces open_clip's pattern finds, left to right, without
/// a regex engine. The text must be valid UTF-8 (it comes from a Swift String).
struct PieceScanner {
    let base: UnsafePointer<UInt8>
    let count: Int
    let classes: UnsafePointer<UInt8>
    var position = 0

    init(_ base: UnsafePointer<UInt8>, count: Int) {
        self.base = base
        self.count = count
        self.classes = UnsafePointer(bmpSplitClasses)
    }

    /// The next piece as a byte range, and the special token id when the piece is exactly a
    /// special literal (-1 otherwise). Returns false at the end of the text.
    @inline(__always)
    mutating func next(specials: [SpecialLiteral], start: inout Int, end: inout Int, special: inout Int32) -> Bool {
        while position < count {
            let (v, length) = scalar(at: position)
            let c = splitClass(v)
            if c == SplitClass.space.rawValue {
                position += length
                continue
            }
            start = position
            special = -1
            if v == 0x3C, let (stop, id) = matchSpecial(specials) {  // '<'
                position = stop
                end = stop
                special = id
                return true
            }
            if v == 0x27, let stop = matchContraction() {  // '\''
                position = stop
                end = stop
                return true
            }
            position += length
            if c != SplitClass.number.rawValue {  // letters and "other" extend to a run of their class
                while position < count {
                    let (w, n) = scalar(at: position)
                    if splitClass(w) != c { break }
                    position += n
                }
            }
            end = position
            return true
        }
        return false
    }

    @inline(__always)
    func scalar(at i: Int) -> (UInt32, Int) {
        let b0 = UInt32(base[i])
        if b0 < 0x80 { return (b0, 1) }
        let b1 = UInt32(base[i + 1]) & 0x3F
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | b1, 2) }
        let b2 = UInt32(base[i + 2]) & 0x3F
        if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | b1 << 6 | b2, 3) }
        let b3 = UInt32(base[i + 3]) & 0x3F
        return ((b0 & 0x07) << 18 | b1 << 12 | b2 << 6 | b3, 4)
    }

    @inline(__always)
    func splitClass(_ v: UInt32) -> UInt8 {
        if v < 0x10000 { return classes[Int(v)] }
        return Unicode.Scalar(v).map { SplitClass.of($0).rawValue } ?? SplitClass.other.rawValue
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `position`, case-insensitive as in open_clip: after lowercasing
    /// the only other match is U+017F LATIN SMALL LETTER LONG S for `s`.
    @inline(__always)
    func matchContraction() -> Int? {
        let i = position + 1
        guard i < count else { return nil }
        switch base[i] {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"):
            return i + 1
        case UInt8(ascii: "r"), UInt8(ascii: "v"):
            return i + 1 < count && base[i + 1] == UInt8(ascii: "e") ? i + 2 : nil
        case UInt8(ascii: "l"):
            return i + 1 < count && base[i + 1] == UInt8(ascii: "l") ? i + 2 : nil
        case 0xC5:
            return i + 1 < count && base[i + 1] == 0xBF ? i + 2 : nil
        default:
            return nil
        }
    }

    /// The first special literal that matches at `position` (case-insensitively, so `ſ` stands for
    /// `s`); the id is -1 when the match is not byte-exact, because open_clip then BPE-encodes it.
    func matchSpecial(_ specials: [SpecialLiteral]) -> (Int, Int32)? {
        for literal in specials {
            var j = position, exact = true, matched = true
            for b in literal.bytes {
                if j < count && lowercased(base[j]) == lowercased(b) {
                    exact = exact && base[j] == b
                    j += 1
                } else if lowercased(b) == UInt8(ascii: "s") && j + 1 < count && base[j] == 0xC5 && base[j + 1] == 0xBF {
                    exact = false
                    j += 2
                } else {
                    matched = false
                    break
                }
            }
            if matched { return (j, exact ? literal.id : -1) }
        }
        return nil
    }

    @inline(__always)
    func lowercased(_ b: UInt8) -> UInt8 {
        b >= 0x41 && b <= 0x5A ? b | 0x20 : b
    }
}
