import Foundation
import MMFoundation

/// Writes float32 little-endian .npy (format 1.0).
func writeNPY(_ values: [Float], shape: [Int], to path: String) throws {
    let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
    // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
    let padding = (64 - (10 + header.utf8.count + 1) % 64) % 64
    header += String(repeating: " ", count: padding) + "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    let length = UInt16(header.utf8.count)
    data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
    data.append(contentsOf: Array(header.utf8))
    values.withUnsafeBufferPointer {
        data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: $0.count * 4))
    }
    do { try AtomicFile.write(data, to: path) } catch let error as FileError { throw CommandError(error.description) }
}
