// Compiled into every harness: a per-process scratch file on a RAM-backed folder (for readers
// that take a path), and the image harnesses' common body.
import Foundation
import MMImage

final class FuzzScratch {
    let base: String

    init(name: String) {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        base = "\(dir)/mm-fuzz-\(name)-\(getpid())"
    }

    func url(suffix: String = "") -> URL { URL(fileURLWithPath: base + suffix) }

    /// Writes the input to the scratch file and returns its URL.
    func write(_ data: UnsafePointer<UInt8>, _ size: Int) -> URL {
        let fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot create \(base)")
        var done = 0
        while done < size {
            let n = Foundation.write(fd, data + done, size - done)
            precondition(n > 0, "cannot write \(base)")
            done += n
        }
        close(fd)
        return URL(fileURLWithPath: base)
    }
}

/// The image harnesses' body: decode through the path every image mm reads takes (decoder,
/// then open_clip's eval transform), with `signature` put in front of inputs that lack it so
/// the fuzzer spends its time inside the decoder. Anything but an ImageError is a finding.
final class ImageFuzzer {
    let signature: [UInt8]
    let scratch: FuzzScratch
    let pipeline = ImagePipeline(transform: .eval(size: 32))
    let out = UnsafeMutablePointer<Float>.allocate(capacity: 3 * 32 * 32)

    init(name: String, signature: [UInt8]) {
        self.signature = signature
        scratch = FuzzScratch(name: name)
    }

    func run(_ data: UnsafePointer<UInt8>, _ size: Int) {
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
    }
}
