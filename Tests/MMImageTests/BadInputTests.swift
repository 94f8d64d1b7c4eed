import Foundation
import MMImage
import MMTensor
import Testing

/// Every kind of bad file throws an `ImageError` that names the file and the reason.
@Suite struct BadInputTests {
    /// A fresh directory of broken files derived from the good fixtures.
    static let directory: URL = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-image-bad-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }()

    static func write(_ name: String, _ bytes: [UInt8]) -> String {
        let url = directory.appendingPathComponent(name)
        try! Data(bytes).write(to: url)
        return url.path
    }

    static func fixture(_ name: String) -> [UInt8] { [UInt8](try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path(name)))) }

    /// Deterministic shuffle of `bytes[from...]`.
    static func scrambled(_ bytes: [UInt8], from start: Int) -> [UInt8] {
        var out = bytes
        var rng = SeededGenerator(seed: SeededGenerator.finalize(7))
        var tail = Array(out[start...])
        tail.shuffle(using: &rng)
        out.replaceSubrange(start..., with: tail)
        return out
    }

    struct BadFile: CustomTestStringConvertible, Sendable {
        var label: String
        var path: String
        /// Words the message must contain besides the path.
        var expect: [String]
        var testDescription: String { label }
    }

    static let files: [BadFile] = {
        let jpeg = fixture("images/jpeg_420_progressive.jpg")
        let baseline = fixture("images/jpeg_444.jpg")
        let png = fixture("images/png_rgb8.png")
        return [
            BadFile(label: "missing file", path: directory.appendingPathComponent("nowhere.jpg").path, expect: ["cannot read", "No such file"]),
            BadFile(label: "directory", path: directory.path, expect: ["cannot read", "directory"]),
            BadFile(label: "empty", path: write("empty.jpg", []), expect: ["empty file"]),
            BadFile(
                label: "truncated baseline JPEG", path: write("truncated.jpg", Array(baseline.prefix(baseline.count / 2))), expect: ["truncated JPEG"]
            ),
            BadFile(
                label: "truncated progressive JPEG", path: write("truncated_progressive.jpg", Array(jpeg.prefix(jpeg.count * 2 / 3))),
                expect: ["truncated JPEG"]),
            BadFile(label: "JPEG header only", path: write("header_only.jpg", Array(baseline.prefix(400))), expect: ["JPEG"]),
            BadFile(label: "truncated PNG", path: write("truncated.png", Array(png.prefix(png.count / 2))), expect: ["truncated PNG"]),
            BadFile(label: "PNG signature only", path: write("signature.png", Array(png.prefix(8))), expect: ["PNG"]),
            BadFile(label: "scrambled JPEG body", path: write("scrambled_body.jpg", scrambled(baseline, from: 700)), expect: ["corrupt JPEG"]),
            BadFile(label: "scrambled PNG body", path: write("scrambled_body.png", scrambled(png, from: 100)), expect: ["PNG"]),
            BadFile(label: "scrambled whole file", path: write("scrambled.jpg", scrambled(baseline, from: 0)), expect: ["not an image"]),
            BadFile(
                label: "text named .jpg", path: write("notes.jpg", Array("This is not a photo, it is a caption file.\n".utf8)),
                expect: ["not an image", "text"]),
            BadFile(label: "GIF", path: Fixtures.path("bad/flower.gif"), expect: ["GIF images are not supported"]),
            BadFile(label: "BMP", path: Fixtures.path("bad/flower.bmp"), expect: ["BMP images are not supported"]),
            BadFile(label: "WebP decodes", path: Fixtures.path("bad/flower.webp"), expect: []),
            BadFile(label: "TIFF", path: Fixtures.path("bad/flower.tiff"), expect: ["TIFF images are not supported"]),
            BadFile(label: "GIF named .jpg", path: write("gif.jpg", fixture("bad/flower.gif")), expect: ["GIF images are not supported"]),
            BadFile(label: "PNG named .jpg decodes", path: write("png.jpg", png), expect: [])
        ]
    }()

    @Test(arguments: files)
    func throwsNamingFileAndReason(_ bad: BadFile) throws {
        for transform in [ImageTransform.eval(size: 32), .eval(size: 32, decode: .fast), .train(size: 32)] {
            let pipeline = ImagePipeline(transform: transform)
            let out = Tensor.zeros([3, 32, 32])
            do {
                try pipeline.process(path: bad.path, into: out.data)
                #expect(bad.expect.isEmpty, "\(bad.label): decoded without error")
            } catch let error as ImageError {
                let message = error.description
                print("bad input \(bad.label): \(message)")
                #expect(!bad.expect.isEmpty, "\(bad.label): unexpected error \(message)")
                #expect(message.hasPrefix(bad.path + ": "), "\(message)")
                #expect(!message.contains("\n"))
                for word in bad.expect { #expect(message.contains(word), "\(bad.label): \(message)") }
            }
        }
    }

    /// Content decides the format, whatever the name says.
    @Test func formatComesFromBytes() {
        #expect(ImageDecoder.format(of: Self.fixture("images/png_rgb8.png")) == .png)
        #expect(ImageDecoder.format(of: Self.fixture("images/jpeg_gray.jpg")) == .jpeg)
        #expect(ImageDecoder.format(of: Self.fixture("bad/flower.webp")) == .webp)
        #expect(ImageDecoder.format(of: Array("hello".utf8)) == .unknown)
        #expect(ImageDecoder.format(of: []) == .unknown)
    }
}
