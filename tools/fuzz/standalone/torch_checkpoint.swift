// libFuzzer harness for mm's PyTorch checkpoint reader: the stored-zip reader, the allowlisted
// pickle interpreter and tensor materialisation (Sources/MMCLIP/StoredZip.swift, TorchPickle.swift,
// TorchArchive.swift), compiled alone with the stand-ins below. Each input is tried twice: as a
// whole archive (written to a scratch file, opened as mm opens checkpoints, every tensor read) and
// as a bare pickle. Any trap, sanitizer report, hang or leak is a finding; errors are not.
//
// Build and run (from the repository root):
//   mkdir -p .build/fuzz/torch_checkpoint.corpus
//   swiftc -O -g -sanitize=fuzzer,address -parse-as-library -D MM_FUZZ_STANDALONE \
//       Sources/MMFoundation/Files.swift Sources/MMCLIP/StoredZip.swift Sources/MMCLIP/TorchPickle.swift \
//       Sources/MMCLIP/TorchArchive.swift \
//       tools/fuzz/standalone/torch_checkpoint.swift -o .build/fuzz/torch_checkpoint
//   .build/fuzz/torch_checkpoint .build/fuzz/torch_checkpoint.corpus tools/fuzz/corpus/torch_checkpoint \
//       -max_total_time=600 -max_len=65536 -rss_limit_mb=2048 -timeout=10
import Foundation

/// Stand-in for MMCLIP's error type (Checkpoint.swift), which pulls in the whole model.
struct CheckpointError: Error, CustomStringConvertible {
    let file: String
    let message: String
    var description: String { "checkpoint \(file): \(message)" }
}

/// Stand-in for MMTensor's `StoredFloat` with the same contract.
enum StoredFloat {
    case f32, f16, bf16, f64
    func widen(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            switch self {
            case .f32: dst[i] = src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
            case .f16: dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Float16.self))
            case .bf16: dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            case .f64: dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
            }
        }
    }
}

private let scratch = "/tmp/mm-fuzz-torch-\(getpid()).pt"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    _ = try? TorchPickle.load(bytes)

    let fd = open(scratch, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, size) }
    close(fd)
    guard let archive = try? TorchArchive(ReadableFile.checkpoint(scratch)) else { return 0 }
    for (key, t) in archive.tensors {
        let count = t.shape.reduce(1, *)
        guard count <= 1 << 22 else { continue }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        try? archive.read(key, into: buffer)
        buffer.deallocate()
    }
    return 0
}
