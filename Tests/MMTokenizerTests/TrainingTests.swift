import Foundation
import MMTokenizer
import Testing

@Suite struct TrainingTests {
    func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("mm-tok-\(name)-\(getpid())").path
    }

    /// A 4,096-token vocabulary learnt from the golden corpus: reached, written, loaded both ways,
    /// and lossless.
    @Test func trainsA4096VocabularyThatRoundTripsAndLoads() throws {
        let texts = Fixtures.captions.captions.map(\.text)
        let trained = try VocabularyTrainer.train(captions: texts, size: 4096, minFrequency: 1)
        #expect(trained.stoppedEarly == nil, "\(trained.stoppedEarly ?? "")")
        #expect(trained.size == 4096 && trained.merges.count == 4096 - 514)
        let v = trained.vocabulary
        #expect(v.startOfText == 4094 && v.endOfText == 4095)

        let dir = temporary("trained")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try trained.write(to: dir)
        let loaded = try Vocabulary.load(dir)  // vocab.json + merges.txt
        let mergesOnly = try Vocabulary(mergesFile: dir + "/merges.txt")
        #expect(loaded.count == 4096 && mergesOnly.count == 4096)
        #expect(loaded.mergeLines == trained.merges)

        let ours = Tokenizer(vocabulary: v), reloaded = Tokenizer(vocabulary: loaded)
        let rows = ours.tokenize(texts, contextLength: 77)
        #expect(rows == Tokenizer(vocabulary: mergesOnly).tokenize(texts, contextLength: 77), "reloaded merges.txt differs")
        #expect(rows.allSatisfy { $0 >= 0 && $0 < 4096 })
        // vocab.json names the special tokens as Hugging Face does (<|startoftext|>), so only text
        // spelling out a special token's name may split differently.
        let plain = texts.filter { !Tokenizer.clean($0).contains("of_text") && !Tokenizer.clean($0).contains("oftext") }
        #expect(ours.tokenize(plain) == reloaded.tokenize(plain), "reloaded vocab.json + merges.txt differs")
        for c in Fixtures.captions.captions {
            let ids = ours.encode(c.text)
            #expect(
                ours.decode(ids).unicodeScalars.filter { $0 != " " }.map(String.init).joined()
                    == c.clean.unicodeScalars.filter { $0 != " " }.map(String.init).joined())
        }
        // The learnt merges compress: fewer ids than bytes on the corpus it saw.
        let idCount = texts.reduce(0) { $0 + ours.encode($1).count }
        let byteCount = texts.reduce(0) { $0 + Tokenizer.clean($1).utf8.filter { $0 != 0x20 }.count }
        #expect(idCount * 2 < byteCount)
    }

    /// The bundled captions (template text, ~200 distinct words) cannot fill 4,096 tokens: the
    /// trainer stops, says why, and what it learnt still loads and round-trips.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: TrainingTests.bundled), "bundled captions not present"))
    func bundledCaptionsStopCleanly() throws {
        let captions = try readCaptions(TrainingTests.bundled)
        let trained = try VocabularyTrainer.train(captions: captions, size: 4096)
        #expect(trained.stoppedEarly != nil)
        #expect(trained.size < 4096 && trained.size > 514)
        let dir = temporary("bundled")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try trained.write(to: dir)
        let tokenizer = Tokenizer(vocabulary: try Vocabulary.load(dir))
        for caption in captions.prefix(500) {
            let clean = Tokenizer.clean(caption)
            if clean.unicodeScalars.allSatisfy({ $0 == " " || SplitClass.of($0) == .letter }) {
                #expect(tokenizer.decodeText(tokenizer.tokenize(caption, contextLength: 200)) == clean)
            }
        }
    }

    static let bundled = Fixtures.checkout.appendingPathComponent("datasets/shapes/captions.txt").path

    @Test func sizesBelowTheAlphabetAreRefused() {
        #expect(throws: TokenizerError.self) { try VocabularyTrainer.train(captions: ["a b"], size: 100) }
    }

    @Test func trainingIsDeterministic() throws {
        let texts = Array(Fixtures.captions.captions.map(\.text).prefix(600))
        let a = try VocabularyTrainer.train(captions: texts, size: 1000, threads: 1)
        let b = try VocabularyTrainer.train(captions: texts, size: 1000, threads: 2)
        #expect(a.merges == b.merges)
    }
}
