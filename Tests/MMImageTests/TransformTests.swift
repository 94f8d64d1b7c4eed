import Foundation
import MMImage
import MMTensor
import Testing

@Suite struct TransformTests {
    static let photo = Fixtures.path("images/china.jpg")

    /// Training crops follow torchvision's rules: area within `scale`, inside the image.
    @Test func randomCropStaysInRange() {
        let augmentation = Augmentation(scale: 0.08...1.0)
        var rng = SeededGenerator(seed: 1)
        for _ in 0..<2000 {
            let (w, h) = (Int.random(in: 1...900, using: &rng), Int.random(in: 1...900, using: &rng))
            let box = augmentation.randomCrop(width: w, height: h, using: &rng)
            #expect(box.left >= 0 && box.top >= 0 && box.width >= 1 && box.height >= 1)
            #expect(box.left + box.width <= w && box.top + box.height <= h)
        }
        // open_clip's default 0.9…1.0 on a square image: the crop keeps at least ~90 % of the area.
        let square = Augmentation()
        for _ in 0..<500 {
            let box = square.randomCrop(width: 500, height: 500, using: &rng)
            let area = Double(box.width * box.height) / 250_000
            #expect(area >= 0.89 && area <= 1.0)
        }
    }

    /// The fast path (DCT-domain downscaling) stays close to the exact one; the figures go to README.
    @Test(arguments: [64, 96, 112])
    func fastPathIsCloseToExact(size: Int) throws {
        let exact = try ImagePipeline(transform: .eval(size: size, normalization: .unit)).process(path: Self.photo)
        let fast = try ImagePipeline(transform: .eval(size: size, normalization: .unit, decode: .fast)).process(path: Self.photo)
        var total: Float = 0, worst: Float = 0
        for (a, b) in zip(exact.scalars, fast.scalars) {
            let d = abs(a - b) * 255
            total += d
            worst = max(worst, d)
        }
        let mean = total / Float(exact.count)
        print(String(format: "fast vs exact, china.jpg 640×427 → %d: mean %.3f, max %.1f grey levels", size, mean, worst))
        #expect(mean < 5, "fast path drifted: mean \(mean)")
    }

    /// Full-size decode keeps the file's size; DCT scaling gives ceil(size·n/8) for n = 1, 2, 4.
    @Test func dctScalingPicksSmallestScaleAtLeastTarget() throws {
        let decoder = ImageDecoder()
        let full = try decoder.decode(path: Self.photo)
        #expect(full.width == 640 && full.height == 427)
        let scaled = try decoder.decode(path: Self.photo, minShortSide: 128)
        #expect(scaled.width == 320 && scaled.height == 214)  // 1/2: ceil(427/2) = 214 ≥ 128 > ceil(427/4)
        let eighth = try decoder.decode(path: Self.photo, minShortSide: 50)
        #expect(eighth.width == 80 && eighth.height == 54)  // 1/8: ceil(427/8) = 54 ≥ 50
        let png = try decoder.decode(path: Fixtures.path("images/png_rgb8.png"), minShortSide: 8)
        #expect(png.width == 120 && png.height == 80)
    }
}
