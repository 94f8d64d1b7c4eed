// libFuzzer harness: the PNG decoder (libjpeg-turbo / libpng behind mm's shims, with mm's own
// checks) through the path every image mm reads takes; see ImageFuzzer in FuzzSupport.swift.
let fuzzer = ImageFuzzer(name: "png", signature: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    fuzzer.run(data, size)
    return 0
}
