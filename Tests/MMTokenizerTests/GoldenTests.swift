import Foundation
import MMTokenizer
import Testing

/// Every id must equal open_clip's (tools/make_tokenizer_fixtures.py ran open_clip 3.3.0's
/// SimpleTokenizer over the corpus).
@Suite struct GoldenTests {
    let fixture = Fixtures.captions
    let tokenizer = Fixtures.tokenizer

    @Test func corpusIsLargeAndDiverse() {
        #expect(fixture.captions.count >= 2000)
        let categories = Set(fixture.captions.map(\.category))
        for c in [
            "plain", "contractions", "numbers", "accents", "scripts", "emoji", "entities", "quotes",
            "ligatures", "fullwidth", "controls", "blank", "long", "specials", "fuzz"
        ] {
            #expect(categories.contains(c), "category \(c) missing")
        }
        #expect(fixture.captions.contains { $0.row.count == 77 && $0.ids.count > 200 }, "no caption far beyond 77 tokens")
    }

    @Test func cleaningMatchesOpenCLIP() {
        var m = Mismatches(label: "clean")
        for c in fixture.captions {
            m.check(Tokenizer.clean(c.text), c.clean, "[\(c.category)] \(visible(c.text))")
        }
        m.finish(of: fixture.captions.count)
    }

    @Test func idsMatchOpenCLIP() {
        var m = Mismatches(label: "encode")
        for c in fixture.captions {
            m.check(tokenizer.encode(c.text), c.ids, "[\(c.category)] \(visible(c.text))")
        }
        m.finish(of: fixture.captions.count)
    }

    @Test func rowsMatchOpenCLIP() {
        var m = Mismatches(label: "tokenize row")
        for c in fixture.captions {
            let row = tokenizer.tokenize(c.text)
            m.check(row.count, 77, "row length")
            m.check(row, c.row + Array(repeating: 0, count: 77 - c.row.count), "[\(c.category)] \(visible(c.text))")
        }
        m.finish(of: fixture.captions.count)
    }

    /// The batch path (both threads, shared word caches) gives the same rows as one at a time.
    @Test func batchRowsMatchOpenCLIP() {
        let texts = fixture.captions.map(\.text)
        for threads in [1, 2] {
            let fresh = Tokenizer(vocabulary: tokenizer.vocabulary)
            let rows = fresh.tokenize(texts + texts, threads: threads)  // second copy: served from the caches
            var m = Mismatches(label: "batch, \(threads) thread(s)")
            for (i, c) in (fixture.captions + fixture.captions).enumerated() {
                m.check(Array(rows[(i * 77)..<((i + 1) * 77)]), c.row + Array(repeating: 0, count: 77 - c.row.count), visible(c.text))
            }
            m.finish(of: texts.count * 2)
        }
    }

    @Test func otherContextLengthsMatchOpenCLIP() {
        var m = Mismatches(label: "context length")
        for c in fixture.context_lengths {
            m.check(tokenizer.tokenize(c.text, contextLength: c.context_length), c.row, "length \(c.context_length): \(visible(c.text))")
        }
        m.finish(of: fixture.context_lengths.count)
    }

    @Test func decodingMatchesOpenCLIP() {
        var m = Mismatches(label: "decode")
        for c in fixture.captions {
            m.check(tokenizer.decode(c.ids), c.decoded, visible(c.text))
        }
        for d in fixture.decodes {
            m.check(tokenizer.decode(d.ids), d.text, "ids \(d.ids)")
        }
        m.finish(of: fixture.captions.count + fixture.decodes.count)
    }

    @Test func htmlEntitiesCleanAsOpenCLIP() throws {
        let entities = try Fixtures.load("entities.json", as: EntityFixture.self)
        #expect(entities.cases.count > 8000)
        var m = Mismatches(label: "entity")
        for c in entities.cases {
            m.check(Tokenizer.clean(c.text), c.clean, visible(c.text))
        }
        m.finish(of: entities.cases.count)
    }

    /// The scanner's letter/number/space classes against the `regex` module's `\p{L}`, `\p{N}`,
    /// `\s` (and Python's `str.isspace`, whose characters the cleaning turns into separators).
    /// Code points the Swift standard library does not know yet (assigned after its Unicode
    /// version) are only counted: they are the documented difference.
    @Test func splitClassesMatchPythonRegex() throws {
        let f = try Fixtures.load("classes.json", as: ClassFixture.self)
        var expected = [SplitClass](repeating: .other, count: 0x110000)
        for (ranges, cls) in [(f.L, SplitClass.letter), (f.N, .number), (f.s, .space), (f.isspace, .space)] {
            for r in ranges { for v in r[0]...r[1] { expected[Int(v)] = cls } }
        }
        var m = Mismatches(label: "split class")
        var newer = 0, checked = 0
        for v in UInt32(0)..<0x110000 {
            guard let scalar = Unicode.Scalar(v) else { continue }
            let ours = SplitClass.of(scalar)
            if scalar.properties.age == nil {  // unassigned in Swift's Unicode data
                if ours != expected[Int(v)] { newer += 1 }
                continue
            }
            checked += 1
            m.check(ours, expected[Int(v)], "U+\(String(v, radix: 16, uppercase: true))")
        }
        m.finish(of: checked)
        print(
            "split classes: \(checked) assigned code points agree; \(newer) code points assigned after the standard library's Unicode version are classified differently by `regex`"
        )
    }

    @Test func mojibakeIsTheOnlyGapAndIsCounted() {
        // The fixture script leaves out captions whose cleaning depends on ftfy's mojibake repair;
        // its ten deliberate mojibake examples must be among them.
        #expect(fixture.dropped_mojibake >= 10)
    }
}
