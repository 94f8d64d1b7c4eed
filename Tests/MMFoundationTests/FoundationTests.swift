import Foundation
import MMFoundation
import Testing

@Suite struct RandomTests {
    /// SplitMix64's published first outputs for seed 1234567 (the reference C implementation
    /// by Vigna), so every stream mm seeds stays what it was.
    @Test func seededGeneratorIsSplitMix64() {
        var g = SeededGenerator(seed: 1_234_567)
        let expected: [UInt64] = [
            6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423,
            4_593_380_528_125_082_431, 16_408_922_859_458_223_821
        ]
        #expect((0..<5).map { _ in g.next() } == expected)
        #expect(SeededGenerator.mix(1_234_567) == expected[0])
    }
}

@Suite struct HashingTests {
    /// FNV-1a 64 test vectors (Fowler, Noll, Vo).
    @Test func fnv1aMatchesTheStandardVectors() {
        #expect(FNV1a.hash("") == 0xCBF2_9CE4_8422_2325)
        #expect(FNV1a.hash("a") == 0xAF63_DC4C_8601_EC8C)
        #expect(FNV1a.hash("foobar") == 0x8594_4171_F739_67E8)
        var words = FNV1a()
        let bytes: [UInt8] = Array("0123456789abc".utf8)
        bytes.withUnsafeBytes { words.combine(words: $0) }
        var manual = FNV1a()
        manual.combine(word: UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        manual.combine(bytes: bytes[8...])
        #expect(words.value == manual.value)
    }
}

@Suite struct TextTests {
    /// LF, CRLF and a lone CR all end a line; line numbers stay 1 + index.
    @Test func linesEndAtLFCRLFAndCR() {
        #expect(Text.lines("a\nb\r\nc\rd").map(String.init) == ["a", "b", "c", "d"])
        #expect(Text.lines("a\r\n\r\nb\n").map(String.init) == ["a", "", "b", ""])
        #expect(Text.lines("").map(String.init) == [""])
        #expect(Text.lines("x\ny\nz", maxSplits: 1).map(String.init) == ["x", "y\nz"])
        #expect(Text.lineRanges(Array("é\r\nf".utf8)).count == 2)
    }

    /// Escaped names survive any character, and plain names are written unchanged.
    @Test func escapedLinesRoundTrip() {
        for name in ["plain.jpg", "new\nline.jpg", "back\\slash\\n.jpg", "cr\r.jpg", "trailing\\", "\\\\\n\r"] {
            let line = Text.escapedLine(name)
            #expect(!line.contains("\n") && !line.contains("\r"))
            #expect(Text.unescapedLine(line[...]) == name, "\(name)")
        }
        #expect(Text.escapedLine("plain.jpg") == "plain.jpg")
    }

    @Test func jsonQuotingAndUTF8() {
        #expect(Text.jsonQuoted("a\"b\\c\n\u{1}é") == #""a\"b\\c\n\u0001é""#)
        let bad: [UInt8] = [0x61, 0x0A, 0x62, 0xC0, 0xAF]
        #expect(bad.withUnsafeBufferPointer { Text.firstInvalidUTF8($0) } == 3)
        #expect(Text.firstInvalidUTF8Position(bad)! == (line: 2, column: 2, byte: 0xC0))
        #expect(Text.excerpt("a\rb\rc"[...], limit: 3) == "a⏎b…")
    }
}

@Suite struct FileTests {
    let dir: String = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mm-foundation-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    /// A FIFO or a device is refused at once (no blocking open, no endless read); a file over
    /// the caller's bound is refused before it is read.
    @Test func readingRequiresABoundedRegularFile() throws {
        let fifo = dir + "/pipe.jpg"
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(throws: FileError.notRegularFile(path: fifo, kind: "a FIFO")) { try ReadableFile(fifo) }
        #expect(throws: FileError.notRegularFile(path: "/dev/zero", kind: "a character device")) { try ReadableFile("/dev/zero") }
        #expect(throws: FileError.notRegularFile(path: dir, kind: "a directory")) { try ReadableFile(dir) }
        let sparse = dir + "/huge.jpg"
        #expect(FileManager.default.createFile(atPath: sparse, contents: nil))
        #expect(truncate(sparse, 3 << 30) == 0)
        #expect(throws: FileError.tooLarge(path: sparse, size: 3 << 30, limit: 1 << 20)) { try ReadableFile(sparse, maxSize: 1 << 20) }
        let small = dir + "/small.txt"
        try AtomicFile.write("hello\n", to: small)
        let f = try ReadableFile(small)
        #expect(try f.prefix(3) == Array("hel".utf8) && f.readAll() == Array("hello\n".utf8))
        #expect(try MappedFile(small).bytes.count == 6)
    }

    /// Atomic writes replace the file whole, leave no temporary behind, can write a file onto
    /// itself, and fail cleanly where they cannot write.
    @Test func atomicWritesReplaceWholeFiles() throws {
        let path = dir + "/out.txt"
        try AtomicFile.write("one", to: path)
        try AtomicFile.write(try ReadableFile(path).readAll() + Array(" two".utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "one two")
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try AtomicFile.write(to: path) { w in
                try w.write("partial"); throw Stop()
            }
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "one two")
        #expect(throws: FileError.self) { try AtomicFile.write("x", to: dir + "/missing/out.txt") }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    /// A scratch map starts zeroed, keeps what is written, leaves no file in its directory even
    /// while mapped, and names the directory when it cannot create one.
    @Test func scratchMapsAreZeroedWritableAndLeaveNoFile() throws {
        let scratch = dir + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let map = try ScratchMap(size: 3 << 20, in: scratch)
        let floats = map.bytes.bindMemory(to: Float.self)
        #expect(floats.count == 3 << 18 && floats.allSatisfy { $0 == 0 })
        for i in stride(from: 0, to: floats.count, by: 4099) { floats[i] = Float(i) }
        #expect(stride(from: 0, to: floats.count, by: 4099).allSatisfy { floats[$0] == Float($0) } && floats[1] == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).isEmpty)
        #expect(throws: FileError.unwritable(path: dir + "/missing", reason: "cannot create a scratch file: No such file or directory")) {
            try ScratchMap(size: 16, in: dir + "/missing")
        }
    }

    @Test func resourcesAreFoundInTheCheckout() {
        let found = Resources.locate("vocab/bpe_simple_vocab_16e6.txt.gz", target: "MMTokenizer")
        #expect(found.path != nil, "searched \(found.searched)")
        #expect(Resources.locate("no/such.file", target: "MMTokenizer").path == nil)
    }
}

@Suite struct ThreadsTests {
    /// A spawned thread runs its body under its name; a refused one is an error naming the thread
    /// and the limit (the refusal itself is exercised for real in ThreadLimitTests, under RLIMIT_NPROC).
    @Test func spawnRunsTheBodyOrSaysWhichThreadWasRefused() throws {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var name: String?
        try Threads.spawn("mm-test-1") {
            name = Thread.current.name
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(name == "mm-test-1")
        try Threads.checkAvailable(8)
        let refused = ThreadError(name: "mm-data-3", code: EAGAIN).description
        #expect(refused.contains("mm-data-3") && refused.contains("Resource temporarily unavailable") && refused.contains("ulimit -u"))
    }
}
