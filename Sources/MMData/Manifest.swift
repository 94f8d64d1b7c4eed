import Foundation
import MMFoundation

/// A list of image–caption samples in open_clip's CSV/TSV format.
///
/// Rules:
/// - **Separator**: `options.separator` when given, else from the extension: `.csv` → comma,
///   anything else (`.tsv`, `.txt`…) → tab (open_clip's default `--csv-separator`).
/// - **Quoting**: with a non-tab separator, fields follow CSV quoting (RFC 4180, Python's `csv`):
///   a field that starts with `"` runs to the next lone `"`, `""` inside it stands for `"`, and
///   separators and line breaks inside it are data. Tab-separated fields are taken verbatim
///   (quotes included): a TSV field cannot contain a tab or a line break. `options.quoting`
///   overrides either default.
/// - **Header**: the first non-blank line is a header when one of its fields is exactly
///   `imageKey`. Otherwise, with the default keys, the file is header-less and every line is
///   `path<sep>caption`; with a key set explicitly (or a first line naming the caption column but
///   not the image column) it is an error naming the missing column.
/// - **Lines**: every sample line has exactly as many fields as the header (2 without one). Blank
///   lines are ignored; a final line break is optional; CRLF line ends and a UTF-8 byte-order mark
///   are accepted. Empty captions are allowed; empty image paths and labels are not.
/// - **Paths** are relative to the manifest's directory; absolute paths are kept.
/// - **Bad lines** (wrong field count, empty path, invalid UTF-8, bad quoting) throw
///   `DataError.badLine` naming file:line, or with `skipBad` are skipped and listed in `badLines`.
public struct Manifest: Sendable {
    public struct Options: Sendable, Equatable {
        public var imageKey: String
        /// nil: read no captions (e.g. an evaluation list of `filepath<TAB>label`).
        public var captionKey: String?
        /// A column of class names for evaluation manifests (`label` in `test_labels.tsv`).
        public var labelKey: String?
        /// nil: from the file extension.
        public var separator: Character?
        /// nil: CSV quoting for every separator except tab.
        public var quoting: Bool?
        /// Skip and count malformed lines instead of throwing at the first.
        public var skipBad: Bool

        public static let defaultImageKey = "filepath"
        public static let defaultCaptionKey = "title"

        public init(
            imageKey: String = Options.defaultImageKey, captionKey: String? = Options.defaultCaptionKey,
            labelKey: String? = nil, separator: Character? = nil, quoting: Bool? = nil, skipBad: Bool = false
        ) {
            self.imageKey = imageKey
            self.captionKey = captionKey
            self.labelKey = labelKey
            self.separator = separator
            self.quoting = quoting
            self.skipBad = skipBad
        }

        var usesDefaultKeys: Bool {
            imageKey == Self.defaultImageKey && captionKey == Self.defaultCaptionKey && labelKey == nil
        }
    }

    /// A skipped line and why, for the log.
    public struct BadLine: Sendable, Equatable, CustomStringConvertible {
        public let line: Int
        public let reason: String

        public init(line: Int, reason: String) {
            self.line = line
            self.reason = reason
        }

        public var description: String { "line \(line): \(reason)" }
    }

    /// The manifest file as given (errors and `badLines` refer to it).
    public let path: String
    public let separator: Character
    public let quoting: Bool
    /// The header's column names; empty for a header-less file.
    public let columns: [String]
    /// Image paths, resolved against the manifest's directory (absolute ones kept).
    public let images: TextColumn
    /// One caption per sample; nil when read without a caption column.
    public let captions: TextColumn?
    /// One label per sample when a `labelKey` was given.
    public let labels: TextColumn?
    /// The 1-based line each sample came from.
    public let lines: [Int]
    /// Lines skipped with `skipBad`, in file order.
    public let badLines: [BadLine]

    public var count: Int { lines.count }
    public var hasHeader: Bool { !columns.isEmpty }

    /// Reads and parses the manifest at `path`.
    public init(path: String, options: Options = Options()) throws {
        try self.init(parsing: try readFile(path), path: path, options: options)
    }

    /// Parses manifest bytes; `path` names the file in errors and anchors relative image paths.
    public init(parsing bytes: [UInt8], path: String, options: Options = Options()) throws {
        let separator = options.separator ?? (path.lowercased().hasSuffix(".csv") ? "," : "\t")
        guard let sep = separator.asciiValue, separator != "\"", separator != "\n", separator != "\r" else {
            throw DataError.invalidSeparator(separator.debugDescription)
        }
        let quoting = options.quoting ?? (sep != UInt8(ascii: "\t"))
        // Fields stay in the file's bytes (quoted ones unescaped in place); columns are offsets.
        var bytes = bytes
        // Lines that end in CR alone (old Mac files) are lines too, as for every text file mm
        // reads (`Text.lines`): a file with CRs and no LF at all has them as its line breaks.
        if !bytes.contains(0x0A) {
            for i in bytes.indices where bytes[i] == 0x0D { bytes[i] = 0x0A }
        }
        let parsed = try bytes.withUnsafeMutableBufferPointer { buffer in
            try ManifestParser(path: path, bytes: buffer, separator: sep, quoting: quoting, options: options).run()
        }
        let text = ManifestText(bytes)
        let utf8 = Array(path.utf8)
        let directory = utf8.lastIndex(of: UInt8(ascii: "/")).map { Array(utf8[...$0]) } ?? []
        self.path = path
        self.separator = separator
        self.quoting = quoting
        columns = parsed.columns
        images = TextColumn(text, parsed.images, prefix: directory)
        captions = options.captionKey == nil ? nil : TextColumn(text, parsed.captions)
        labels = options.labelKey == nil ? nil : TextColumn(text, parsed.labels)
        lines = parsed.lines
        badLines = parsed.badLines
    }
}

extension Manifest {
    /// The manifest's samples split by image: a share of about `heldOutShare` of the distinct
    /// image paths (each with all its pairs, so that no image is on both sides) goes to `heldOut`,
    /// chosen by a hash of the path as the manifest writes it — the same split on every run and
    /// machine, wherever the data lies and whatever the order of the lines. Both share this
    /// manifest's bytes.
    public func split(heldOutShare: Double) -> (kept: Manifest, heldOut: Manifest) {
        var kept: [Int] = [], heldOut: [Int] = []
        for i in 0..<count {
            // FNV-1a's low bits barely change between similar names: finish with SplitMix64's mixer.
            let h = SeededGenerator.finalize(FNV1a.hash(images.asWritten(i)))
            if Double(h >> 11) / Double(1 << 53) < heldOutShare { heldOut.append(i) } else { kept.append(i) }
        }
        return (subset(kept), subset(heldOut))
    }

    /// The samples at `rows`, in that order.
    public func subset(_ rows: [Int]) -> Manifest { Manifest(self, rows: rows) }

    private init(_ m: Manifest, rows: [Int]) {
        path = m.path
        separator = m.separator
        quoting = m.quoting
        columns = m.columns
        images = m.images.subset(rows)
        captions = m.captions?.subset(rows)
        labels = m.labels?.subset(rows)
        lines = rows.map { m.lines[$0] }
        badLines = m.badLines
    }
}

/// A column of a manifest, read as Strings. The manifest keeps the file's bytes and each
/// field's offset, and makes an element's String when it is read: a million-line manifest is
/// one buffer and a few arrays of integers, not millions of separately allocated strings.
public struct TextColumn: RandomAccessCollection, Sendable {
    private let text: ManifestText
    private let ranges: FieldRanges
    /// Put before every element that is not an absolute path (the image column's directory).
    private let prefix: [UInt8]

    fileprivate init(_ text: ManifestText, _ ranges: FieldRanges, prefix: [UInt8] = []) {
        self.text = text
        self.ranges = ranges
        self.prefix = prefix
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { ranges.starts.count }

    /// The field at `position` as the file has it (an image path without the manifest's directory).
    fileprivate func asWritten(_ position: Int) -> String {
        text.bytes.withUnsafeBufferPointer { bytes in
            String(
                decoding: UnsafeBufferPointer(start: bytes.baseAddress! + ranges.starts[position], count: Int(ranges.lengths[position])),
                as: UTF8.self)
        }
    }

    fileprivate func subset(_ rows: [Int]) -> TextColumn {
        TextColumn(text, FieldRanges(starts: rows.map { ranges.starts[$0] }, lengths: rows.map { ranges.lengths[$0] }), prefix: prefix)
    }

    public subscript(position: Int) -> String {
        let start = ranges.starts[position], count = Int(ranges.lengths[position])
        return text.bytes.withUnsafeBufferPointer { bytes in
            let field = bytes.baseAddress! + start
            let head = prefix.isEmpty || (count > 0 && field[0] == UInt8(ascii: "/")) ? 0 : prefix.count
            return String(unsafeUninitializedCapacity: head + count) { out in
                prefix.withUnsafeBufferPointer { out.baseAddress!.update(from: $0.baseAddress!, count: head) }
                (out.baseAddress! + head).update(from: field, count: count)
                return head + count
            }
        }
    }
}

/// The manifest's bytes, shared by its columns.
private final class ManifestText: Sendable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
}

/// Where each field of one column lies in the manifest's bytes.
private struct FieldRanges: Sendable {
    var starts: [Int] = []
    var lengths: [UInt32] = []

    mutating func reserve(_ n: Int) {
        starts.reserveCapacity(n)
        lengths.reserveCapacity(n)
    }

    mutating func append(_ field: Field) {
        starts.append(field.start)
        lengths.append(UInt32(field.end - field.start))
    }
}

/// One field of the current record: a byte range (a quoted field's quotes already collapsed).
private struct Field {
    var start: Int
    var end: Int
    var count: Int { end - start }
}

private final class ManifestParser {
    let path: String
    let base: UnsafeMutablePointer<UInt8>
    let n: Int
    let separator: UInt8
    let quoting: Bool
    let options: Options
    typealias Options = Manifest.Options

    var position = 0
    var line = 1
    /// The current record's fields.
    var fields: [Field] = []

    // The layout, from the header (or the header-less default).
    var columns: [String] = []
    var width = 2
    var imageColumn = 0, captionColumn = 1, labelColumn = -1
    var fieldNames = "(image path, caption)"

    var badLines: [Manifest.BadLine] = []

    init(path: String, bytes: UnsafeMutableBufferPointer<UInt8>, separator: UInt8, quoting: Bool, options: Options) {
        self.path = path
        base = bytes.baseAddress ?? UnsafeMutablePointer(bitPattern: 1)!
        n = bytes.count
        self.separator = separator
        self.quoting = quoting
        self.options = options
        // A UTF-8 byte-order mark (Excel writes one) is not part of the first field.
        if n >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF { position = 3 }
    }

    struct Result {
        var columns: [String]
        var images: FieldRanges, captions: FieldRanges, labels: FieldRanges
        var lines: [Int]
        var badLines: [Manifest.BadLine]
    }

    /// A record's fields as a sample, or why it cannot be one.
    enum Sample {
        case sample(image: Field, caption: Field?, label: Field?)
        case bad(String)
    }

    func run() throws -> Result {
        // Room for every line up front: no regrowing copies of million-entry arrays.
        var estimate = 1, i = position
        while let newline = find(0x0A, from: i) { estimate += 1; i = newline + 1 }
        var images = FieldRanges(), captions = FieldRanges(), labels = FieldRanges(), lines: [Int] = []
        images.reserve(estimate)
        lines.reserveCapacity(estimate)
        if options.captionKey != nil { captions.reserve(estimate) }
        if options.labelKey != nil { labels.reserve(estimate) }
        func add(_ sample: Sample, _ line: Int) throws {
            switch sample {
            case let .sample(image, caption, label):
                images.append(image)
                if let caption { captions.append(caption) }
                if let label { labels.append(label) }
                lines.append(line)
            case let .bad(reason):
                try reject(line, reason)
            }
        }

        // The first record decides between a header and a header-less file.
        var first: Int?
        var firstError: String?
        while position < n {
            let start = line
            if let problem = nextRecord() { firstError = problem; first = start; break }
            if !fields.isEmpty { first = start; break }
        }
        guard let firstLine = first else { throw DataError.empty(path: path) }

        let header = firstError == nil ? fields.map { text($0) } : []
        if let imageIndex = header.firstIndex(of: options.imageKey) {
            columns = header
            width = header.count
            imageColumn = imageIndex
            try checkUnique(options.imageKey)
            captionColumn = try column(options.captionKey, role: "caption")
            labelColumn = try column(options.labelKey, role: "label")
            fieldNames = "(" + header.joined(separator: ", ") + ")"
        } else if let problem = firstError, !options.usesDefaultKeys {
            throw DataError.badLine(path: path, line: firstLine, reason: problem)
        } else if !options.usesDefaultKeys || header.contains(Options.defaultCaptionKey) {
            throw DataError.missingColumn(path: path, key: options.imageKey, role: "image", columns: header)
        } else if let problem = firstError {
            // Header-less: the first record is a sample.
            try reject(firstLine, problem)
        } else {
            try add(sample(), firstLine)
        }

        while position < n {
            let start = line
            if let problem = nextRecord() { try reject(start, problem); continue }
            if fields.isEmpty { continue }
            try add(sample(), start)
        }

        if lines.isEmpty {
            if !badLines.isEmpty { throw DataError.noUsableSamples(path: path, skipped: badLines.count) }
            throw DataError.empty(path: path)
        }
        return Result(columns: columns, images: images, captions: captions, labels: labels, lines: lines, badLines: badLines)
    }

    /// The index of `key` in the header (-1 for no key).
    private func column(_ key: String?, role: String) throws -> Int {
        guard let key else { return -1 }
        guard let index = columns.firstIndex(of: key) else {
            throw DataError.missingColumn(path: path, key: key, role: role, columns: columns)
        }
        try checkUnique(key)
        return index
    }

    private func checkUnique(_ key: String) throws {
        if columns.filter({ $0 == key }).count > 1 {
            throw DataError.badLine(path: path, line: 1, reason: "column '\(key)' appears more than once in the header")
        }
    }

    private func reject(_ line: Int, _ reason: String) throws {
        if !options.skipBad { throw DataError.badLine(path: path, line: line, reason: reason) }
        badLines.append(Manifest.BadLine(line: line, reason: reason))
    }

    /// The current record as a sample: the right number of fields, a path, valid UTF-8.
    private func sample() -> Sample {
        guard fields.count == width else {
            let sep = separator == UInt8(ascii: "\t") ? "tab" : "'\(Character(Unicode.Scalar(separator)))'"
            return .bad("expected \(width) fields \(fieldNames) separated by \(sep), found \(fields.count)")
        }
        let image = fields[imageColumn]
        if image.count == 0 { return .bad("empty image path") }
        if let problem = invalidUTF8(image) { return .bad("image path is not valid UTF-8 (\(problem))") }
        var caption: Field?
        if captionColumn >= 0 {
            caption = fields[captionColumn]
            if let problem = invalidUTF8(caption!) { return .bad("caption is not valid UTF-8 (\(problem))") }
        }
        var label: Field?
        if labelColumn >= 0 {
            label = fields[labelColumn]
            if label!.count == 0 { return .bad("empty label") }
            if let problem = invalidUTF8(label!) { return .bad("label is not valid UTF-8 (\(problem))") }
        }
        for field in fields where field.count > Int(UInt32.max) {
            return .bad("a field is longer than 4 GiB")
        }
        return .sample(image: image, caption: caption, label: label)
    }

    // MARK: records

    /// Reads the record at `position` into `fields` (empty for a blank line) and moves past it.
    /// Returns a reason when the record is malformed (its remaining bytes are skipped).
    private func nextRecord() -> String? {
        fields.removeAll(keepingCapacity: true)
        return quoting ? nextQuotedRecord() : nextPlainRecord()
    }

    /// Tab-style: fields are the bytes between separators, up to the line break.
    private func nextPlainRecord() -> String? {
        let start = position
        let newline = find(0x0A, from: start) ?? n
        var stop = newline
        if stop > start && base[stop - 1] == 0x0D { stop -= 1 }
        position = newline + 1
        line += 1
        if stop == start { return nil }
        var fieldStart = start
        while let s = find(separator, from: fieldStart, to: stop) {
            fields.append(Field(start: fieldStart, end: s))
            fieldStart = s + 1
        }
        fields.append(Field(start: fieldStart, end: stop))
        return nil
    }

    /// CSV-style: quoted fields may hold separators, line breaks and doubled quotes.
    private func nextQuotedRecord() -> String? {
        let quote = UInt8(ascii: "\"")
        var i = position
        // A blank line (LF or CRLF) is no record.
        if base[i] == 0x0A || (base[i] == 0x0D && (i + 1 == n || base[i + 1] == 0x0A)) {
            position = min(n, i + (base[i] == 0x0D ? 2 : 1))
            line += 1
            return nil
        }
        let firstLine = line
        while true {
            if i < n && base[i] == quote {
                i += 1
                let start = i
                var escaped = false
                var end = -1
                while i < n {
                    guard let q = find(quote, from: i) else { break }
                    line += count(newlinesIn: i..<q)
                    if q + 1 < n && base[q + 1] == quote {
                        escaped = true
                        i = q + 2
                        continue
                    }
                    end = q
                    i = q + 1
                    break
                }
                if end < 0 {
                    line += count(newlinesIn: i..<n)
                    position = n
                    return "quoted field opened on line \(firstLine) is never closed"
                }
                fields.append(Field(start: start, end: escaped ? collapseQuotes(start..<end) : end))
                let atEnd =
                    i == n || base[i] == separator || base[i] == 0x0A
                    || (base[i] == 0x0D && (i + 1 == n || base[i + 1] == 0x0A))
                if !atEnd {
                    skipLine(from: i)
                    return "unexpected character after a closing quote (a quote inside a quoted field is written \"\")"
                }
            } else {
                let start = i
                while i < n && base[i] != separator && base[i] != 0x0A { i += 1 }
                var end = i
                if end > start && (i == n || base[i] == 0x0A) && base[end - 1] == 0x0D { end -= 1 }
                fields.append(Field(start: start, end: end))
            }
            if i < n && base[i] == separator { i += 1; continue }
            if i < n && base[i] == 0x0D { i += 1 }
            position = i + 1
            line += 1
            return nil
        }
    }

    /// Rewrites a quoted field's `""` pairs as `"` in place; returns the field's new end.
    private func collapseQuotes(_ range: Range<Int>) -> Int {
        var write = range.lowerBound, read = range.lowerBound
        while read < range.upperBound {
            base[write] = base[read]
            read += base[read] == UInt8(ascii: "\"") ? 2 : 1
            write += 1
        }
        return write
    }

    private func skipLine(from i: Int) {
        position = (find(0x0A, from: i) ?? n) + 1
        line += 1
    }

    /// The offset of the first `byte` in `start..<end` (memchr: vectorised in libc).
    private func find(_ byte: UInt8, from start: Int, to end: Int? = nil) -> Int? {
        let stop = end ?? n
        guard start < stop, let hit = memchr(base + start, Int32(byte), stop - start) else { return nil }
        return UnsafePointer(hit.assumingMemoryBound(to: UInt8.self)) - UnsafePointer(base)
    }

    private func count(newlinesIn range: Range<Int>) -> Int {
        var c = 0
        for i in range where base[i] == 0x0A { c += 1 }
        return c
    }

    // MARK: text

    /// Header names: invalid UTF-8 cannot match a key anyway, so it is replaced.
    private func text(_ field: Field) -> String {
        String(decoding: UnsafeBufferPointer(start: base + field.start, count: field.count), as: UTF8.self)
    }

    /// nil for valid UTF-8, else "byte 0xFF at byte 14 of the field".
    private func invalidUTF8(_ field: Field) -> String? {
        let bytes = UnsafeBufferPointer(start: base + field.start, count: field.count)
        guard let offset = Text.firstInvalidUTF8(bytes) else { return nil }
        let hex = String(bytes[offset], radix: 16, uppercase: true)
        return "byte 0x\(hex.count == 1 ? "0" + hex : hex) at byte \(offset + 1) of the field"
    }
}

/// The whole file (a regular file: a FIFO or device is refused), or an error with the reason.
private func readFile(_ path: String) throws -> [UInt8] {
    do { return try ReadableFile(path).readAll() } catch let error as FileError {
        throw DataError.unreadable(path: path, reason: error.reason)
    }
}
