// libFuzzer harness for the `.mmi` index reader (EmbeddingIndex.load): any bytes must give an
// index or an EvalError, never a trap, a hang or an allocation sized by the header. The input is
// written to a file because the reader maps files. When an index loads, a search over it runs
// too (its header fields size the search).
import Foundation
import MMEval
import MMTensor

private let path = FileManager.default.temporaryDirectory.appendingPathComponent("mm-fuzz-mmi-\(getpid()).mmi")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard FileManager.default.createFile(atPath: path.path, contents: Data(bytes: data, count: size)) else { return 0 }
    if let index = try? EmbeddingIndex.load(from: path), index.count > 0 {
        let query = Tensor.zeros([1, index.dimension])
        query.data[0] = 1
        _ = index.search(query, k: 3)
        _ = index.search(query, k: 3, kind: .text)
        for row in 0..<min(index.count, 4) { _ = index.caption(row: row) }
    }
    return 0
}
