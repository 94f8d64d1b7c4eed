// libFuzzer harness: the PNG decoder (libjpeg-turbo / libpng behind mm's shims, with mm's
// size checks), through the same path as every image mm reads: decode, then open_clip's
// eval transform. Inputs get a valid PNG signature so the fuzzer spends its time in the decoder.
import Foundation
import MMImage

let scratch = FuzzScratch(name: "png")
let pipeline = ImagePipeline(transform: .eval(size: 32))
let out = UnsafeMutablePointer<Float>.allocate(capacity: 3 * 32 * 32)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let signature: [UInt8] = "png" == "jpeg" ? [0xFF, 0xD8, 0xFF] : [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if !bytes.starts(with: signature) { bytes = signature + bytes }
    let url = bytes.withUnsafeBufferPointer { scratch.write($0.baseAddress!, $0.count) }
    do {
        let image = try ImageDecoder().decode(path: url.path)
        precondition(image.pixels.count == image.width * image.height * 3, "RGB buffer size")
        try pipeline.process(path: url.path, into: out)
    } catch is ImageError {
    } catch {
        fatalError("not an ImageError: \(error)")
    }
    return 0
}
