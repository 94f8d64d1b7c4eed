// libFuzzer harness: the safetensors reader (header JSON, offsets, dtypes, layout).
// Every input must either load or throw a SafetensorsError; a trap or a hang is a finding.
import Foundation
import MMTensor

let scratch = FuzzScratch(name: "safetensors")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = scratch.write(data, size)
    do {
        let file = try Safetensors(contentsOf: url)
        // What loads must write back and load again.
        let again = scratch.url(suffix: ".out")
        try file.write(to: again)
        _ = try Safetensors(contentsOf: again)
    } catch is SafetensorsError {
    } catch {
        fatalError("not a SafetensorsError: \(error)")
    }
    return 0
}
