import Foundation
import MMImage
import MMTensor
import Testing

/// WebP against Pillow (tools/make_webp_fixtures.py): lossy, lossless, alpha, odd sizes and the
/// first frame of an animation, after open_clip's eval transform — bit for bit.
struct WebPTests {
    struct Index: Codable {
        var versions: [String: String]
        var cases: [Fixtures.Case]
        var decodes: [Fixtures.Decode]
    }

    static let index: Index = {
        let data = try! Data(contentsOf: Fixtures.root.appendingPathComponent("webp/index.json"))
        return try! JSONDecoder().decode(Index.self, from: data)
    }()

    @Test func fixturesExist() {
        #expect(Self.index.cases.count >= 12 && Self.index.decodes.count >= 6)
    }

    @Test(arguments: index.cases)
    func evalMatchesOpenCLIP(_ c: Fixtures.Case) throws {
        let pipeline = ImagePipeline(transform: .eval(size: c.size, normalization: .unit))
        let ours = try pipeline.process(path: Fixtures.path(c.file))
        let expected = try NPY(path: Fixtures.path(c.expected))
        #expect(expected.shape == [3, c.size, c.size])
        let diff = Difference(UnsafeBufferPointer(ours.storage.buffer), expectedBytes: expected.bytes!)
        print("golden \(c.case) [\(c.pil_mode) \(c.width)×\(c.height) → \(c.size)]: \(diff)")
        #expect(diff.max == 0, "\(c.case): \(diff)")
    }

    /// The same bytes from memory (a shard member) give the same tensor as from the file.
    @Test(arguments: index.cases.filter { $0.size == 32 })
    func bytesMatchFile(_ c: Fixtures.Case) throws {
        let pipeline = ImagePipeline(transform: .eval(size: c.size, normalization: .unit))
        let file = try pipeline.process(path: Fixtures.path(c.file))
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(c.file))))
        let memory = Tensor.zeros([3, c.size, c.size])
        try pipeline.process(.bytes(bytes, name: "member.webp"), into: memory.data)
        #expect(file.scalars == memory.scalars)
    }

    @Test(arguments: index.decodes)
    func decodeMatchesPIL(_ d: Fixtures.Decode) throws {
        let image = try ImageDecoder().decode(path: Fixtures.path(d.file))
        let expected = try NPY(path: Fixtures.path(d.expected))
        #expect(image.width == d.width && image.height == d.height)
        #expect(image.pixels == expected.bytes!, "\(d.file) differs from PIL's convert(\"RGB\")")
    }

    @Test func truncatedAndCorruptWebPAreNamed() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("webp/lossy.webp"))))
        let pipeline = ImagePipeline(transform: .eval(size: 32))
        let out = Tensor.zeros([3, 32, 32])
        for (label, data) in [
            ("cut", Array(bytes.prefix(bytes.count / 2))), ("header", Array(bytes.prefix(20))),
            ("scrambled", Array(bytes.prefix(40)) + bytes.dropFirst(40).map { $0 ^ 0x5A })
        ] {
            #expect(throws: ImageError.self, "\(label)") {
                try pipeline.process(.bytes(data, name: "x.webp"), into: out.data)
            }
            do { try pipeline.process(.bytes(data, name: "x.webp"), into: out.data) } catch {
                print("bad webp \(label): \(error)")
                #expect("\(error)".hasPrefix("x.webp: ") && "\(error)".contains("WebP"))
            }
        }
    }
}
