// libFuzzer harness: the CLIP tokenizer (cleaning, HTML unescaping, pre-tokenising, BPE) on
// arbitrary bytes, and vocabulary files (merges) parsed from arbitrary bytes.
import Foundation
import MMTokenizer

let clip = try! Tokenizer()
let scratch = FuzzScratch(name: "tokenizer")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let rest = UnsafeBufferPointer(start: data + 1, count: size - 1)
    if data[0] & 1 == 0 {
        let text = String(decoding: rest, as: UTF8.self)
        let ids = clip.tokenize([text], contextLength: 77)
        precondition(ids.count == 77 && ids[0] == clip.vocabulary.startOfText, "77 ids starting with SOT")
        _ = clip.decode(clip.encode(text))
    } else {
        // A merges file: header line, then "a b" lines.
        let url = scratch.write(data + 1, size - 1)
        do {
            let v = try Vocabulary(mergesFile: url.path, maxMerges: 4096)
            _ = Tokenizer(vocabulary: v).encode(String(decoding: rest.prefix(64), as: UTF8.self))
        } catch is TokenizerError {
        } catch {
            fatalError("not a TokenizerError: \(error)")
        }
    }
    return 0
}
