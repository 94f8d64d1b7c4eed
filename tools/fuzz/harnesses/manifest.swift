// libFuzzer harness: the CSV/TSV manifest parser (quoting, headers, line ends, UTF-8).
// The first byte picks TSV or CSV and skip-bad; the rest is the file.
import Foundation
import MMData

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let mode = data[0]
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    var options = Manifest.Options()
    options.skipBad = mode & 1 != 0
    if mode & 4 != 0 { options.labelKey = "label" }
    do {
        let m = try Manifest(parsing: bytes, path: mode & 2 != 0 ? "fuzz.csv" : "fuzz.tsv", options: options)
        precondition(m.images.count == m.lines.count, "one line number per sample")
        precondition(m.captions.map { $0.count == m.images.count } ?? true, "one caption per sample")
    } catch is DataError {
    } catch {
        fatalError("not a DataError: \(error)")
    }
    return 0
}
