import Foundation

/// Per-channel normalisation applied after /255: `(x − mean) / std`.
public struct Normalization: Sendable, Equatable {
    public var mean: SIMD3<Float>
    public var std: SIMD3<Float>

    public init(mean: SIMD3<Float>, std: SIMD3<Float>) {
        precondition(std.min() > 0, "normalisation std must be positive, got \(std)")
        self.mean = mean
        self.std = std
    }

    /// open_clip's OPENAI_DATASET_MEAN / OPENAI_DATASET_STD, the default for CLIP models.
    public static let openAI = Normalization(
        mean: SIMD3(0.48145466, 0.4578275, 0.40821073),
        std: SIMD3(0.26862954, 0.26130258, 0.27577711))
    /// Plain /255: values in 0…1.
    public static let unit = Normalization(mean: .zero, std: .one)
}

/// How JPEGs are decoded.
public enum DecodeMode: Sendable, Equatable {
    /// Full-size decode, then the resize: matches PIL/open_clip (the default for evaluation).
    case exact
    /// libjpeg DCT-domain downscaling to the smallest of 1/8, 1/4, 1/2 whose shorter side is
    /// still at least twice the output size, then the same resize. Much faster on large photos; the
    /// result differs slightly from `exact` (see README). PNGs are always decoded in full.
    case fast
}

/// torchvision's ColorJitter as open_clip applies it: with `probability`, adjust brightness,
/// contrast, saturation and hue in a random order by factors drawn from [1−b, 1+b] (hue: [−h, h]).
/// Applied in float on the 0…1 image with torchvision's tensor formulas.
public struct ColorJitter: Sendable, Equatable {
    public var brightness: Double
    public var contrast: Double
    public var saturation: Double
    public var hue: Double
    public var probability: Double

    public init(
        brightness: Double = 0.4, contrast: Double = 0.4, saturation: Double = 0.4, hue: Double = 0.1,
        probability: Double = 0.8
    ) {
        precondition(hue >= 0 && hue <= 0.5, "hue jitter must be in 0…0.5")
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.probability = probability
    }
}

/// open_clip's training augmentation: RandomResizedCrop(scale, ratio) with bicubic resize,
/// optional colour jitter and random greyscale.
public struct Augmentation: Sendable, Equatable {
    /// Fraction of the image area the crop covers (open_clip's default 0.9…1.0).
    public var scale: ClosedRange<Double>
    /// Aspect ratios (w/h) the crop may have (torchvision's default 3/4…4/3).
    public var ratio: ClosedRange<Double>
    public var colorJitter: ColorJitter?
    public var grayscaleProbability: Double

    public init(
        scale: ClosedRange<Double> = 0.9...1.0, ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3),
        colorJitter: ColorJitter? = nil, grayscaleProbability: Double = 0
    ) {
        precondition(scale.lowerBound > 0 && scale.upperBound <= 1, "crop scale must lie in (0, 1]")
        precondition(ratio.lowerBound > 0, "crop ratio must be positive")
        self.scale = scale
        self.ratio = ratio
        self.colorJitter = colorJitter
        self.grayscaleProbability = grayscaleProbability
    }
}

/// File → `[3, size, size]` float tensor, as open_clip's `image_transform`.
public struct ImageTransform: Sendable, Equatable {
    public var size: Int
    public var normalization: Normalization
    public var decode: DecodeMode
    /// nil: evaluation (resize the shorter side to `size`, center crop).
    public var augmentation: Augmentation?

    public init(size: Int, normalization: Normalization = .openAI, decode: DecodeMode, augmentation: Augmentation?) {
        precondition(size > 0, "image size must be positive")
        self.size = size
        self.normalization = normalization
        self.decode = decode
        self.augmentation = augmentation
    }

    /// open_clip's eval preprocess: bicubic resize of the shorter side, center crop, normalise.
    public static func eval(size: Int = 224, normalization: Normalization = .openAI, decode: DecodeMode = .exact) -> ImageTransform {
        ImageTransform(size: size, normalization: normalization, decode: decode, augmentation: nil)
    }

    /// open_clip's train preprocess (RandomResizedCrop…), fast decoding by default.
    public static func train(
        size: Int = 224, normalization: Normalization = .openAI,
        augmentation: Augmentation = Augmentation(), decode: DecodeMode = .fast
    ) -> ImageTransform {
        ImageTransform(size: size, normalization: normalization, decode: decode, augmentation: augmentation)
    }
}

/// A rectangle of an image in pixels, as torchvision's crop parameters.
public struct CropBox: Sendable, Equatable {
    public var top: Int, left: Int, height: Int, width: Int

    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top
        self.left = left
        self.height = height
        self.width = width
    }
}

extension Augmentation {
    /// The crop RandomResizedCrop would take from a width×height image (torchvision's
    /// `get_params`: ten tries at a random area and log-uniform aspect ratio, then a centred
    /// fallback).
    public func randomCrop<G: RandomNumberGenerator>(width: Int, height: Int, using rng: inout G) -> CropBox {
        let (top, left, h, w) = ResizePlan.cropParameters(width: width, height: height, scale: scale, ratio: ratio, using: &rng)
        return CropBox(top: top, left: left, height: h, width: w)
    }
}

/// Which source pixels become the output, and how the output is cut.
struct ResizePlan: Equatable {
    /// The source rectangle that is resized (all of it for eval, the random crop for train).
    var x: Int, y: Int, width: Int, height: Int
    /// The size it is resized to.
    var outWidth: Int, outHeight: Int
    /// The part of the resized image that is kept.
    var columns: Range<Int>, rows: Range<Int>

    /// torchvision `Resize(size)` (shorter side to `size`, longer side truncated) then
    /// `CenterCrop(size)` (offsets rounded half to even, as Python's round()).
    static func eval(width: Int, height: Int, size: Int) -> ResizePlan {
        var outW = size, outH = size
        if width <= height {
            outH = Int(Double(size * height) / Double(width))
        } else {
            outW = Int(Double(size * width) / Double(height))
        }
        let left = Int((Double(outW - size) / 2).rounded(.toNearestOrEven))
        let top = Int((Double(outH - size) / 2).rounded(.toNearestOrEven))
        return ResizePlan(
            x: 0, y: 0, width: width, height: height, outWidth: outW, outHeight: outH,
            columns: left..<left + size, rows: top..<top + size)
    }

    /// torchvision `RandomResizedCrop.get_params` then a resize of the crop to size×size.
    static func train<G: RandomNumberGenerator>(
        width: Int, height: Int, size: Int, augmentation: Augmentation,
        using rng: inout G
    ) -> ResizePlan {
        let (i, j, h, w) = cropParameters(
            width: width, height: height, scale: augmentation.scale,
            ratio: augmentation.ratio, using: &rng)
        return ResizePlan(
            x: j, y: i, width: w, height: h, outWidth: size, outHeight: size,
            columns: 0..<size, rows: 0..<size)
    }

    /// (top, left, height, width) of the random crop, torchvision's algorithm.
    static func cropParameters<G: RandomNumberGenerator>(
        width: Int, height: Int, scale: ClosedRange<Double>,
        ratio: ClosedRange<Double>, using rng: inout G
    ) -> (Int, Int, Int, Int) {
        let area = Double(width * height)
        let logRatio = log(ratio.lowerBound)...log(ratio.upperBound)
        for _ in 0..<10 {
            let target = area * Double.random(in: scale, using: &rng)
            let aspect = exp(Double.random(in: logRatio, using: &rng))
            let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let i = Int.random(in: 0...(height - h), using: &rng)
                let j = Int.random(in: 0...(width - w), using: &rng)
                return (i, j, h, w)
            }
        }
        // Fallback: the largest centred crop within the allowed ratios.
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return ((height - h) / 2, (width - w) / 2, h, w)
    }
}
