import Foundation
import MMTokenizer
import Testing

/// Bad files get one clear error naming the file (and line); nothing crashes.
@Suite struct BadInputTests {
    let dir: URL = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mm-tok-bad-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try! FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }()

    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let url = dir.appendingPathComponent(name)
        FileManager.default.createFile(atPath: url.path, contents: Data(bytes))
        return url.path
    }

    func write(_ name: String, _ text: String) -> String { write(name, Array(text.utf8)) }

    func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    /// A file of one line (and its line break) has a header and no merges: refused, not
    /// loaded as a byte-level vocabulary that silently tokenises everything into bytes.
    @Test func aMergesFileWithoutMergesIsRefused() throws {
        for text in ["not a folder\n", "#version: 0.2\r\n\r\n", "header"] {
            let path = write("one_line.txt", text)
            let error = message { _ = try Vocabulary.load(path) }
            #expect(error?.contains(path) == true && error?.contains("no merges") == true, "\(text.debugDescription): \(error ?? "loaded")")
        }
    }

    @Test func invalidUTF8CaptionNamesTheLine() throws {
        let path = write("captions.txt", Array("a cat\nvalid line\nbad \u{e9}".utf8) + [0xFF, 0x41] + Array("\nlast\n".utf8))
        let error = message { _ = try readCaptions(path) }
        #expect(error?.contains("\(path):3:") == true, "\(error ?? "no error")")
        #expect(error?.contains("0xFF") == true)
        let replaced = try readCaptions(path, replaceInvalid: true)
        #expect(replaced == ["a cat", "valid line", "bad \u{e9}\u{FFFD}A", "last"])
        // Truncated multi-byte sequences and overlong encodings are errors too.
        for bad: [UInt8] in [[0xE6, 0x9D], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80]] {
            let p = write("b.txt", Array("ok\n".utf8) + bad)
            #expect(message { _ = try readCaptions(p) }?.contains(":2:") == true)
        }
    }

    @Test func captionFilesKeepEmptyLinesAndDropCarriageReturns() throws {
        let path = write("c.txt", "one\r\n\r\ntwo")
        #expect(try readCaptions(path) == ["one", "", "two"])
    }

    /// A merges.txt (and a caption file) written on Windows, or with old Mac line ends, reads
    /// as the same vocabulary: lines end at LF, CRLF or CR.
    @Test func vocabularyAndCaptionFilesAcceptEveryLineEnd() throws {
        let merges = ["#version: 0.2", "a b", "ab c", "c d</w>"]
        var ids: [[Int32]] = []
        for (k, end) in ["\n", "\r\n", "\r"].enumerated() {
            let folder = dir.appendingPathComponent("hf\(k)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let v = try Vocabulary(mergesFile: write("hf\(k)/merges.txt", merges.joined(separator: end) + end))
            #expect(v.mergeCount == 3, "line end \(Array(end.utf8))")
            ids.append(Tokenizer(vocabulary: v).encode("abc cd"))
            #expect(try readCaptions(write("cap\(k).txt", ["one", "", "two"].joined(separator: end) + end)) == ["one", "", "two"])
        }
        #expect(ids[0] == ids[1] && ids[1] == ids[2])
    }

    /// What is not a regular file is refused at once, never read forever or waited on.
    @Test func vocabularyFilesMustBeRegularFiles() throws {
        let fifo = dir.appendingPathComponent("merges.fifo").path
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(message { _ = try Vocabulary(mergesFile: fifo) }?.contains("is a FIFO, not a regular file") == true)
        #expect(message { _ = try Vocabulary(mergesFile: "/dev/zero") }?.contains("is a character device") == true)
    }

    @Test func missingAndUnreadableVocabularies() {
        let missing = dir.appendingPathComponent("nope.txt.gz").path
        #expect(message { _ = try Vocabulary.load(missing) }?.contains(missing) == true)
        #expect(message { _ = try Vocabulary(mergesFile: dir.path) }?.contains("is a directory") == true)
        let empty = dir.appendingPathComponent("emptydir")
        try? FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect(message { _ = try Vocabulary.load(empty.path) }?.contains("neither") == true)
    }

    @Test func corruptGzip() {
        let gz = try! Data(contentsOf: Fixtures.checkout.appendingPathComponent("Sources/MMTokenizer/vocab/bpe_simple_vocab_16e6.txt.gz"))
        var bytes = [UInt8](gz.prefix(4096))
        for i in stride(from: 200, to: 4096, by: 7) { bytes[i] ^= 0x5A }
        let path = write("broken.txt.gz", bytes)
        let error = message { _ = try Vocabulary(mergesFile: path) }
        #expect(error?.hasPrefix(path) == true, "\(error ?? "no error")")
    }

    @Test func malformedMergesNameTheLine() {
        let three = write("m3.txt", "#version: 0.2\ni n\nt h e\n")
        #expect(
            message { _ = try Vocabulary(mergesFile: three) }
                == "\(three):3: malformed vocabulary: expected two symbols separated by a space, found 3")
        let unknown = write("mu.txt", "#version: 0.2\ni n\nin \u{3042}\n")
        #expect(message { _ = try Vocabulary(mergesFile: unknown) }?.hasPrefix("\(unknown):3:") == true)
        let headerOnly = write("mh.txt", "#version")
        #expect(message { _ = try Vocabulary(mergesFile: headerOnly) }?.contains("no merges") == true)
        let binary = write("mb.txt", [0x23, 0x0A, 0x69, 0x20, 0xFE, 0x0A])
        #expect(message { _ = try Vocabulary(mergesFile: binary) }?.contains("\(binary):2:") == true)
    }

    @Test func malformedHuggingFaceFiles() throws {
        let merges = write("merges.txt", "#version: 0.2\ni n")
        let notJSON = write("v1.json", "{\"a\": 1,")
        #expect(message { _ = try Vocabulary(vocabJSON: notJSON, merges: merges) } == "\(notJSON): malformed vocabulary: not valid JSON")
        let badID = write("v2.json", "{\"a\": \"x\"}")
        #expect(message { _ = try Vocabulary(vocabJSON: badID, merges: merges) }?.contains("integer ids") == true)
        let negative = write("v3.json", "{\"a\": -4}")
        #expect(message { _ = try Vocabulary(vocabJSON: negative, merges: merges) }?.contains("token 'a'") == true)
        // A vocab.json without the byte alphabet.
        let partial = write("v4.json", "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}")
        #expect(message { _ = try Vocabulary(vocabJSON: partial, merges: merges) }?.contains("byte symbol") == true)
        // A merge whose result is not in vocab.json names the merges line.
        let clip = try Vocabulary.clip()
        try clip.write(to: dir.appendingPathComponent("hf").path)
        let bad = write("hf-merges.txt", "#version: 0.2\ni n\nq \u{0120}z\n")
        let vocabJSON = dir.appendingPathComponent("hf/vocab.json").path
        #expect(message { _ = try Vocabulary(vocabJSON: vocabJSON, merges: bad) }?.hasPrefix("\(bad):3:") == true)
    }

    @Test func oddTextNeverCrashes() {
        let tokenizer = Fixtures.tokenizer
        let texts = [
            "\u{0}", String(repeating: "&amp;", count: 2000), String(repeating: "\u{1b}[", count: 500),
            String(repeating: "a", count: 100_000), String(repeating: "&#x", count: 1000) + ";",
            "&" + String(repeating: "x", count: 40) + ";", String(repeating: "\u{301}", count: 300),
            String(repeating: "\r\n", count: 1000), "\u{FFFF}\u{10FFFF}\u{E000}"
        ]
        for t in texts {
            let row = tokenizer.tokenize(t)
            #expect(row.count == 77 && row[0] == tokenizer.vocabulary.startOfText)
        }
        #expect(tokenizer.decode([-1, 99_999_999, 320]) == "\u{FFFD}\u{FFFD}a ")
    }
}
