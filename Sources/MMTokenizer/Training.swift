import Dispatch
import Foundation

/// A vocabulary learnt from captions by `VocabularyTrainer`.
public struct TrainedVocabulary {
    /// The learnt vocabulary, with CLIP's id layout: 512 byte symbols, one token per merge, SOT, EOT.
    public let vocabulary: Vocabulary
    /// The merges in rank order, "a b" as `merges.txt` lists them.
    public var merges: [String] { vocabulary.mergeLines }
    /// The size that was asked for.
    public let requestedSize: Int
    /// Why training stopped before `requestedSize`, or nil when it got there.
    public let stoppedEarly: String?

    /// Vocabulary size reached (`512 + merges + 2`).
    public var size: Int { vocabulary.count }

    /// Writes `merges.txt` and `vocab.json` into `directory` (see `Vocabulary.write(to:)`); both
    /// load with `Vocabulary.load(directory)`, and `gzip -k merges.txt` gives a file open_clip's
    /// `SimpleTokenizer(bpe_path=...)` reads with the same ids.
    public func write(to directory: String) throws {
        try vocabulary.write(to: directory)
    }
}

/// Learns byte-level BPE merges from captions with open_clip's cleaning and split pattern, so a
/// small model can use a small vocabulary that tokenizes exactly like CLIP's, just with fewer merges.
public enum VocabularyTrainer {
    /// The smallest vocabulary: the 512 byte symbols (with and without `</w>`) and SOT/EOT.
    public static let baseSize = 514

    /// Repeatedly merges the most frequent adjacent symbol pair (ties: the pair of earlier-created
    /// symbols) until the vocabulary has `size` tokens, no pair occurs `minFrequency` times, or no
    /// pair is left — then it stops and says why in `stoppedEarly`.
    public static func train(
        captions: [String], size: Int, minFrequency: Int = 2,
        threads: Int? = nil
    ) throws -> TrainedVocabulary {
        guard size >= baseSize else {
            throw TokenizerError.invalidTrainingRequest(
                "size \(size) is below the \(baseSize) tokens every byte-level vocabulary has (512 byte symbols + 2 special tokens)")
        }
        guard minFrequency >= 1 else { throw TokenizerError.invalidTrainingRequest("minimum frequency must be at least 1") }
        let base = try Vocabulary(mergeLines: [], firstLine: 1, source: "base alphabet")
        let counted = countWords(captions, base: base, threads: threads ?? Tokenizer.defaultThreads)

        // Words as symbol sequences; symbols are token indices (first 512: the byte symbols).
        var tokens = Array(base.tokens.prefix(512))
        var symbolOf: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() { symbolOf[t] = Int32(i) }
        var words: [[Int32]] = []
        var frequency: [Int] = []
        for (bytes, count) in counted.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            var word = bytes.map { base.byteIDs[Int($0)] }
            word[word.count - 1] = base.byteIDs[256 + Int(bytes[bytes.count - 1])]
            words.append(word)
            frequency.append(count)
        }

        var pairCount: [UInt64: Int] = [:]
        var wordsWith: [UInt64: [Int32]] = [:]
        for (w, word) in words.enumerated() where word.count > 1 {
            for i in 0..<(word.count - 1) {
                let key = pairKey(word[i], word[i + 1])
                pairCount[key, default: 0] += frequency[w]
                wordsWith[key, default: []].append(Int32(w))
            }
        }
        var heap = PairHeap()
        for (key, count) in pairCount { heap.push(count, key) }

        var merges: [String] = []
        var stopped: String? = nil
        let wanted = size - baseSize
        var lastVisit = [Int](repeating: -1, count: words.count)
        while merges.count < wanted {
            guard let (count, key) = heap.popValid(pairCount) else {
                stopped = "no pair of symbols is left to merge in these captions"
                break
            }
            if count < minFrequency {
                stopped = "the most frequent remaining pair occurs \(count) time\(count == 1 ? "" : "s"), below the minimum frequency \(minFrequency)"
                break
            }
            let a = Int32(truncatingIfNeeded: key >> 32), b = Int32(truncatingIfNeeded: key & 0xFFFF_FFFF)
            let joined = tokens[Int(a)] + tokens[Int(b)]
            merges.append(tokens[Int(a)] + " " + tokens[Int(b)])
            let symbol = symbolOf[joined] ?? Int32(tokens.count)  // same string, same symbol
            tokens.append(joined)
            if symbolOf[joined] == nil { symbolOf[joined] = symbol }

            var delta: [UInt64: Int] = [:]
            for w32 in wordsWith.removeValue(forKey: key) ?? [] {
                let w = Int(w32)
                if lastVisit[w] == merges.count { continue }
                lastVisit[w] = merges.count
                let old = words[w], f = frequency[w]
                var merged: [Int32] = []
                merged.reserveCapacity(old.count)
                var i = 0
                while i < old.count {
                    if i + 1 < old.count && old[i] == a && old[i + 1] == b {
                        merged.append(symbol)
                        i += 2
                    } else {
                        merged.append(old[i])
                        i += 1
                    }
                }
                if merged.count == old.count { continue }  // a stale entry: the pair is gone from this word
                for i in 0..<(old.count - 1) { delta[pairKey(old[i], old[i + 1]), default: 0] -= f }
                for i in 0..<max(merged.count - 1, 0) {
                    let k = pairKey(merged[i], merged[i + 1])
                    delta[k, default: 0] += f
                    if merged[i] == symbol || merged[i + 1] == symbol { wordsWith[k, default: []].append(w32) }
                }
                words[w] = merged
            }
            for (k, d) in delta where d != 0 {
                let now = (pairCount[k] ?? 0) + d
                if now > 0 {
                    pairCount[k] = now
                    heap.push(now, k)
                } else {
                    pairCount[k] = nil
                }
            }
        }
        let vocabulary = try Vocabulary(mergeLines: ArraySlice(merges.map { Substring($0) }), firstLine: 2, source: "trained vocabulary")
        return TrainedVocabulary(vocabulary: vocabulary, requestedSize: size, stoppedEarly: stopped)
    }

    /// How often each piece occurs across the captions (split as the tokenizer splits; special
    /// token literals are not words).
    static func countWords(_ captions: [String], base: Vocabulary, threads: Int) -> [[UInt8]: Int] {
        let chunks = max(1, min(threads, captions.count / 256))
        var partial = [[[UInt8]: Int]](repeating: [:], count: chunks)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let encoder = Encoder(base)
            var counts: [[UInt8]: Int] = [:]
            for caption in captions[(captions.count * c / chunks)..<(captions.count * (c + 1) / chunks)] {
                encoder.forEachPiece(encoder.prepare(caption)) { piece, special in
                    if special < 0 { counts[Array(piece), default: 0] += 1 }
                }
            }
            lock.lock()
            partial[c] = counts
            lock.unlock()
        }
        var total = partial[0]
        for p in partial.dropFirst() { total.merge(p, uniquingKeysWith: +) }
        return total
    }

    @inline(__always)
    static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }
}

/// Max-heap of (count, pair) with lazy deletion: stale entries are skipped when popped.
struct PairHeap {
    private var items: [(count: Int, key: UInt64)] = []

    @inline(__always)
    private func above(_ x: (count: Int, key: UInt64), _ y: (count: Int, key: UInt64)) -> Bool {
        x.count > y.count || (x.count == y.count && x.key < y.key)
    }

    mutating func push(_ count: Int, _ key: UInt64) {
        items.append((count, key))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard above(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    /// The top entry whose count is still current.
    mutating func popValid(_ current: [UInt64: Int]) -> (Int, UInt64)? {
        while let top = items.first {
            let last = items.removeLast()
            if !items.isEmpty {
                items[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var best = i
                    if l < items.count && above(items[l], items[best]) { best = l }
                    if r < items.count && above(items[r], items[best]) { best = r }
                    if best == i { break }
                    items.swapAt(i, best)
                    i = best
                }
            }
            if current[top.key] == top.count { return (top.count, top.key) }
        }
        return nil
    }
}
