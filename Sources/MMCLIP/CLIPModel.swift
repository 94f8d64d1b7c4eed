import Foundation
@_exported import MMNN
@_exported import MMText
@_exported import MMVision

/// open_clip's `CLIP`: the vision tower under `visual.`, the text tower's parameters at the top
/// level (`token_embedding`, `transformer`, `ln_final`, `text_projection`), and `logit_scale`.
public final class CLIPModel: Module {
    public let config: CLIPConfig
    /// A `VisionTransformer` or a `ModifiedResNet`, as the config says.
    public let visual: any VisionTower
    @Key("") public var text: TextTransformer
    @Key("logit_scale") public var logitScale: Tensor
    /// Learned bias of the sigmoid loss; only in SigLIP-style models.
    @Key("logit_bias") public var logitBias: Tensor?

    /// A model with open_clip's initialisation from `seed`.
    public convenience init(_ config: CLIPConfig, seed: UInt64 = 0) {
        self.init(config, initialise: false)
        var g = SeededGenerator(seed: seed)
        visual.resetParameters(using: &g)
        text.resetParameters(using: &g)
    }

    /// `initialise: false` leaves the towers at their constructors' values, for weights about to
    /// be loaded (drawing 150 M random numbers first would only cost time).
    init(_ config: CLIPConfig, initialise: Bool) {
        self.config = config
        visual = config.vision.makeTower()
        text = TextTransformer(config.text)
        logitScale = .scalar(config.initLogitScale, requiresGrad: true)
        logitBias = config.initLogitBias.map { .scalar($0, requiresGrad: true) }
    }

    /// images [B, 3, S, S] (preprocessed) → embeddings [B, embed_dim], unit length if `normalize`.
    /// `training` is PyTorch's train mode (batch statistics in a ResNet tower, which also moves
    /// its running statistics); `patchDropout` only while training (FLIP).
    public func encodeImage(_ images: Tensor, normalize: Bool = true, patchDropout: PatchDropout? = nil, training: Bool = false) -> Tensor {
        let f = visual(images, patchDropout: patchDropout, training: training)
        return normalize ? f.l2Normalized() : f
    }

    /// token ids [B, L] → embeddings [B, embed_dim], unit length if `normalize`; `dropout`
    /// only while training (SimCSE).
    public func encodeText(_ ids: IntTensor, normalize: Bool = true, dropout: Dropout? = nil) -> Tensor {
        let f = text(ids, dropout: dropout)
        return normalize ? f.l2Normalized() : f
    }

    /// Keeps the temperature in open_clip's range after an optimizer step: ln s ∈ [0, ln 100].
    public func clampLogitScale() {
        logitScale.data[0] = min(max(logitScale.data[0], 0), Float(Foundation.log(100.0)))
    }
}
