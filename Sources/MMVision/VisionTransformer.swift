import MMNN

/// open_clip's `VisionTransformer`: patches → `conv1` (one GEMM) → prepend `class_embedding` →
/// `+ positional_embedding` → `ln_pre` → pre-LN blocks → `ln_post` on the class token → `@ proj`.
public final class VisionTransformer: VisionTower {
    public struct Configuration: Sendable, Equatable {
        public var imageSize: Int
        public var patchSize: Int
        public var width: Int
        public var layers: Int
        public var heads: Int
        public var mlpRatio: Float
        public var outputDim: Int
        public var activation: Activation
        /// Share of patch tokens dropped while training (FLIP; open_clip's `patch_dropout`).
        public var patchDropout: Double

        public init(
            imageSize: Int, patchSize: Int, width: Int, layers: Int, heads: Int, mlpRatio: Float = 4,
            outputDim: Int, activation: Activation = .gelu, patchDropout: Double = 0
        ) {
            self.imageSize = imageSize
            self.patchSize = patchSize
            self.width = width
            self.layers = layers
            self.heads = heads
            self.mlpRatio = mlpRatio
            self.outputDim = outputDim
            self.activation = activation
            self.patchDropout = patchDropout
        }

        public var gridSize: Int { imageSize / patchSize }

        public var parameterCount: Int {
            width * 3 * patchSize * patchSize + (gridSize * gridSize + 2) * width + 2 * width
                + Transformer.parameterCount(width: width, layers: layers, mlpRatio: mlpRatio) + 2 * width + width * outputDim
        }
    }

    public let configuration: Configuration
    /// The patch embedding, a convolution with kernel = stride = patch (open_clip's `conv1`).
    public let conv1: PatchEmbedding
    @Key("class_embedding") public var classEmbedding: Tensor
    @Key("positional_embedding") public var positionalEmbedding: Tensor
    @Key("ln_pre") public var preNorm: LayerNorm
    public let transformer: Transformer
    @Key("ln_post") public var postNorm: LayerNorm
    public let proj: Tensor

    public init(_ c: Configuration) {
        precondition(c.imageSize % c.patchSize == 0, "image size \(c.imageSize) is not a multiple of patch size \(c.patchSize)")
        configuration = c
        conv1 = PatchEmbedding(channels: 3, width: c.width, patchSize: c.patchSize)
        transformer = Transformer(width: c.width, layers: c.layers, heads: c.heads, mlpRatio: c.mlpRatio, activation: c.activation)
        proj = .zeros([c.width, c.outputDim], requiresGrad: true)
        classEmbedding = .zeros([c.width], requiresGrad: true)
        positionalEmbedding = .zeros([c.gridSize * c.gridSize + 1, c.width], requiresGrad: true)
        preNorm = LayerNorm(c.width)
        postNorm = LayerNorm(c.width)
    }

    /// open_clip's initialisation: embeddings and projection N(0, 1/width), conv1 as PyTorch's
    /// Conv2d default, blocks as PyTorch's defaults (open_clip defines no ViT block init).
    public func resetParameters(using g: inout SeededGenerator) {
        let c = configuration, scale = 1 / Float(c.width).squareRoot()
        classEmbedding.fillNormal(std: scale, using: &g)
        positionalEmbedding.fillNormal(std: scale, using: &g)
        proj.fillNormal(std: scale, using: &g)
        let bound = 1 / Float(3 * c.patchSize * c.patchSize).squareRoot()
        conv1.weight.fillUniform(-bound, bound, using: &g)
        for block in transformer.resblocks {
            block.attn.resetParameters(using: &g)
            block.mlp.fc.resetParameters(using: &g)
            block.mlp.proj.resetParameters(using: &g)
        }
    }

    /// `training` changes nothing here but the patch dropout it is given.
    public func callAsFunction(_ images: Tensor, patchDropout: PatchDropout?, training: Bool) -> Tensor {
        let grid = configuration.gridSize
        return self(images, keeping: patchDropout?.keptPatches(batch: images.shape[0], patches: grid * grid))
    }

    /// images [B, 3, S, S], normalised → features [B, outputDim]. While training, `keeping`
    /// [B, K] lists the patch tokens each image keeps (see `PatchDropout`); the class token
    /// always stays.
    public func callAsFunction(_ images: Tensor, keeping kept: IntTensor? = nil) -> Tensor {
        let c = configuration
        precondition(
            images.shape.count == 4 && Array(images.shape.dropFirst()) == [3, c.imageSize, c.imageSize],
            "vision tower expects images [B, 3, \(c.imageSize), \(c.imageSize)], got \(images.shape)")
        let b = images.shape[0]
        let tokens = conv1(images)
        let cls = Tensor.zeros([b, 1, c.width]) + classEmbedding
        var x = Tensor.concatenate([cls, tokens], axis: 1) + positionalEmbedding
        if let kept {
            precondition(kept.shape.count == 2 && kept.shape[0] == b, "kept patches must be [\(b), K], got \(kept.shape)")
            let k = kept.shape[1]
            var rows = [Int32](repeating: 0, count: b * (k + 1))
            for i in 0..<b {
                for j in 0..<k { rows[i * (k + 1) + j + 1] = kept.values[i * k + j] + 1 }
            }
            x = x.gatherRows(IntTensor(shape: [b, k + 1], values: rows))
        }
        // Only the class token leaves the tower, so the last block computes only its row.
        let classToken = IntTensor(shape: [b], values: [Int32](repeating: 0, count: b))
        let pooled = postNorm(transformer(preNorm(x), causal: false, at: classToken))
        return .matmul(pooled, proj)
    }
}

/// FLIP's patch dropout, as open_clip's `PatchDropout`: while training each image keeps a random
/// subset of its patch tokens, which attention then never sees (the class token is always kept,
/// and nothing is dropped at evaluation). The subset comes from a seed, so a step is repeatable.
public struct PatchDropout: Sendable, Equatable {
    public var rate: Double
    public var seed: UInt64
    /// The ids of the batch's images in a larger batch (as `Dropout.samples`): an image's subset
    /// then follows the image, not its row in this batch.
    public var samples: [Int]?

    public init(rate: Double, seed: UInt64, samples: [Int]? = nil) {
        precondition(rate >= 0 && rate < 1, "patch dropout rate \(rate) outside [0, 1)")
        self.rate = rate
        self.seed = seed
        self.samples = samples
    }

    /// Patches an image keeps out of `patches`: open_clip's max(1, int(patches · (1 − rate))).
    public func keptCount(of patches: Int) -> Int { max(1, Int(Double(patches) * (1 - rate))) }

    /// Kept patch indices [B, K] in ascending order; image i draws from its own stream of the
    /// seed (a partial Fisher–Yates shuffle), so the subset does not depend on the batch split.
    public func keptPatches(batch: Int, patches: Int) -> IntTensor {
        let k = keptCount(of: patches)
        var values = [Int32](repeating: 0, count: batch * k)
        var order = [Int32](repeating: 0, count: patches)
        for i in 0..<batch {
            for p in 0..<patches { order[p] = Int32(p) }
            var g = SeededGenerator(seed: Dropout.mix(seed ^ Dropout.mix(UInt64(samples?[i] ?? i))))
            for j in 0..<k { order.swapAt(j, j + Int(g.next() % UInt64(patches - j))) }
            order[0..<k].sort()
            for j in 0..<k { values[i * k + j] = order[j] }
        }
        return IntTensor(shape: [batch, k], values: values)
    }
}

/// Conv2d(channels → width, kernel = stride = patch, no bias), computed as one GEMM over the
/// unfolded patches: [B, C, H, W] → [B, patches, width].
public final class PatchEmbedding: Module {
    public let weight: Tensor
    public let patchSize: Int

    public init(channels: Int, width: Int, patchSize: Int) {
        weight = .zeros([width, channels, patchSize, patchSize], requiresGrad: true)
        self.patchSize = patchSize
    }

    public func callAsFunction(_ images: Tensor) -> Tensor {
        .matmul(images.patches(size: patchSize), weight.reshaped([weight.shape[0], -1]), transposeB: true)
    }
}
