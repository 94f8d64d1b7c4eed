// libFuzzer harness for the Parquet reader (ParquetFile): any bytes must give columns or a
// DataError, never a trap, a hang or an allocation sized by a count the file merely claims.
// Every readable column is read (pages, dictionaries, levels, codecs).
import Foundation
import MMData

private let scratch = FuzzScratch(name: "parquet")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = scratch.write(data, size)
    guard let file = try? ParquetFile(path: url.path) else { return 0 }
    for (i, column) in file.columns.enumerated() where column.unsupported == nil {
        if let values = try? file.read(column: i) {
            for row in 0..<min(values.count, 4) { _ = values.text(row) }
        }
    }
    return 0
}
