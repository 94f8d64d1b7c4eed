import CZlib
import Foundation
import MMFoundation

/// A byte-level BPE vocabulary: token strings by id, the ranked merges, and the special tokens.
///
/// Two on-disk forms load here:
/// - a CLIP merges file (`bpe_simple_vocab_16e6.txt[.gz]`, or `merges.txt` written by
///   `mm vocab train`): ids follow open_clip — the 256 byte symbols, the same with `</w>`, one
///   token per merge, then `<start_of_text>` and `<end_of_text>`;
/// - a Hugging Face pair, `vocab.json` (token → id) plus `merges.txt`.
public final class Vocabulary: @unchecked Sendable {
    /// Token strings by id, in the byte-level alphabet (`</w>` marks a word end).
    public let tokens: [String]
    /// Id of the start-of-text token (49406 for CLIP).
    public let startOfText: Int32
    /// Id of the end-of-text token (49407 for CLIP).
    public let endOfText: Int32
    /// Number of merges in rank order.
    public let mergeCount: Int
    /// Where the vocabulary was read from.
    public let source: String

    /// One more than the largest id: the size of an embedding table for this vocabulary.
    public var count: Int { tokens.count }

    /// The merges in rank order, "a b" as a merges file lists them.
    public let mergeLines: [String]

    let mergeTable: PairTable
    /// Ids of the 256 byte symbols, then of the same symbols with `</w>` appended.
    let byteIDs: [Int32]
    let specials: [SpecialLiteral]
    /// Each token's bytes once mapped back through the byte alphabet, for decoding.
    let tokenBytes: [[UInt8]]

    /// How many merges open_clip reads from a merges file (`49152 - 256 - 2`).
    public static let clipMergeLimit = 48_894
    /// File name of the CLIP merges file.
    public static let clipFileName = "bpe_simple_vocab_16e6.txt.gz"

    init(
        tokens: [String], encoder: [String: Int32], mergePairs: [(String, String, line: Int)],
        startOfText: String, endOfText: String, source: String
    ) throws {
        func id(_ s: String, _ line: Int, _ what: String) throws -> Int32 {
            guard let i = encoder[s] else {
                throw TokenizerError.malformedVocabulary(path: source, line: line, reason: "\(what) '\(s)' is not in the vocabulary")
            }
            return i
        }
        var byteIDs = [Int32](repeating: 0, count: 512)
        for b in 0..<256 {
            let symbol = String(ByteAlphabet.scalar(for: UInt8(b)))
            byteIDs[b] = try id(symbol, 0, "byte symbol")
            byteIDs[256 + b] = try id(symbol + "</w>", 0, "byte symbol")
        }
        let merges = PairTable(capacity: mergePairs.count)
        for (rank, (a, b, line)) in mergePairs.enumerated() {
            let left = try id(a, line, "merge symbol"), right = try id(b, line, "merge symbol")
            let merged = try id(a + b, line, "merged token")
            merges.insert(left: left, right: right, rank: Int32(rank), merged: merged)
        }
        self.tokens = tokens
        self.startOfText = try id(startOfText, 0, "start token")
        self.endOfText = try id(endOfText, 0, "end token")
        self.mergeCount = mergePairs.count
        self.mergeLines = mergePairs.map { $0.0 + " " + $0.1 }
        self.mergeTable = merges
        self.byteIDs = byteIDs
        self.specials = [
            SpecialLiteral(bytes: Array(startOfText.utf8), id: self.startOfText),
            SpecialLiteral(bytes: Array(endOfText.utf8), id: self.endOfText)
        ]
        self.tokenBytes = tokens.map(ByteAlphabet.bytes(of:))
        self.source = source
    }

    /// Reads a CLIP-style merges file (gzipped or plain) the way open_clip does: the first line is
    /// a header, the next `maxMerges` lines are merges "a b" in rank order (an empty line takes a
    /// vocabulary slot without merging anything, as in open_clip).
    public convenience init(mergesFile path: String, maxMerges: Int = Vocabulary.clipMergeLimit) throws {
        // Only the header and the first `maxMerges` lines matter (the CLIP file has 262,145).
        let lines = Text.lines(try readText(path), maxSplits: maxMerges + 1)
        // A final line break leaves an empty last line: that is not a merge.
        guard lines.dropFirst().contains(where: { !$0.isEmpty }) else {
            throw TokenizerError.malformedVocabulary(path: path, line: 1, reason: "no merges after the header line")
        }
        try self.init(mergeLines: lines[1..<min(lines.count, maxMerges + 1)], firstLine: 2, source: path)
    }

    /// CLIP-style ids from merge lines "a b" in rank order (no header).
    convenience init(mergeLines lines: ArraySlice<Substring>, firstLine: Int, source: String) throws {
        var tokens = ByteAlphabet.baseTokens
        var pairs: [(String, String, line: Int)] = []
        for (k, line) in lines.enumerated() {
            let fields = Vocabulary.fields(line)
            switch fields.count {
            case 0: tokens.append("")
            case 2:
                pairs.append((fields[0], fields[1], line: k + firstLine))
                tokens.append(fields[0] + fields[1])
            default:
                throw TokenizerError.malformedVocabulary(
                    path: source, line: k + firstLine, reason: "expected two symbols separated by a space, found \(fields.count)")
            }
        }
        tokens += ["<start_of_text>", "<end_of_text>"]
        var encoder: [String: Int32] = [:]
        encoder.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() { encoder[t] = Int32(i) }  // later duplicates win, as in open_clip
        try self.init(
            tokens: tokens, encoder: encoder, mergePairs: pairs, startOfText: "<start_of_text>",
            endOfText: "<end_of_text>", source: source)
    }

    /// A merges line split at whitespace, as Python's `str.split()` does.
    static func fields(_ line: Substring) -> [String] {
        line.unicodeScalars.split(whereSeparator: { SplitClass.isSpace($0.value) }).map { String($0) }
    }

    /// Reads a Hugging Face `vocab.json` (token → id) and `merges.txt` (an optional `#version`
    /// header, then one merge "a b" a line in rank order). The special tokens are
    /// `<|startoftext|>`/`<|endoftext|>` (Hugging Face's names) or `<start_of_text>`/`<end_of_text>`.
    public convenience init(vocabJSON: String, merges mergesPath: String) throws {
        let table: [String: Int]
        do {
            table = try JSONDecoder().decode([String: Int].self, from: Data(try readBytes(vocabJSON)))
        } catch let error as TokenizerError {
            throw error
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let key = context.codingPath.last.map { "token '\($0.stringValue)': " } ?? ""
            throw TokenizerError.malformedVocabulary(path: vocabJSON, line: 0, reason: "\(key)expected a JSON object mapping tokens to integer ids")
        } catch {
            throw TokenizerError.malformedVocabulary(path: vocabJSON, line: 0, reason: "not valid JSON")
        }
        var encoder: [String: Int32] = [:]
        var largest = -1
        for (token, id) in table {
            guard id >= 0 && id < 1 << 30 else {
                throw TokenizerError.malformedVocabulary(path: vocabJSON, line: 0, reason: "token '\(token)' has id \(id), expected 0 ..< 2^30")
            }
            encoder[token] = Int32(id)
            largest = max(largest, id)
        }
        var tokens = [String](repeating: "", count: largest + 1)
        for (token, id) in encoder {
            guard tokens[Int(id)].isEmpty else {
                throw TokenizerError.malformedVocabulary(
                    path: vocabJSON, line: 0, reason: "id \(id) is used by both '\(tokens[Int(id)])' and '\(token)'")
            }
            tokens[Int(id)] = token
        }
        var pairs: [(String, String, line: Int)] = []
        let lines = Text.lines(try readText(mergesPath))
        for (k, line) in lines.enumerated() {
            if k == 0 && line.hasPrefix("#") { continue }
            let fields = Vocabulary.fields(line)
            if fields.isEmpty { continue }
            guard fields.count == 2 else {
                throw TokenizerError.malformedVocabulary(
                    path: mergesPath, line: k + 1, reason: "expected two symbols separated by a space, found \(fields.count)")
            }
            pairs.append((fields[0], fields[1], line: k + 1))
        }
        let start = encoder["<|startoftext|>"] != nil ? "<|startoftext|>" : "<start_of_text>"
        let end = encoder["<|endoftext|>"] != nil ? "<|endoftext|>" : "<end_of_text>"
        do {
            try self.init(
                tokens: tokens, encoder: encoder, mergePairs: pairs, startOfText: start, endOfText: end,
                source: vocabJSON)
        } catch let TokenizerError.malformedVocabulary(_, line, reason) where line > 0 {
            throw TokenizerError.malformedVocabulary(path: mergesPath, line: line, reason: reason)
        }
    }

    /// Loads a vocabulary from a merges file, or from a directory holding `vocab.json` +
    /// `merges.txt` (Hugging Face), `merges.txt` alone (as `mm vocab train` writes) or the CLIP file.
    public static func load(_ path: String) throws -> Vocabulary {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError.unreadable(path: path, reason: "no such file or directory")
        }
        guard isDirectory.boolValue else { return try Vocabulary(mergesFile: path) }
        let dir = URL(fileURLWithPath: path)
        let vocabJSON = dir.appendingPathComponent("vocab.json").path
        let merges = dir.appendingPathComponent("merges.txt").path
        let clip = dir.appendingPathComponent(clipFileName).path
        let exists = { (p: String) in FileManager.default.fileExists(atPath: p) }
        if exists(vocabJSON) && exists(merges) { return try Vocabulary(vocabJSON: vocabJSON, merges: merges) }
        if exists(merges) { return try Vocabulary(mergesFile: merges) }
        if exists(clip) { return try Vocabulary(mergesFile: clip) }
        throw TokenizerError.unreadable(path: path, reason: "directory has neither vocab.json + merges.txt, merges.txt nor \(clipFileName)")
    }

    /// The CLIP vocabulary that ships with mm (49,408 tokens), read once per process.
    ///
    /// Looked for as `Resources.locate` does: `$MM_VOCAB` (a merges file or vocabulary
    /// directory), the resource bundle `mm_MMTokenizer.resources/vocab/` beside the running
    /// executable, then `Sources/MMTokenizer/vocab/` of the source checkout.
    public static func clip() throws -> Vocabulary {
        clipLock.lock()
        defer { clipLock.unlock() }
        if let v = clipShared { return v }
        let v = try load(try locateCLIP())
        clipShared = v
        return v
    }

    private static let clipLock = NSLock()
    private static var clipShared: Vocabulary?

    static func locateCLIP() throws -> String {
        let found = Resources.locate("vocab/" + clipFileName, target: "MMTokenizer", environment: "MM_VOCAB")
        guard let path = found.path else {
            if ProcessInfo.processInfo.environment["MM_VOCAB"].map({ !$0.isEmpty }) == true {
                throw TokenizerError.unreadable(path: found.searched[0], reason: "no such file or directory, named by MM_VOCAB")
            }
            throw TokenizerError.vocabularyNotFound(searched: found.searched)
        }
        return path
    }

    /// Bytes of a token sequence mapped back through the byte alphabet (not yet UTF-8-decoded).
    func bytes(of ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids {
            if id >= 0 && Int(id) < tokenBytes.count {
                out += tokenBytes[Int(id)]
            } else {
                out += [0xEF, 0xBF, 0xBD]  // an id outside the vocabulary decodes to U+FFFD
            }
        }
        return out
    }

    /// Writes the vocabulary as `vocab.json` (Hugging Face's token → id map, special tokens named
    /// `<|startoftext|>`/`<|endoftext|>`) and `merges.txt` in CLIP's layout (a header line, then one
    /// merge a line, no trailing newline: open_clip would count a final empty line as one more
    /// token). Either file set loads back with the same ids via `Vocabulary.load(directory)`.
    public func write(to directory: String) throws {
        let dir = URL(fileURLWithPath: directory)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw TokenizerError.unreadable(path: directory, reason: "cannot create directory: \(error.localizedDescription)")
        }
        let rename = ["<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"]
        var json = "{"
        var seen = Set<String>()
        var entries: [(String, Int)] = []
        for (i, t) in tokens.enumerated().reversed() where seen.insert(t).inserted { entries.append((t, i)) }
        for (n, (t, i)) in entries.reversed().enumerated() {
            json += (n == 0 ? "" : ",") + "\n  " + Text.jsonQuoted(rename[t] ?? t) + ": \(i)"
        }
        json += "\n}\n"
        let merges = (["#version: 0.2"] + mergeLines).joined(separator: "\n")
        try atomicWrite(Array(merges.utf8), to: dir.appendingPathComponent("merges.txt").path)
        try atomicWrite(Array(json.utf8), to: dir.appendingPathComponent("vocab.json").path)
    }
}

/// open_clip's reversible map from bytes to printable scalars: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100 onwards in byte order.
enum ByteAlphabet {
    static let scalars: [Unicode.Scalar] = {
        var map = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if isPrintable(b) {
                map[b] = Unicode.Scalar(UInt32(b))!
            } else {
                map[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return map
    }()

    static let decoder: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in scalars.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()

    static func isPrintable(_ b: Int) -> Bool {
        (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
    }

    static func scalar(for byte: UInt8) -> Unicode.Scalar { scalars[Int(byte)] }

    /// open_clip's first 512 tokens: the byte symbols with printable bytes first, then the rest in
    /// byte order; then each of them with `</w>`.
    static let baseTokens: [String] = {
        let order = (0..<256).filter(isPrintable) + (0..<256).filter { !isPrintable($0) }
        let symbols = order.map { String(scalars[$0]) }
        return symbols + symbols.map { $0 + "</w>" }
    }()

    /// A token's bytes; scalars outside the alphabet (never produced by CLIP vocabularies) keep
    /// their UTF-8 bytes.
    static func bytes(of token: String) -> [UInt8] {
        var out: [UInt8] = []
        for s in token.unicodeScalars {
            if let b = decoder[s.value] { out.append(b) } else { out += Array(String(s).utf8) }
        }
        return out
    }
}

/// Merges keyed by (left id, right id), open addressing with linear probing. Immutable once
/// built, so worker threads read it without locks.
final class PairTable: @unchecked Sendable {
    private let keys: UnsafeMutablePointer<UInt64>
    private let values: UnsafeMutablePointer<UInt64>  // rank << 32 | merged id
    private let mask: Int
    static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = .allocate(capacity: size)
        keys.initialize(repeating: PairTable.empty, count: size)
        values = .allocate(capacity: size)
        values.initialize(repeating: 0, count: size)
        mask = size - 1
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// Later inserts of the same pair replace earlier ones, as a Python dict does.
    func insert(left: Int32, right: Int32, rank: Int32, merged: Int32) {
        let k = PairTable.key(left, right)
        var i = slot(k)
        while keys[i] != PairTable.empty && keys[i] != k { i = (i + 1) & mask }
        keys[i] = k
        values[i] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    /// (rank, merged id) of a pair, or rank Int32.max when the pair never merges.
    @inline(__always)
    func lookup(_ left: Int32, _ right: Int32) -> (rank: Int32, merged: Int32) {
        let k = PairTable.key(left, right)
        var i = slot(k)
        while true {
            let stored = keys[i]
            if stored == k {
                let v = values[i]
                return (Int32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v))
            }
            if stored == PairTable.empty { return (Int32.max, -1) }
            i = (i + 1) & mask
        }
    }
}

/// Reads a whole regular file, gunzipping it when it is gzip data (zlib passes plain files
/// through). Neither the file nor what it inflates to may pass `maxBytes` (a gzip bomb or
/// `/dev/zero` is refused, not read until memory runs out).
func readBytes(_ path: String, maxBytes: Int = 1 << 30) throws -> [UInt8] {
    let file: ReadableFile
    do { file = try ReadableFile(path, maxSize: maxBytes) } catch let error as FileError {
        throw TokenizerError.unreadable(path: path, reason: error.reason)
    }
    // zlib closes its own duplicate of the descriptor.
    guard let gz = gzdopen(dup(file.descriptor), "rb") else {
        throw TokenizerError.unreadable(path: path, reason: String(cString: strerror(errno)))
    }
    defer { gzclose(gz) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { gzread(gz, $0.baseAddress, UInt32($0.count)) }
        if n < 0 {
            var code: Int32 = 0
            let message = gzerror(gz, &code).map { String(cString: $0) } ?? "read error"
            throw TokenizerError.unreadable(path: path, reason: message)
        }
        if n == 0 { break }
        guard out.count + Int(n) <= maxBytes else {
            throw TokenizerError.unreadable(path: path, reason: "more than \(maxBytes) bytes of text")
        }
        out += chunk[0..<Int(n)]
    }
    return out
}

/// A vocabulary file as text; it must be UTF-8.
func readText(_ path: String) throws -> String {
    let bytes = try readBytes(path)
    if let (line, column, byte) = Text.firstInvalidUTF8Position(bytes) {
        throw TokenizerError.malformedVocabulary(
            path: path, line: line, reason: "invalid UTF-8 (byte 0x\(String(byte, radix: 16)) at byte \(column))")
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes atomically, naming the file in the error.
func atomicWrite(_ bytes: [UInt8], to path: String) throws {
    do { try AtomicFile.write(bytes, to: path) } catch let error as FileError {
        throw TokenizerError.unreadable(path: path, reason: error.reason)
    }
}
