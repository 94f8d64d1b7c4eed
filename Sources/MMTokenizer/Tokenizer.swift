import Dispatch
import Foundation
import MMFoundation

/// open_clip's CLIP tokenizer: clean, split, byte-level BPE with `</w>` word ends, then
/// `[SOT] ids [EOT]` cut to the context length (keeping EOT last) and padded with 0.
///
///     let tokenizer = try Tokenizer()                    // the bundled CLIP vocabulary
///     let row = tokenizer.tokenize("a photo of a cat")   // 77 ids: 49406, 320, 1125, …, 49407, 0, …
///     let batch = tokenizer.tokenize(captions)           // captions.count × 77, row-major, both cores
///
/// Safe to use from several threads at once: each call borrows a worker (word cache and scratch
/// buffers) from a small pool.
public final class Tokenizer: @unchecked Sendable {
    public let vocabulary: Vocabulary
    /// Row length of `tokenize` when none is given (77 for CLIP).
    public let contextLength: Int

    private var idle: [Encoder] = []
    private let lock = NSLock()

    public init(vocabulary: Vocabulary, contextLength: Int = 77) {
        precondition(contextLength >= 1, "context length must be at least 1")
        self.vocabulary = vocabulary
        self.contextLength = contextLength
    }

    /// The tokenizer with the bundled CLIP vocabulary (see `Vocabulary.clip()` for where it is found).
    public convenience init(contextLength: Int = 77) throws {
        self.init(vocabulary: try Vocabulary.clip(), contextLength: contextLength)
    }

    /// Threads used by batch calls when none is given: the process-wide `Threads.count`.
    public static var defaultThreads: Int { Threads.count }

    // MARK: encoding

    /// The BPE ids of a text, without start/end tokens or truncation (open_clip's `encode`).
    public func encode(_ text: String) -> [Int32] {
        withEncoder { encoder in
            let bytes = encoder.prepare(text)
            var ids = [Int32](repeating: 0, count: bytes)  // every id covers at least one byte
            let n = ids.withUnsafeMutableBufferPointer { encoder.emit(limit: bytes, into: $0.baseAddress!) }
            ids.removeLast(bytes - n)
            return ids
        }
    }

    /// One row: `[SOT] ids [EOT]`, cut to `contextLength` with EOT kept last, padded with 0.
    public func tokenize(_ text: String, contextLength: Int? = nil) -> [Int32] {
        tokenize([text], contextLength: contextLength, threads: 1)
    }

    /// `texts.count` rows of `contextLength` ids, row-major, spread over `threads` threads.
    public func tokenize(_ texts: [String], contextLength: Int? = nil, threads: Int? = nil) -> [Int32] {
        let length = contextLength ?? self.contextLength
        var out = [Int32](repeating: 0, count: texts.count * length)
        out.withUnsafeMutableBufferPointer { tokenize(texts, contextLength: length, threads: threads, into: $0.baseAddress!) }
        return out
    }

    /// Writes `texts.count × contextLength` ids to `out` (e.g. straight into a batch tensor).
    public func tokenize(_ texts: [String], contextLength: Int, threads: Int? = nil, into out: UnsafeMutablePointer<Int32>) {
        precondition(contextLength >= 1, "context length must be at least 1")
        let n = texts.count
        // Below a few hundred captions the work is smaller than waking a second thread.
        let workers = max(1, min(threads ?? Tokenizer.defaultThreads, n / 256))
        if workers == 1 {
            withEncoder { encoder in
                for i in 0..<n { fillRow(encoder, texts[i], contextLength, out + i * contextLength) }
            }
            return
        }
        // Each thread keeps one encoder (its word cache stays in that core's cache) and takes
        // chunks until none are left, so a thread that drew short captions takes more.
        let chunks = workers * 16
        let next = ChunkCounter()
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            withEncoder { encoder in
                while let c = next.take(below: chunks) {
                    for i in (n * c / chunks)..<(n * (c + 1) / chunks) {
                        fillRow(encoder, texts[i], contextLength, out + i * contextLength)
                    }
                }
            }
        }
    }

    private func fillRow(_ encoder: Encoder, _ text: String, _ length: Int, _ row: UnsafeMutablePointer<Int32>) {
        row[0] = vocabulary.startOfText
        _ = encoder.prepare(text)
        let n = encoder.emit(limit: length - 1, into: row + 1)
        if n >= length - 1 {  // SOT + ids + EOT would not fit: EOT replaces the last id kept
            row[length - 1] = vocabulary.endOfText
        } else {
            row[n + 1] = vocabulary.endOfText
            (row + n + 2).update(repeating: 0, count: length - n - 2)
        }
    }

    // MARK: decoding and inspection

    /// open_clip's `decode`: token strings joined, mapped back to bytes, decoded as UTF-8 (invalid
    /// sequences become U+FFFD), `</w>` replaced by a space. Special and padding ids decode like
    /// any other (`<start_of_text>`, `!` for 0); see `decodeText` for the caption alone.
    public func decode(_ ids: [Int32]) -> String {
        // "</w>" is ASCII, and a UTF-8 decoder never folds ASCII into a replaced sequence, so
        // replacing it before decoding is the same as after (and not confused by combining marks).
        let bytes = vocabulary.bytes(of: ids)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x3C && i + 3 < bytes.count && bytes[i + 1] == 0x2F && bytes[i + 2] == 0x77 && bytes[i + 3] == 0x3E {
                out.append(0x20)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The caption of a tokenized row: ids between SOT and the first EOT, decoded, without the
    /// trailing space of the last word.
    public func decodeText(_ ids: [Int32]) -> String {
        var body = ids[...]
        if body.first == vocabulary.startOfText { body = body.dropFirst() }
        if let end = body.firstIndex(of: vocabulary.endOfText) { body = body[..<end] }
        var text = decode(Array(body))
        if text.last == " " { text.removeLast() }
        return text
    }

    /// The text after open_clip's cleaning (see `Cleaner`): what the ids encode.
    public static func clean(_ text: String) -> String {
        String(decoding: Cleaner.clean(text), as: UTF16.self)
    }

    /// The pieces open_clip's split pattern finds in the cleaned text (each is BPE-encoded on its own).
    public func pieces(_ text: String) -> [String] {
        withEncoder { encoder in
            var out: [String] = []
            encoder.forEachPiece(encoder.prepare(text)) { piece, _ in
                out.append(String(decoding: piece, as: UTF8.self))
            }
            return out
        }
    }

    func withEncoder<R>(_ body: (Encoder) -> R) -> R {
        lock.lock()
        let encoder = idle.popLast() ?? Encoder(vocabulary)
        lock.unlock()
        defer {
            lock.lock()
            idle.append(encoder)
            lock.unlock()
        }
        return body(encoder)
    }
}

/// Hands out chunk numbers 0, 1, 2, … to whichever thread asks first.
final class ChunkCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()

    func take(below limit: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}

/// One thread's tokenizing state: the cleaned text, BPE scratch and a word cache, reused across captions.
final class Encoder {
    let vocabulary: Vocabulary
    let cache = WordCache()
    private let byteIDs: UnsafeMutablePointer<Int32>
    private let specials: [SpecialLiteral]
    private var text: UnsafeMutablePointer<UInt8>
    private var textCapacity = 1024
    private var textCount = 0
    private var symbols: UnsafeMutablePointer<Int32>
    private var ranks: UnsafeMutablePointer<Int32>
    private var merged: UnsafeMutablePointer<Int32>
    private var symbolCapacity = 256

    /// Bytes that can take the short way through cleaning: printable ASCII except '&', and the
    /// whitespace controls ftfy keeps (tab, line feed, form feed, carriage return). For text made
    /// only of these, open_clip's cleaning reduces to lowercasing (whitespace only separates).
    private static let plain: [Bool] = (0..<256).map { b in
        (b >= 0x20 && b <= 0x7E && b != 0x26) || b == 0x09 || b == 0x0A || b == 0x0C || b == 0x0D
    }
    private let plainBytes: UnsafeMutablePointer<Bool>

    init(_ vocabulary: Vocabulary) {
        self.vocabulary = vocabulary
        specials = vocabulary.specials
        byteIDs = .allocate(capacity: 512)
        byteIDs.initialize(from: vocabulary.byteIDs, count: 512)
        plainBytes = .allocate(capacity: 256)
        plainBytes.initialize(from: Encoder.plain, count: 256)
        text = .allocate(capacity: textCapacity)
        symbols = .allocate(capacity: symbolCapacity)
        ranks = .allocate(capacity: symbolCapacity)
        merged = .allocate(capacity: symbolCapacity)
    }

    deinit {
        byteIDs.deallocate()
        plainBytes.deallocate()
        text.deallocate()
        symbols.deallocate()
        ranks.deallocate()
        merged.deallocate()
    }

    /// Cleans `caption` into the text buffer; returns its length in bytes.
    func prepare(_ caption: String) -> Int {
        var caption = caption
        caption.makeContiguousUTF8()
        let plain =
            caption.utf8.withContiguousStorageIfAvailable { src -> Bool in
                reserveText(src.count)
                for i in 0..<src.count {
                    let b = src[i]
                    guard plainBytes[Int(b)] else { return false }
                    text[i] = b >= 0x41 && b <= 0x5A ? b | 0x20 : b
                }
                textCount = src.count
                return true
            } ?? false
        if !plain { storeUTF8(Cleaner.clean(caption)) }
        return textCount
    }

    private func storeUTF8(_ units: [UInt16]) {
        reserveText(units.count * 3)
        var n = 0
        var i = 0
        while i < units.count {
            var v = UInt32(units[i])
            i += 1
            if v & 0xFC00 == 0xD800, i < units.count, units[i] & 0xFC00 == 0xDC00 {
                v = 0x10000 + ((v - 0xD800) << 10) + (UInt32(units[i]) - 0xDC00)
                i += 1
            } else if v & 0xF800 == 0xD800 {
                v = 0xFFFD  // a lone surrogate cannot come from a Swift String; stay safe anyway
            }
            if v < 0x80 {
                text[n] = UInt8(v); n += 1
            } else if v < 0x800 {
                text[n] = UInt8(0xC0 | v >> 6); text[n + 1] = UInt8(0x80 | v & 0x3F); n += 2
            } else if v < 0x10000 {
                text[n] = UInt8(0xE0 | v >> 12); text[n + 1] = UInt8(0x80 | (v >> 6) & 0x3F)
                text[n + 2] = UInt8(0x80 | v & 0x3F); n += 3
            } else {
                text[n] = UInt8(0xF0 | v >> 18); text[n + 1] = UInt8(0x80 | (v >> 12) & 0x3F)
                text[n + 2] = UInt8(0x80 | (v >> 6) & 0x3F); text[n + 3] = UInt8(0x80 | v & 0x3F); n += 4
            }
        }
        textCount = n
    }

    private func reserveText(_ n: Int) {
        guard n > textCapacity else { return }
        text.deallocate()
        textCapacity = max(n, textCapacity * 2)
        text = .allocate(capacity: textCapacity)
    }

    /// Writes the ids of the prepared text to `out`, at most `limit` of them; returns how many.
    func emit(limit: Int, into out: UnsafeMutablePointer<Int32>) -> Int {
        if limit <= 0 { return 0 }
        var scanner = PieceScanner(text, count: textCount)
        var start = 0, end = 0, special: Int32 = -1
        var produced = 0
        while scanner.next(specials: specials, start: &start, end: &end, special: &special) {
            if special >= 0 {
                out[produced] = special
                produced += 1
            } else {
                let word = UnsafePointer(text + start), n = end - start
                let h = WordCache.hash(word, n)
                let ids: UnsafeBufferPointer<Int32>
                if let cached = cache.lookup(word, n, hash: h) {
                    ids = cached
                } else {
                    let count = bpe(word, n)  // may reallocate `symbols`: read it afterwards
                    ids = UnsafeBufferPointer(start: symbols, count: count)
                    cache.insert(word, n, hash: h, ids: ids)
                }
                let take = min(ids.count, limit - produced)
                (out + produced).update(from: ids.baseAddress!, count: take)
                produced += take
            }
            if produced >= limit { return produced }
        }
        return produced
    }

    /// Calls `body` with each piece of the prepared text and its special token id (-1 if none).
    func forEachPiece(_ count: Int, _ body: (UnsafeBufferPointer<UInt8>, Int32) -> Void) {
        var scanner = PieceScanner(text, count: count)
        var start = 0, end = 0, special: Int32 = -1
        while scanner.next(specials: specials, start: &start, end: &end, special: &special) {
            body(UnsafeBufferPointer(start: text + start, count: end - start), special)
        }
    }

    /// Byte-level BPE of one word into `symbols`; returns the symbol count. Like open_clip: the
    /// last byte carries `</w>`; repeatedly the pair of lowest merge rank is merged at every
    /// (non-overlapping, left-to-right) occurrence, until no pair has a rank.
    func bpe(_ word: UnsafePointer<UInt8>, _ n: Int) -> Int {
        if n > symbolCapacity {
            symbols.deallocate(); ranks.deallocate(); merged.deallocate()
            symbolCapacity = max(n, symbolCapacity * 2)
            symbols = .allocate(capacity: symbolCapacity)
            ranks = .allocate(capacity: symbolCapacity)
            merged = .allocate(capacity: symbolCapacity)
        }
        for i in 0..<n { symbols[i] = byteIDs[Int(word[i])] }
        symbols[n - 1] = byteIDs[256 + Int(word[n - 1])]
        var m = n
        let merges = vocabulary.mergeTable
        for i in 0..<(m - 1) { (ranks[i], merged[i]) = merges.lookup(symbols[i], symbols[i + 1]) }
        while m > 1 {
            var best = Int32.max, at = -1
            for i in 0..<(m - 1) where ranks[i] < best {
                best = ranks[i]
                at = i
            }
            if at < 0 { break }
            // `at` is the leftmost occurrence, so everything before it stays.
            let a = symbols[at], b = symbols[at + 1], c = merged[at]
            var i = at, w = at
            while i < m {
                if i + 1 < m && symbols[i] == a && symbols[i + 1] == b {
                    symbols[w] = c
                    i += 2
                } else {
                    symbols[w] = symbols[i]
                    i += 1
                }
                w += 1
            }
            m = w
            var k = max(at - 1, 0)
            while k < m - 1 {
                (ranks[k], merged[k]) = merges.lookup(symbols[k], symbols[k + 1])
                k += 1
            }
        }
        return m
    }
}
