import Foundation
import MMTokenizer
import Testing

@Suite struct VocabularyTests {
    @Test func clipVocabularyHasOpenCLIPsLayout() throws {
        let v = try Vocabulary.clip()
        #expect(v.count == 49408)
        #expect(v.mergeCount == 48894)
        #expect(v.startOfText == 49406 && v.endOfText == 49407)
        #expect(v.tokens[0] == "!" && v.tokens[256] == "!</w>" && v.tokens[49406] == "<start_of_text>")
    }

    /// Written as Hugging Face vocab.json + merges.txt and read back, CLIP gives the same ids.
    @Test func huggingFaceFilesGiveTheSameIDs() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-tok-hf-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = try Vocabulary.clip()
        try clip.write(to: dir.path)
        let hf = try Vocabulary(
            vocabJSON: dir.appendingPathComponent("vocab.json").path,
            merges: dir.appendingPathComponent("merges.txt").path)
        #expect(hf.count == clip.count && hf.startOfText == clip.startOfText && hf.endOfText == clip.endOfText)
        let a = Tokenizer(vocabulary: clip), b = Tokenizer(vocabulary: hf)
        // Hugging Face names the special tokens <|startoftext|>/<|endoftext|>, so text spelling
        // either name out is split differently; everything else must match.
        let texts = Fixtures.captions.captions.map(\.text).filter {
            let clean = Tokenizer.clean($0)
            return !clean.contains("of_text") && !clean.contains("oftext")
        }
        #expect(texts.count > 2000)
        #expect(differingRows(a.tokenize(texts), b.tokenize(texts)) == 0)
        // merges.txt alone (CLIP layout, CLIP's special names) gives CLIP's ids for every caption.
        let merges = try Vocabulary(mergesFile: dir.appendingPathComponent("merges.txt").path)
        let all = Fixtures.captions.captions.map(\.text)
        #expect(differingRows(Tokenizer(vocabulary: merges).tokenize(all), a.tokenize(all)) == 0)
    }

    func differingRows(_ x: [Int32], _ y: [Int32]) -> Int {
        guard x.count == y.count else { return -1 }
        return stride(from: 0, to: x.count, by: 77).filter { x[$0..<($0 + 77)] != y[$0..<($0 + 77)] }.count
    }
}
