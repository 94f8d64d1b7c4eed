// libFuzzer harness: the JPEG decoder (libjpeg-turbo / libpng behind mm's shims, with mm's own
// checks) through the path every image mm reads takes; see ImageFuzzer in FuzzSupport.swift.
let fuzzer = ImageFuzzer(name: "jpeg", signature: [0xFF, 0xD8, 0xFF])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    fuzzer.run(data, size)
    return 0
}
