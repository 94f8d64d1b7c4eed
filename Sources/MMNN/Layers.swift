/// y = x Wᵀ + b, with W [out, in] as in PyTorch.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        weight = .zeros([outFeatures, inFeatures], requiresGrad: true)
        self.bias = bias ? .zeros([outFeatures], requiresGrad: true) : nil
    }

    /// PyTorch's default: U(−1/√in, 1/√in) for weight and bias.
    public func resetParameters(using g: inout SeededGenerator) {
        let bound = 1 / Float(weight.shape[1]).squareRoot()
        weight.fillUniform(-bound, bound, using: &g)
        bias?.fillUniform(-bound, bound, using: &g)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { .linear(x, weight: weight, bias: bias) }
}

/// PyTorch's Conv2d without bias (all of ModifiedResNet's convolutions): weight [out, in, k, k].
public final class Conv2d: Module {
    public let weight: Tensor
    public let stride: Int
    public let padding: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0) {
        weight = .zeros([outChannels, inChannels, kernel, kernel], requiresGrad: true)
        self.stride = stride
        self.padding = padding
    }

    /// PyTorch's default: U(−1/√fan_in, 1/√fan_in), fan_in = in · k · k.
    public func resetParameters(using g: inout SeededGenerator) {
        let bound = 1 / Float(weight.count / weight.shape[0]).squareRoot()
        weight.fillUniform(-bound, bound, using: &g)
    }

    /// [B, in, H, W] → [B, out, H', W'].
    public func callAsFunction(_ x: Tensor) -> Tensor { x.conv2d(weight, stride: stride, padding: padding) }
}

/// PyTorch's BatchNorm2d (momentum 0.1, eps 1e-5): batch statistics while training, which also
/// move the running statistics; the running statistics at evaluation.
public final class BatchNorm2d: Module {
    public let weight: Tensor
    public let bias: Tensor
    @Buffer("running_mean") public var runningMean: Tensor
    @Buffer("running_var") public var runningVar: Tensor
    /// A counter PyTorch keeps (int64 there); saved so that open_clip loads the checkpoint strictly.
    @Buffer("num_batches_tracked") public var batchesTracked: Tensor

    public init(_ channels: Int) {
        weight = .filled([channels], with: 1)
        weight.requiresGrad = true
        bias = .zeros([channels], requiresGrad: true)
        runningMean = .zeros([channels])
        runningVar = .filled([channels], with: 1)
        batchesTracked = .zeros([])
    }

    /// [B, C, H, W] → same shape; `relu` applies max(·, 0) in the same pass.
    public func callAsFunction(_ x: Tensor, training: Bool, relu: Bool = false) -> Tensor {
        if training { batchesTracked.data[0] += 1 }
        return x.batchNorm2d(
            weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar, training: training, relu: relu)
    }
}

public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ features: Int, eps: Float = 1e-5) {
        weight = .filled([features], with: 1)
        weight.requiresGrad = true
        bias = .zeros([features], requiresGrad: true)
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ features: Int) {
        weight = .zeros([count, features], requiresGrad: true)
    }

    public func callAsFunction(_ ids: IntTensor) -> Tensor { .embedding(weight, ids: ids) }
}

/// nn.MultiheadAttention as open_clip uses it: one packed input projection, heads of
/// width / heads, an output projection.
public final class MultiheadAttention: Module {
    @Key("in_proj_weight") public var inProjWeight: Tensor
    @Key("in_proj_bias") public var inProjBias: Tensor
    @Key("out_proj") public var outProj: Linear
    public let heads: Int

    public init(width: Int, heads: Int) {
        precondition(width % heads == 0, "width \(width) is not divisible by \(heads) heads")
        self.heads = heads
        inProjWeight = .zeros([3 * width, width], requiresGrad: true)
        inProjBias = .zeros([3 * width], requiresGrad: true)
        outProj = Linear(width, width)
    }

    /// PyTorch's default: Xavier-uniform packed projection, zero biases.
    public func resetParameters(using g: inout SeededGenerator) {
        let width = inProjWeight.shape[1]
        let bound = (6 / Float(4 * width)).squareRoot()
        inProjWeight.fillUniform(-bound, bound, using: &g)
        inProjBias.fill(0)
        outProj.resetParameters(using: &g)
        outProj.bias?.fill(0)
    }

    /// x [B, L, W] → [B, L, W].
    public func callAsFunction(_ x: Tensor, causal: Bool) -> Tensor {
        let qkv = Tensor.linear(x, weight: inProjWeight, bias: inProjBias)
        return outProj(.attention(qkv: qkv, heads: heads, causal: causal))
    }

    /// Only the outputs at one position per sequence: x [B, L, W] → [B, W].
    public func callAsFunction(_ x: Tensor, causal: Bool, at positions: IntTensor) -> Tensor {
        let qkv = Tensor.packedProjection(x, weight: inProjWeight, bias: inProjBias, queries: positions)
        return outProj(.attention(qkv: qkv, heads: heads, causal: causal, queries: positions))
    }
}

public final class MLP: Module {
    @Key("c_fc") public var fc: Linear
    @Key("c_proj") public var proj: Linear
    public let activation: Activation

    public init(width: Int, hidden: Int, activation: Activation) {
        self.activation = activation
        fc = Linear(width, hidden)
        proj = Linear(hidden, width)
    }

    /// c_proj(f(c_fc(x))), the activation fused into c_fc's pass over its output.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard let bias = fc.bias else {
            let h = fc(x)
            return proj(activation == .gelu ? h.gelu() : h.quickGelu())
        }
        return proj(.linear(x, weight: fc.weight, bias: bias, activation: activation))
    }
}

/// open_clip's pre-LN `ResidualAttentionBlock`: x + attn(ln_1(x)), then + mlp(ln_2(x)).
public final class ResidualAttentionBlock: Module {
    @Key("ln_1") public var norm1: LayerNorm
    public let attn: MultiheadAttention
    @Key("ln_2") public var norm2: LayerNorm
    public let mlp: MLP

    public init(width: Int, heads: Int, mlpRatio: Float = 4, activation: Activation = .gelu) {
        attn = MultiheadAttention(width: width, heads: heads)
        mlp = MLP(width: width, hidden: Int(Float(width) * mlpRatio), activation: activation)
        norm1 = LayerNorm(width)
        norm2 = LayerNorm(width)
    }

    /// `dropout` (training only) drops elements of both residual branches' outputs, as BERT's
    /// hidden dropout; `site` tells this block's two draws apart from other blocks'.
    public func callAsFunction(_ x: Tensor, causal: Bool, dropout: Dropout? = nil, site: Int = 0) -> Tensor {
        let h = x + noised(attn(norm1(x), causal: causal), dropout, site: 2 * site)
        return h + noised(mlp(norm2(h)), dropout, site: 2 * site + 1)
    }

    /// Only the outputs at one position per sequence: x [B, L, W] → [B, W]. Keys and values
    /// still come from every position; the query, residual and MLP only from the chosen one.
    public func callAsFunction(_ x: Tensor, causal: Bool, at positions: IntTensor, dropout: Dropout? = nil, site: Int = 0) -> Tensor {
        let h = x.gatherRows(positions) + noised(attn(norm1(x), causal: causal, at: positions), dropout, site: 2 * site)
        return h + noised(mlp(norm2(h)), dropout, site: 2 * site + 1)
    }

    private func noised(_ x: Tensor, _ dropout: Dropout?, site: Int) -> Tensor {
        dropout.map { $0(x, site: site) } ?? x
    }
}

/// The dropout noise of one forward pass: a rate and a seed from which every dropout site
/// derives its own mask, so the same (seed, input) gives the same features again.
public struct Dropout: Sendable, Equatable {
    public var rate: Float
    public var seed: UInt64
    /// The ids of the pass's samples in a larger batch (see `Tensor.dropout(samples:)`): masks
    /// then follow the sample, not its row in this pass.
    public var samples: [Int]?

    public init(rate: Float, seed: UInt64, samples: [Int]? = nil) {
        self.rate = rate
        self.seed = seed
        self.samples = samples
    }

    public func callAsFunction(_ x: Tensor, site: Int) -> Tensor {
        x.dropout(rate: rate, seed: Dropout.mix(seed ^ Dropout.mix(UInt64(site) &+ 0xD509)), samples: samples)
    }

    /// SplitMix64's step: distinct inputs give unrelated outputs.
    public static func mix(_ x: UInt64) -> UInt64 { SeededGenerator.mix(x) }
}

/// A stack of residual attention blocks (`resblocks.0.…`).
public final class Transformer: Module {
    public let resblocks: [ResidualAttentionBlock]

    public init(width: Int, layers: Int, heads: Int, mlpRatio: Float = 4, activation: Activation = .gelu) {
        resblocks = (0..<layers).map { _ in
            ResidualAttentionBlock(width: width, heads: heads, mlpRatio: mlpRatio, activation: activation)
        }
    }

    public var width: Int { resblocks.first?.norm1.weight.count ?? 0 }

    /// Parameters of `layers` blocks of `width`, computed without building them.
    public static func parameterCount(width w: Int, layers: Int, mlpRatio: Float) -> Int {
        let hidden = Int(Float(w) * mlpRatio)
        // ln_1, in_proj (w+b), out_proj (w+b), ln_2, c_fc (w+b), c_proj (w+b)
        return layers * (2 * w + 3 * w * w + 3 * w + w * w + w + 2 * w + hidden * w + hidden + w * hidden + w)
    }

    /// open_clip's transformer initialisation (std width^-½ for attention, scaled by depth for
    /// the output projections).
    public func resetParameters(using g: inout SeededGenerator) {
        let w = Float(width), layers = Float(resblocks.count)
        let projStd = 1 / w.squareRoot() / (2 * layers).squareRoot()
        let attnStd = 1 / w.squareRoot()
        let fcStd = 1 / (2 * w).squareRoot()
        for block in resblocks {
            block.attn.resetParameters(using: &g)
            block.attn.inProjWeight.fillNormal(std: attnStd, using: &g)
            block.attn.outProj.weight.fillNormal(std: projStd, using: &g)
            block.mlp.fc.resetParameters(using: &g)
            block.mlp.fc.weight.fillNormal(std: fcStd, using: &g)
            block.mlp.proj.resetParameters(using: &g)
            block.mlp.proj.weight.fillNormal(std: projStd, using: &g)
        }
    }

    public func callAsFunction(_ x: Tensor, causal: Bool, dropout: Dropout? = nil) -> Tensor {
        var h = x
        for (i, block) in resblocks.enumerated() { h = block(h, causal: causal, dropout: dropout, site: i + 1) }
        return h
    }

    /// The output at one position per sequence, x [B, L, W] → [B, W]: the same rows as
    /// `callAsFunction(x, causal:).gatherRows(positions)`, but the last block computes only those.
    public func callAsFunction(_ x: Tensor, causal: Bool, at positions: IntTensor, dropout: Dropout? = nil) -> Tensor {
        guard let last = resblocks.last else { return x.gatherRows(positions) }
        var h = x
        for (i, block) in resblocks.dropLast().enumerated() { h = block(h, causal: causal, dropout: dropout, site: i + 1) }
        return last(h, causal: causal, at: positions, dropout: dropout, site: resblocks.count)
    }
}
