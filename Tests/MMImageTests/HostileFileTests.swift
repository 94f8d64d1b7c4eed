import Foundation
import MMImage
import Testing

/// Image paths that are not ordinary image files: refused at once, by what they are, before
/// anything is read into memory.
@Suite struct HostileFileTests {
    let dir: String = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mm-image-hostile-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    func message(_ path: String) -> String {
        do { _ = try ImageDecoder().decode(path: path) } catch { return "\(error)" }
        return "decoded"
    }

    /// A FIFO named .jpg would block forever, /dev/zero would be read until memory ran out, a
    /// sparse multi-GB file would be read whole: each is refused from its metadata.
    @Test func onlyBoundedRegularFilesAreRead() throws {
        let fifo = dir + "/pipe.jpg"
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(message(fifo) == "\(fifo): cannot read file (is a FIFO, not a regular file)")
        #expect(message("/dev/zero") == "/dev/zero: cannot read file (is a character device, not a regular file)")
        let sparse = dir + "/huge.jpg"
        #expect(FileManager.default.createFile(atPath: sparse, contents: Data([0xFF, 0xD8, 0xFF, 0xE0])))
        #expect(truncate(sparse, 4 << 30) == 0)
        #expect(message(sparse).hasPrefix("\(sparse): file is \(4 << 30) bytes, more than"))
    }

    /// A file that stops inside an image signature is a truncated image, not "text".
    @Test func aFileCutInsideTheSignatureIsTruncated() throws {
        for (name, bytes, format) in [("two.jpg", [0xFF, 0xD8], "JPEG"), ("one.jpg", [0xFF], "JPEG"), ("four.png", [0x89, 0x50, 0x4E, 0x47], "PNG")]
            as [(String, [UInt8], String)]
        {
            let path = dir + "/" + name
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            #expect(message(path).hasPrefix("\(path): truncated \(format)"), "\(message(path))")
        }
        // Bytes that are not UTF-8 are not called text either.
        let binary = dir + "/binary.jpg"
        #expect(FileManager.default.createFile(atPath: binary, contents: Data([0x80, 0x81, 0xFE, 0x41, 0x42, 0x43, 0x90, 0x91])))
        #expect(message(binary).contains("unknown format"), "\(message(binary))")
    }
}
