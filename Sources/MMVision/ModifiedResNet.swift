import MMNN

/// open_clip's `ModifiedResNet` (CLIP's ResNet towers): a stem of three 3×3 convolutions and an
/// average pool, four stages of bottleneck blocks whose strides are average pools (anti-aliased),
/// and attention pooling instead of a global average. Convolutions carry inductive biases (locality,
/// translation) that a small data set cannot teach a ViT in minutes.
public final class ModifiedResNet: VisionTower {
    public struct Configuration: Sendable, Equatable {
        public var imageSize: Int
        /// Bottleneck blocks in each of the four stages.
        public var layers: [Int]
        /// The stem's width; stage s has 2ˢ·width planes and 4·2ˢ·width output channels.
        public var width: Int
        /// Heads of the attention pool.
        public var heads: Int
        public var outputDim: Int

        public init(imageSize: Int, layers: [Int], width: Int, heads: Int, outputDim: Int) {
            precondition(layers.count == 4 && layers.allSatisfy { $0 >= 1 }, "a ModifiedResNet has four stages of at least one block, got \(layers)")
            precondition(imageSize % 32 == 0 && width % 2 == 0, "image size \(imageSize) must be a multiple of 32 and width \(width) even")
            self.imageSize = imageSize
            self.layers = layers
            self.width = width
            self.heads = heads
            self.outputDim = outputDim
        }

        /// The attention pool's width (the last stage's channels).
        public var embedDim: Int { 32 * width }
        /// The side of the last stage's feature map (five halvings).
        public var gridSize: Int { imageSize / 32 }

        public var parameterCount: Int {
            let half = width / 2
            let stem = 3 * half * 9 + half * half * 9 + half * width * 9 + 2 * (half + half + width)
            var stages = 0, inplanes = width
            for (s, blocks) in layers.enumerated() {
                let planes = width << s
                for b in 0..<blocks {
                    stages += inplanes * planes + planes * planes * 9 + planes * 4 * planes + 2 * (planes + planes + 4 * planes)
                    if b == 0 && (s > 0 || inplanes != 4 * planes) { stages += inplanes * 4 * planes + 2 * 4 * planes }
                    inplanes = 4 * planes
                }
            }
            let e = embedDim
            return stem + stages + (gridSize * gridSize + 1) * e + 3 * (e * e + e) + e * outputDim + outputDim
        }
    }

    public let configuration: Configuration
    public let conv1: Conv2d, bn1: BatchNorm2d
    public let conv2: Conv2d, bn2: BatchNorm2d
    public let conv3: Conv2d, bn3: BatchNorm2d
    public let layer1: [Bottleneck], layer2: [Bottleneck], layer3: [Bottleneck], layer4: [Bottleneck]
    public let attnpool: AttentionPool2d

    public init(_ c: Configuration) {
        configuration = c
        let half = c.width / 2
        conv1 = Conv2d(3, half, kernel: 3, stride: 2, padding: 1)
        bn1 = BatchNorm2d(half)
        conv2 = Conv2d(half, half, kernel: 3, padding: 1)
        bn2 = BatchNorm2d(half)
        conv3 = Conv2d(half, c.width, kernel: 3, padding: 1)
        bn3 = BatchNorm2d(c.width)
        var inplanes = c.width
        func stage(_ s: Int) -> [Bottleneck] {
            let planes = c.width << s
            return (0..<c.layers[s]).map { b in
                defer { inplanes = 4 * planes }
                return Bottleneck(inplanes: inplanes, planes: planes, stride: b == 0 && s > 0 ? 2 : 1)
            }
        }
        layer1 = stage(0)
        layer2 = stage(1)
        layer3 = stage(2)
        layer4 = stage(3)
        attnpool = AttentionPool2d(gridSize: c.gridSize, width: c.embedDim, heads: c.heads, outputDim: c.outputDim)
    }

    private var blocks: [Bottleneck] { layer1 + layer2 + layer3 + layer4 }

    /// open_clip's `init_parameters`: convolutions and linear layers as PyTorch's defaults, batch
    /// norms at identity, the attention pool's projections N(0, 1/width), and each block's last
    /// batch-norm scale at zero, so that every block starts as its shortcut.
    public func resetParameters(using g: inout SeededGenerator) {
        for conv in [conv1, conv2, conv3] { conv.resetParameters(using: &g) }
        for block in blocks { block.resetParameters(using: &g) }
        attnpool.resetParameters(using: &g)
    }

    public func callAsFunction(_ images: Tensor, patchDropout: PatchDropout? = nil, training: Bool) -> Tensor {
        let c = configuration
        precondition(
            images.shape.count == 4 && Array(images.shape.dropFirst()) == [3, c.imageSize, c.imageSize],
            "vision tower expects images [B, 3, \(c.imageSize), \(c.imageSize)], got \(images.shape)")
        precondition(patchDropout == nil, "a ResNet tower has no patch tokens to drop")
        var x = bn1(conv1(images), training: training, relu: true)
        x = bn2(conv2(x), training: training, relu: true)
        x = bn3(conv3(x), training: training, relu: true).avgPool2d(2)
        for block in blocks { x = block(x, training: training) }
        return attnpool(x)
    }
}

/// A bottleneck block: 1×1 → 3×3 → (average pool when strided) → 1×1 to 4·planes channels, plus a
/// shortcut that is pooled and projected (`downsample`) when the shape changes.
public final class Bottleneck: Module {
    public let conv1: Conv2d, bn1: BatchNorm2d
    public let conv2: Conv2d, bn2: BatchNorm2d
    public let conv3: Conv2d, bn3: BatchNorm2d
    /// open_clip's `downsample` Sequential: "-1" an average pool (no parameters), "0" the 1×1
    /// convolution, "1" its batch norm.
    @Key("downsample.0") public var downsampleConv: Conv2d?
    @Key("downsample.1") public var downsampleNorm: BatchNorm2d?
    public let stride: Int

    public init(inplanes: Int, planes: Int, stride: Int) {
        conv1 = Conv2d(inplanes, planes, kernel: 1)
        bn1 = BatchNorm2d(planes)
        conv2 = Conv2d(planes, planes, kernel: 3, padding: 1)
        bn2 = BatchNorm2d(planes)
        conv3 = Conv2d(planes, 4 * planes, kernel: 1)
        bn3 = BatchNorm2d(4 * planes)
        self.stride = stride
        if stride > 1 || inplanes != 4 * planes {
            downsampleConv = Conv2d(inplanes, 4 * planes, kernel: 1)
            downsampleNorm = BatchNorm2d(4 * planes)
        } else {
            downsampleConv = nil
            downsampleNorm = nil
        }
    }

    public func resetParameters(using g: inout SeededGenerator) {
        for conv in [conv1, conv2, conv3] { conv.resetParameters(using: &g) }
        downsampleConv?.resetParameters(using: &g)
        bn3.weight.fill(0)
    }

    public func callAsFunction(_ x: Tensor, training: Bool) -> Tensor {
        var out = bn1(conv1(x), training: training, relu: true)
        out = bn2(conv2(out), training: training, relu: true).avgPool2d(stride)
        out = bn3(conv3(out), training: training)
        var identity = x
        if let downsampleConv, let downsampleNorm {
            identity = downsampleNorm(downsampleConv(x.avgPool2d(stride)), training: training)
        }
        return (out + identity).relu()
    }
}

/// CLIP's attention pooling: the feature map's positions and their mean as tokens (mean first),
/// a learned positional embedding, and one multi-head attention whose only query is the mean
/// token; q, k and v have separate projections (`q_proj`, `k_proj`, `v_proj`), `c_proj` maps to
/// the embedding.
public final class AttentionPool2d: Module {
    @Key("positional_embedding") public var positionalEmbedding: Tensor
    @Key("k_proj") public var kProj: Linear
    @Key("q_proj") public var qProj: Linear
    @Key("v_proj") public var vProj: Linear
    @Key("c_proj") public var cProj: Linear
    public let heads: Int

    public init(gridSize: Int, width: Int, heads: Int, outputDim: Int) {
        precondition(width % heads == 0, "attention pool width \(width) is not divisible by \(heads) heads")
        self.heads = heads
        positionalEmbedding = .zeros([gridSize * gridSize + 1, width], requiresGrad: true)
        kProj = Linear(width, width)
        qProj = Linear(width, width)
        vProj = Linear(width, width)
        cProj = Linear(width, outputDim)
    }

    public func resetParameters(using g: inout SeededGenerator) {
        let width = positionalEmbedding.shape[1]
        let std = 1 / Float(width).squareRoot()
        positionalEmbedding.fillNormal(std: std, using: &g)
        for linear in [kProj, qProj, vProj, cProj] {
            linear.resetParameters(using: &g)
            linear.weight.fillNormal(std: std, using: &g)
        }
    }

    /// x [B, W, H, H] → [B, outputDim].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, w, positions) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        precondition(
            positions + 1 == positionalEmbedding.shape[0], "attention pool expects \(positionalEmbedding.shape[0] - 1) positions, got \(x.shape)")
        let map = x.reshaped([b, w, positions])
        let mean = Tensor.matmul(map, .filled([positions, 1], with: 1 / Float(positions))).reshaped([b, 1, w])
        let tokens = Tensor.concatenate([mean, map.permuted([0, 2, 1])], axis: 1) + positionalEmbedding
        let weight = Tensor.concatenate([qProj.weight, kProj.weight, vProj.weight], axis: 0)
        let bias = Tensor.concatenate([qProj.bias!, kProj.bias!, vProj.bias!], axis: 0)
        let first = IntTensor(shape: [b], values: [Int32](repeating: 0, count: b))
        let qkv = Tensor.packedProjection(tokens, weight: weight, bias: bias, queries: first)
        return cProj(.attention(qkv: qkv, heads: heads, causal: false, queries: first))
    }
}
