import Foundation
import MMFoundation

/// NumPy's .npy format: what mm writes (`npyFile`) and reads (`NumpyMatrix`), in one place.
let npyMagic: [UInt8] = [0x93] + Array("NUMPY".utf8)

/// The bytes of a float32 little-endian .npy file (format 1.0) of `values` with `shape`.
public func npyFile(_ values: [Float], shape: [Int]) -> Data {
    let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
    // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
    let padding = (64 - (10 + header.utf8.count + 1) % 64) % 64
    header += String(repeating: " ", count: padding) + "\n"
    var data = Data(npyMagic + [1, 0])
    let length = UInt16(header.utf8.count)
    data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
    data.append(contentsOf: Array(header.utf8))
    values.withUnsafeBufferPointer {
        data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: $0.count * 4))
    }
    return data
}

/// A 2-D float16 or float32 little-endian array in NumPy's .npy format (versions 1–3, C order),
/// as clip-retrieval writes embeddings. The header is checked against the file's size before
/// anything is allocated.
struct NumpyMatrix {
    let path: String
    let rows: Int
    let columns: Int
    let half: Bool
    private let map: MappedFile
    private let start: Int

    init(path: String) throws {
        self.path = path
        func bad(_ reason: String) -> EvalError { .badClipRetrieval(file: path, reason: reason) }
        do { map = try MappedFile(path) } catch let error as FileError { throw bad(error.reason) }
        let b = map.bytes
        guard b.count >= 10, Array(b[0..<6]) == npyMagic, (1...3).contains(b[6]) else { throw bad("not a .npy file") }
        let wide = b[6] >= 2
        let length = wide ? Int(b.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian) : Int(b[8]) | Int(b[9]) << 8
        let headerStart = wide ? 12 : 10
        guard length <= b.count - headerStart, let header = String(validating: b[headerStart..<(headerStart + length)], as: UTF8.self) else {
            throw bad("unreadable .npy header")
        }
        start = headerStart + length
        func value(_ key: String) -> Substring? {
            guard let k = header.range(of: "'\(key)':") else { return nil }
            return header[k.upperBound...].drop { $0 == " " }
        }
        guard let descr = value("descr"), descr.hasPrefix("'<f2'") || descr.hasPrefix("'<f4'") else {
            throw bad("holds \(value("descr")?.prefix(8) ?? "?") values; embeddings must be float16 or float32 ('<f2', '<f4')")
        }
        half = descr.hasPrefix("'<f2'")
        guard value("fortran_order")?.hasPrefix("False") == true else { throw bad("is in Fortran order (C order expected)") }
        guard let shape = value("shape"), shape.first == "(", let close = shape.firstIndex(of: ")") else { throw bad("no shape in the .npy header") }
        let dims = shape[shape.index(after: shape.startIndex)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard dims.count == 2, let n = Int(dims[0]), let d = Int(dims[1]), n >= 0, (1...EmbeddingIndex.maximumDimension).contains(d) else {
            throw bad("shape (\(shape[..<close].dropFirst())) is not [rows, dimension ≤ \(EmbeddingIndex.maximumDimension)]")
        }
        let (cells, overflow) = n.multipliedReportingOverflow(by: d)
        guard !overflow, cells <= (b.count - start) / (half ? 2 : 4), cells * (half ? 2 : 4) == b.count - start else {
            throw bad(
                "shape (\(n), \(d)) needs \(overflow ? "more" : String(cells * (half ? 2 : 4))) bytes of values, the file has \(b.count - start)")
        }
        rows = n
        columns = d
    }

    /// Copies the values into `out` (rows × columns floats).
    func copy(into out: UnsafeMutablePointer<Float>) {
        let count = rows * columns, from = map.bytes.baseAddress! + start
        if half {
            for i in 0..<count {
                out[i] = Float(Float16(bitPattern: UInt16(littleEndian: from.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
            }
        } else {
            UnsafeMutableRawPointer(out).copyMemory(from: from, byteCount: count * 4)
        }
    }
}
