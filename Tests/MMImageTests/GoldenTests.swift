import Foundation
import MMImage
import MMTensor
import Testing

/// Our exact path against Pillow + open_clip's eval preprocess (fixtures from
/// tools/make_image_fixtures.py): identical bytes before normalisation, JPEG included — Debian's
/// libjpeg-turbo and the one inside the pinned Pillow wheel decode alike, and the resize and crop
/// reproduce Pillow's fixed-point arithmetic. A different libjpeg build that rounds its IDCT
/// otherwise fails here, by design.
@Suite struct GoldenTests {
    /// A parameterised test with no arguments passes vacuously: the index must list every kind.
    @Test func fixtureListsAreComplete() {
        let index = Fixtures.index
        #expect(index.cases.filter { $0.format == "jpeg" }.count >= 20, "JPEG preprocess cases: \(index.cases.count)")
        #expect(index.cases.filter { $0.format == "png" }.count >= 20, "PNG preprocess cases: \(index.cases.count)")
        #expect(index.decodes.count >= 15, "decode cases: \(index.decodes.count)")
        #expect(index.crops.count >= 4, "crop cases: \(index.crops.count)")
    }

    @Test(arguments: Fixtures.index.cases)
    func evalMatchesOpenCLIP(_ c: Fixtures.Case) throws {
        let pipeline = ImagePipeline(transform: .eval(size: c.size, normalization: .unit))
        let ours = try pipeline.process(path: Fixtures.path(c.file))
        let expected = try NPY(path: Fixtures.path(c.expected))
        #expect(expected.shape == [3, c.size, c.size])
        let diff = Difference(UnsafeBufferPointer(ours.storage.buffer), expectedBytes: expected.bytes!)
        print("golden \(c.case) [\(c.format) \(c.pil_mode) \(c.width)×\(c.height) → \(c.size)]: \(diff)")
        #expect(diff.max == 0, "\(c.case): \(diff)")
    }

    @Test func normalisedMatchesOpenCLIPDefault() throws {
        let n = Fixtures.index.normalised
        #expect(Normalization.openAI.mean == SIMD3(n.mean[0], n.mean[1], n.mean[2]))
        #expect(Normalization.openAI.std == SIMD3(n.std[0], n.std[1], n.std[2]))
        let ours = try ImagePipeline(transform: .eval(size: n.size)).process(path: Fixtures.path(n.file))
        let expected = try NPY(path: Fixtures.path(n.expected))
        #expect(expected.shape == [3, n.size, n.size])
        var worst: Float = 0
        var exact = 0
        for (a, b) in zip(ours.scalars, expected.floats!) {
            worst = max(worst, abs(a - b))
            if a == b { exact += 1 }
        }
        print("golden normalised china 224: max |Δ| \(worst), \(exact)/\(ours.count) bit-identical")
        // One grey level is 1/255/std ≈ 0.0148; anything above a rounding error is a real miss.
        #expect(worst <= 1e-6)
    }

    @Test(arguments: Fixtures.index.decodes)
    func decodeMatchesPIL(_ d: Fixtures.Decode) throws {
        let image = try ImageDecoder().decode(path: Fixtures.path(d.file))
        let expected = try NPY(path: Fixtures.path(d.expected))
        #expect(image.width == d.width && image.height == d.height)
        #expect(expected.shape == [d.height, d.width, 3])
        var worst = 0, differing = 0
        for (a, b) in zip(image.pixels, expected.bytes!) where a != b {
            worst = max(worst, abs(Int(a) - Int(b)))
            differing += 1
        }
        print("decode \(d.file): \(differing) of \(image.pixels.count) samples differ from PIL, max \(worst)")
        #expect(differing == 0, "\(d.file) differs from PIL's decode in \(differing) samples, by up to \(worst)")
    }

    /// The deterministic half of RandomResizedCrop: torchvision's resized_crop with a fixed box.
    @Test(arguments: Fixtures.index.crops)
    func cropMatchesTorchvision(_ c: Fixtures.Crop) throws {
        let pipeline = ImagePipeline(transform: .eval(size: c.size, normalization: .unit))
        let ours = Tensor.zeros([3, c.size, c.size])
        let box = CropBox(top: c.box[0], left: c.box[1], height: c.box[2], width: c.box[3])
        try pipeline.process(path: Fixtures.path(c.file), crop: box, into: ours.data)
        let expected = try NPY(path: Fixtures.path(c.expected))
        let diff = Difference(UnsafeBufferPointer(ours.storage.buffer), expectedBytes: expected.bytes!)
        print("golden crop \(c.case): \(diff)")
        #expect(diff.max == 0, "\(c.case): \(diff)")
    }
}
