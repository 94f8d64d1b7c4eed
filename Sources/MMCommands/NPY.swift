import Foundation
import MMEval
import MMFoundation

/// Writes float32 little-endian .npy (format 1.0).
func writeNPY(_ values: [Float], shape: [Int], to path: String) throws {
    do { try AtomicFile.write(npyFile(values, shape: shape), to: path) } catch let error as FileError { throw CommandError(error.description) }
}
