import CICU

/// open_clip's text cleaning (`_clean_lower`), step for step:
///
///     ftfy.fix_text → html.unescape twice → strip → collapse whitespace → lowercase
///
/// Of `ftfy.fix_text` (6.x, default settings) this reproduces every step except mojibake repair
/// (`fix_encoding`: re-decoding text that was decoded with the wrong codec): per line, until
/// nothing changes — HTML entities (only when the line has no `<`; a `<` switches this off for the
/// rest of the text, as in ftfy), C1 controls read as Windows-1252, Latin ligatures, full-width and
/// half-width forms, curly quotes, line breaks, terminal escapes, control characters, NFC.
/// Normalisation and case mapping are ICU's. Works on UTF-16 because ICU does.
enum Cleaner {
    /// The cleaned text as UTF-16.
    static func clean(_ text: String) -> [UInt16] {
        var s = fixText(Array(text.utf16))
        s = htmlUnescape(htmlUnescape(s))
        s = collapseWhitespace(s)
        return lowercase(s)
    }

    // MARK: ftfy.fix_text

    static func fixText(_ text: [UInt16]) -> [UInt16] {
        // Most text has nothing for ftfy to fix but normalisation; then per-line work is moot
        // (NFC never composes across a line feed).
        if !text.contains(where: mayNeedFixing) { return nfc(text) }
        var out: [UInt16] = []
        out.reserveCapacity(text.count)
        var unescape = true
        var position = 0
        while position < text.count {
            // A segment runs through the next line feed, or 1,000,000 code points (ftfy's bound).
            var end = position, points = 0
            while end < text.count {
                let unit = text[end]
                end += isHighSurrogate(unit) && end + 1 < text.count && isLowSurrogate(text[end + 1]) ? 2 : 1
                points += 1
                if unit == 0x0A || points == 1_000_000 { break }
            }
            let segment = Array(text[position..<end])
            if unescape && segment.contains(0x3C) { unescape = false }  // '<': maybe HTML markup
            out += fixSegment(segment, unescapeHTML: unescape)
            position = end
        }
        return out
    }

    static func fixSegment(_ segment: [UInt16], unescapeHTML: Bool) -> [UInt16] {
        var text = segment
        while true {
            let before = text
            if unescapeHTML { text = ftfyUnescape(text) }
            text = mapCharacters(text)
            text = fixLineBreaks(text)
            text = removeTerminalEscapes(text)
            if text.contains(where: isRemovedControl) { text = text.filter { !isRemovedControl($0) } }
            text = nfc(text)
            if text == before { return text }
        }
    }

    /// ftfy's character-for-character fixes, in its order: C1 controls → Windows-1252, Latin
    /// ligatures, character width, curly quotes.
    static func mapCharacters(_ text: [UInt16]) -> [UInt16] {
        guard text.contains(where: mayMap) else { return text }
        var out: [UInt16] = []
        out.reserveCapacity(text.count + 8)
        for unit in text {
            guard mayMap(unit) else { out.append(unit); continue }
            let c1 = (0x80...0x9F).contains(unit) ? windows1252[Int(unit - 0x80)] : unit
            for a in ligatures[c1] ?? [c1] {
                for b in widthMap[a] ?? [a] {
                    switch b {
                    case 0x02BC, 0x2018...0x201B: out.append(0x27)
                    case 0x201C...0x201F: out.append(0x22)
                    default: out.append(b)
                    }
                }
            }
        }
        return out
    }

    /// Whether a unit could be touched by one of ftfy's fixes other than NFC.
    @inline(__always)
    static func mayNeedFixing(_ u: UInt16) -> Bool {
        u == 0x26 || u == 0x0D || u == 0x2028 || u == 0x2029 || u == 0x1B || mayMap(u) || isRemovedControl(u)
    }

    @inline(__always)
    static func mayMap(_ u: UInt16) -> Bool {
        switch u {
        case 0x80...0x9F, 0x0132, 0x0133, 0x0149, 0x01C4...0x01CC, 0x01F1...0x01F3, 0x02BC, 0x2018...0x201F,
            0x3000, 0xFB00...0xFB06, 0xFF01...0xFFEF:
            return true
        default:
            return false
        }
    }

    /// Windows-1252 for bytes 0x80–0x9F; its five undefined bytes stay as they are ("sloppy",
    /// like ftfy's codec). Python's html.unescape uses the same table for `&#128;`–`&#159;`.
    static let windows1252: [UInt16] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
        0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178
    ]

    /// The single-character Latin ligatures ftfy takes apart (not the NFKC set: ﬅ keeps its long s).
    static let ligatures: [UInt16: [UInt16]] = {
        let pairs: [(UInt16, String)] = [
            (0x0132, "IJ"), (0x0133, "ij"), (0x0149, "\u{02BC}n"),
            (0x01F1, "DZ"), (0x01F2, "Dz"), (0x01F3, "dz"),
            (0x01C4, "D\u{017D}"), (0x01C5, "D\u{017E}"), (0x01C6, "d\u{017E}"),
            (0x01C7, "LJ"), (0x01C8, "Lj"), (0x01C9, "lj"), (0x01CA, "NJ"), (0x01CB, "Nj"), (0x01CC, "nj"),
            (0xFB00, "ff"), (0xFB01, "fi"), (0xFB02, "fl"), (0xFB03, "ffi"), (0xFB04, "ffl"),
            (0xFB05, "\u{017F}t"), (0xFB06, "st")
        ]
        return Dictionary(uniqueKeysWithValues: pairs.map { ($0.0, Array($0.1.utf16)) })
    }()

    /// Full-width and half-width forms (U+FF01–U+FFEF) to their NFKC equivalents, and the
    /// ideographic space to a space, as ftfy builds its width map.
    static let widthMap: [UInt16: [UInt16]] = {
        var map: [UInt16: [UInt16]] = [0x3000: [0x20]]
        for u in UInt16(0xFF01)...UInt16(0xFFEF) {
            let normal = nfkc([u])
            if normal != [u] { map[u] = normal }
        }
        return map
    }()

    static func fixLineBreaks(_ text: [UInt16]) -> [UInt16] {
        guard text.contains(where: { $0 == 0x0D || $0 == 0x2028 || $0 == 0x2029 || $0 == 0x85 }) else { return text }
        var out: [UInt16] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            switch text[i] {
            case 0x0D:
                out.append(0x0A)
                if i + 1 < text.count && text[i + 1] == 0x0A { i += 1 }
            case 0x2028, 0x2029, 0x85:
                out.append(0x0A)
            default:
                out.append(text[i])
            }
            i += 1
        }
        return out
    }

    /// Removes ANSI escapes, `ESC [ (digits | ;)* letter`, where digits are any Unicode decimal
    /// digits (Python's `\d`).
    static func removeTerminalEscapes(_ text: [UInt16]) -> [UInt16] {
        guard text.contains(0x1B) else { return text }
        var out: [UInt16] = []
        var i = 0
        while i < text.count {
            if text[i] == 0x1B && i + 1 < text.count && text[i + 1] == 0x5B {
                var j = i + 2
                while j < text.count {
                    if text[j] == 0x3B { j += 1; continue }
                    let (scalar, width) = scalarAt(text, j)
                    guard scalar.properties.generalCategory == .decimalNumber else { break }
                    j += width
                }
                if j < text.count && isASCIILetter(text[j]) {
                    i = j + 1
                    continue
                }
            }
            out.append(text[i])
            i += 1
        }
        return out
    }

    /// The control characters ftfy removes: C0 except tab, line feed, form feed and carriage
    /// return; DEL; deprecated Arabic format controls; the BOM; interlinear annotations and U+FFFC.
    @inline(__always)
    static func isRemovedControl(_ u: UInt16) -> Bool {
        switch u {
        case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x206A...0x206F, 0xFEFF, 0xFFF9...0xFFFC: return true
        default: return false
        }
    }

    // MARK: HTML entities

    /// ftfy's `unescape_html`: `&name;` for every HTML5 name ending in ';', the upper-case forms
    /// of lower-case names (`&EACUTE;` → É) when plain HTML would not decode them, and numeric
    /// references that decode completely.
    static func ftfyUnescape(_ text: [UInt16]) -> [UInt16] {
        guard text.contains(0x26) else { return text }
        var out: [UInt16] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            if text[i] == 0x26 {  // &#?[0-9A-Za-z]{1,24};
                var j = i + 1
                if j < text.count && text[j] == 0x23 { j += 1 }
                let run = j
                while j < text.count && j - run <= 24 && isASCIIAlphanumeric(text[j]) { j += 1 }
                if j - run >= 1 && j - run <= 24 && j < text.count && text[j] == 0x3B {
                    let match = Array(text[i...j])
                    if let value = HTMLEntities.ftfy[match] {
                        out += value
                    } else if match[1] == 0x23 {
                        let decoded = htmlUnescape(match)
                        out += decoded.contains(0x3B) ? match : decoded
                    } else {
                        out += match
                    }
                    i = j + 1
                    continue
                }
            }
            out.append(text[i])
            i += 1
        }
        return out
    }

    /// Python's `html.unescape` (HTML5 rules): numeric references with or without ';', named
    /// references, and legacy names without ';' as prefixes (`&ampx` → `&x`).
    static func htmlUnescape(_ text: [UInt16]) -> [UInt16] {
        guard text.contains(0x26) else { return text }
        var out: [UInt16] = []
        out.reserveCapacity(text.count)
        var i = 0
        let n = text.count
        while i < n {
            guard text[i] == 0x26 else { out.append(text[i]); i += 1; continue }
            var j = i + 1
            if j < n && text[j] == 0x23 {  // '#'
                j += 1
                var hex = false
                if j + 1 < n && (text[j] == 0x78 || text[j] == 0x58) && hexValue(text[j + 1]) != nil,
                    !(j < n && isASCIIDigit(text[j]))
                {
                    hex = true
                    j += 1
                }
                guard j < n && (hex ? hexValue(text[j]) != nil : isASCIIDigit(text[j])) else {
                    out.append(0x26); i += 1; continue
                }
                var value: UInt32 = 0
                while j < n, let d = hex ? hexValue(text[j]) : (isASCIIDigit(text[j]) ? UInt32(text[j] - 0x30) : nil) {
                    value = min(value * (hex ? 16 : 10) + d, 0x110000)  // saturate: anything larger is invalid
                    j += 1
                }
                if j < n && text[j] == 0x3B { j += 1 }
                out += numericReference(value)
                i = j
                continue
            }
            // [^\t\n\f <&#;]{1,32};?  — counted in code points
            var points = 0
            while j < n && points < 32 {
                let u = text[j]
                if u == 0x09 || u == 0x0A || u == 0x0C || u == 0x20 || u == 0x3C || u == 0x26 || u == 0x23 || u == 0x3B { break }
                j += isHighSurrogate(u) && j + 1 < n && isLowSurrogate(text[j + 1]) ? 2 : 1
                points += 1
            }
            guard points > 0 else { out.append(0x26); i += 1; continue }
            if j < n && text[j] == 0x3B { j += 1 }
            let name = Array(text[(i + 1)..<j])
            if let value = HTMLEntities.html5[name] {
                out += value
            } else {
                // The longest prefix (at least two characters, shorter than the name) that is an
                // entity; names are ASCII, so only the ASCII head of `name` can match.
                let asciiHead = name.prefix(while: { $0 < 0x80 }).count
                var found = false
                var x = min(asciiHead, name.count - 1)
                while x >= 2 {
                    if let value = HTMLEntities.html5[Array(name[0..<x])] {
                        out += value
                        out += name[x...]
                        found = true
                        break
                    }
                    x -= 1
                }
                if !found {
                    out.append(0x26)
                    out += name
                }
            }
            i = j
        }
        return out
    }

    static func numericReference(_ v: UInt32) -> [UInt16] {
        switch v {
        case 0x00: return [0xFFFD]
        case 0x0D: return [0x0D]
        case 0x80...0x9F: return [windows1252[Int(v - 0x80)]]
        case 0xD800...0xDFFF, 0x110000...: return [0xFFFD]
        case 0x01...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0xFDD0...0xFDEF: return []
        default:
            if v & 0xFFFE == 0xFFFE { return [] }  // U+xFFFE and U+xFFFF in every plane
            return Array(String(Unicode.Scalar(v)!).utf16)
        }
    }

    // MARK: whitespace and case

    /// Python's `" ".join(text.split())`.
    static func collapseWhitespace(_ text: [UInt16]) -> [UInt16] {
        var out: [UInt16] = []
        out.reserveCapacity(text.count)
        var pendingSpace = false
        for u in text {
            if SplitClass.isSpace(UInt32(u)) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(0x20); pendingSpace = false }
                out.append(u)
            }
        }
        return out
    }

    static func lowercase(_ text: [UInt16]) -> [UInt16] {
        if text.allSatisfy({ $0 < 0x80 }) {
            return text.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        }
        return icu(text, mm_icu_lower)
    }

    static func uppercase(_ text: [UInt16]) -> [UInt16] { icu(text, mm_icu_upper) }

    static func nfc(_ text: [UInt16]) -> [UInt16] {
        let settled = text.withUnsafeBufferPointer { mm_icu_nfc_prefix($0.baseAddress, Int32($0.count)) }
        if Int(settled) == text.count { return text }
        return icu(text, mm_icu_nfc)
    }

    static func nfkc(_ text: [UInt16]) -> [UInt16] { icu(text, mm_icu_nfkc) }

    /// Runs an ICU string transform, growing the output once if the first guess is too small.
    /// ICU only fails here on invalid arguments, so a failure keeps the text as it was.
    static func icu(
        _ text: [UInt16],
        _ transform: (UnsafePointer<UInt16>?, Int32, UnsafeMutablePointer<UInt16>?, Int32) -> Int32
    ) -> [UInt16] {
        if text.isEmpty { return text }
        var capacity = text.count + text.count / 2 + 8
        while true {
            var out = [UInt16](repeating: 0, count: capacity)
            let needed = text.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    transform(src.baseAddress, Int32(src.count), dst.baseAddress, Int32(dst.count))
                }
            }
            if needed < 0 { return text }
            if Int(needed) <= capacity {
                out.removeLast(capacity - Int(needed))
                return out
            }
            capacity = Int(needed)
        }
    }

    // MARK: small helpers

    @inline(__always) static func isHighSurrogate(_ u: UInt16) -> Bool { u & 0xFC00 == 0xD800 }
    @inline(__always) static func isLowSurrogate(_ u: UInt16) -> Bool { u & 0xFC00 == 0xDC00 }
    @inline(__always) static func isASCIIDigit(_ u: UInt16) -> Bool { u >= 0x30 && u <= 0x39 }
    @inline(__always) static func isASCIILetter(_ u: UInt16) -> Bool { (u | 0x20) >= 0x61 && (u | 0x20) <= 0x7A }
    @inline(__always) static func isASCIIAlphanumeric(_ u: UInt16) -> Bool { isASCIIDigit(u) || isASCIILetter(u) }

    static func hexValue(_ u: UInt16) -> UInt32? {
        switch u {
        case 0x30...0x39: return UInt32(u - 0x30)
        case 0x41...0x46: return UInt32(u - 0x41 + 10)
        case 0x61...0x66: return UInt32(u - 0x61 + 10)
        default: return nil
        }
    }

    /// The scalar starting at `i` and how many units it takes (a lone surrogate reads as U+FFFD).
    static func scalarAt(_ text: [UInt16], _ i: Int) -> (Unicode.Scalar, Int) {
        let u = text[i]
        if isHighSurrogate(u) && i + 1 < text.count && isLowSurrogate(text[i + 1]) {
            let v = 0x10000 + (UInt32(u - 0xD800) << 10) + UInt32(text[i + 1] - 0xDC00)
            return (Unicode.Scalar(v)!, 2)
        }
        return (Unicode.Scalar(UInt32(u)) ?? "\u{FFFD}", 1)
    }
}

/// The HTML5 named references, parsed once from the generated table.
enum HTMLEntities {
    /// Name (as listed, with or without ';') → value, both UTF-16.
    static let html5: [[UInt16]: [UInt16]] = {
        var table: [[UInt16]: [UInt16]] = [:]
        for line in html5EntityTable.split(separator: "\n") {
            let parts = line.split(separator: "\t")
            let value = parts[1].split(separator: " ").flatMap { hex -> [UInt16] in
                Array(String(Unicode.Scalar(UInt32(hex, radix: 16)!)!).utf16)
            }
            table[Array(parts[0].utf16)] = value
        }
        return table
    }()

    /// ftfy's entity table: `&name;` for names ending in ';', plus `&NAME;` for lower-case names
    /// whose upper-case form plain HTML leaves alone, decoding to the upper-cased value.
    static let ftfy: [[UInt16]: [UInt16]] = {
        var table: [[UInt16]: [UInt16]] = [:]
        for (name, value) in html5 where name.last == 0x3B {
            table[[0x26] + name] = value
            if !name.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) {
                let upper = [0x26] + name.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
                if Cleaner.htmlUnescape(upper) == upper {
                    table[upper] = Cleaner.uppercase(value)
                }
            }
        }
        return table
    }()
}
