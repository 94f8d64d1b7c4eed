import Foundation
import Testing

/// Tests/MMImageTests/Fixtures, written by tools/make_image_fixtures.py from Pillow + open_clip.
enum Fixtures {
    static let root: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    struct Case: Codable, CustomTestStringConvertible {
        var `case`: String
        var file: String
        var size: Int
        var format: String
        var pil_mode: String
        var width: Int
        var height: Int
        var expected: String
        var note: String
        var testDescription: String { self.case }
    }

    struct Decode: Codable, CustomTestStringConvertible {
        var file: String
        var expected: String
        var width: Int
        var height: Int
        var testDescription: String { file }
    }

    struct Crop: Codable, CustomTestStringConvertible {
        var `case`: String
        var file: String
        var size: Int
        var box: [Int]
        var expected: String
        var testDescription: String { self.case }
    }

    struct Normalised: Codable {
        var file: String
        var size: Int
        var expected: String
        var mean: [Float]
        var std: [Float]
    }

    struct Index: Codable {
        var versions: [String: String]
        var normalised: Normalised
        var cases: [Case]
        var decodes: [Decode]
        var crops: [Crop]
        var unsupported: [String: String]
    }

    static let index: Index = {
        let data = try! Data(contentsOf: root.appendingPathComponent("index.json"))
        return try! JSONDecoder().decode(Index.self, from: data)
    }()
}

/// A minimal .npy reader for the fixture dtypes (uint8 and little-endian float32).
struct NPY {
    var shape: [Int]
    var bytes: [UInt8]?
    var floats: [Float]?

    init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let raw = [UInt8](data)
        precondition(raw.count > 10 && raw[0] == 0x93 && raw[1...5].elementsEqual("NUMPY".utf8), "\(path): not .npy")
        let major = raw[6]
        let headerLength =
            major == 1
            ? Int(raw[8]) | Int(raw[9]) << 8
            : Int(raw[8]) | Int(raw[9]) << 8 | Int(raw[10]) << 16 | Int(raw[11]) << 24
        let start = major == 1 ? 10 : 12
        let header = String(decoding: raw[start..<start + headerLength], as: UTF8.self)
        precondition(header.contains("'fortran_order': False"), "\(path): Fortran order")
        let shapeText = header.components(separatedBy: "'shape': (")[1].components(separatedBy: ")")[0]
        shape = shapeText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let body = Array(raw[(start + headerLength)...])
        if header.contains("'descr': '|u1'") {
            bytes = body
        } else if header.contains("'descr': '<f4'") {
            floats = body.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        } else {
            preconditionFailure("\(path): unsupported dtype in \(header)")
        }
    }
}

/// Mean and max absolute difference in grey levels (0…255 scale).
struct Difference: CustomStringConvertible {
    var mean: Double
    var max: Double
    var worstIndex: Int

    init(_ ours: UnsafeBufferPointer<Float>, scale: Float = 255, expectedBytes: [UInt8]) {
        precondition(ours.count == expectedBytes.count)
        var total = 0.0, worst = 0.0, at = 0
        for i in 0..<ours.count {
            let d = Double(abs(ours[i] * scale - Float(expectedBytes[i])))
            total += d
            if d > worst { worst = d; at = i }
        }
        mean = total / Double(Swift.max(ours.count, 1))
        max = worst
        worstIndex = at
    }

    var description: String { String(format: "mean %.4f, max %.3f grey levels (at %d)", mean, max, worstIndex) }
}
