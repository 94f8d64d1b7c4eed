import Foundation
import MMTokenizer
import Testing

@Suite struct RoundTripTests {
    let tokenizer = Fixtures.tokenizer

    /// Plain captions (words and spaces only) come back exactly as cleaned.
    @Test func plainCaptionsDecodeToTheirCleanedText() {
        var plain = 0
        for c in Fixtures.captions.captions where c.clean.unicodeScalars.allSatisfy({ $0 == " " || SplitClass.of($0) == .letter }) {
            plain += 1
            var decoded = tokenizer.decode(tokenizer.encode(c.text))
            if decoded.last == " " { decoded.removeLast() }
            #expect(decoded == c.clean, "\(visible(c.text))")
        }
        #expect(plain > 500)
    }

    /// Byte-level BPE loses nothing: for every caption, the decoded pieces are the cleaned text
    /// without its spaces.
    @Test func everyCaptionKeepsItsBytes() {
        for c in Fixtures.captions.captions {
            let decoded = tokenizer.decode(tokenizer.encode(c.text))
            #expect(
                decoded.unicodeScalars.filter { $0 != " " }.map(String.init).joined()
                    == c.clean.unicodeScalars.filter { $0 != " " }.map(String.init).joined(), "\(visible(c.text))")
        }
    }

    @Test func pieceSplitFollowsThePattern() {
        #expect(tokenizer.pieces("It's 2024: naïve cafés, 東京!!") == ["it", "'s", "2", "0", "2", "4", ":", "naïve", "cafés", ",", "東京", "!!"])
        #expect(tokenizer.pieces("a<start_of_text>b") == ["a", "<start_of_text>", "b"])
        #expect(tokenizer.pieces("!!'s") == ["!!'", "s"])
        #expect(tokenizer.pieces("it'ſ") == ["it", "'ſ"])
        #expect(tokenizer.pieces("") == [])
    }

    @Test func truncationKeepsEndOfTextLast() {
        let v = tokenizer.vocabulary
        let long = String(repeating: "a photo of a cat ", count: 100)
        let row = tokenizer.tokenize(long)
        #expect(row.count == 77 && row.first == v.startOfText && row.last == v.endOfText)
        #expect(tokenizer.tokenize(long, contextLength: 1) == [v.endOfText])
        #expect(tokenizer.tokenize("", contextLength: 5) == [v.startOfText, v.endOfText, 0, 0, 0])
    }
}
