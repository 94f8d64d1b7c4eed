import MMNN

/// An image tower: images [B, 3, S, S], normalised → features [B, outputDim].
public protocol VisionTower: Module {
    /// open_clip's initialisation of this tower.
    func resetParameters(using g: inout SeededGenerator)
    /// `training` selects batch statistics in towers with batch norm (and moves their running
    /// statistics); `patchDropout` (training only) applies to towers of patch tokens.
    func callAsFunction(_ images: Tensor, patchDropout: PatchDropout?, training: Bool) -> Tensor
}

/// The two image towers of open_clip's config schema: `vision_cfg.layers` an integer is a
/// `VisionTransformer`, a list of four is a `ModifiedResNet`.
public enum VisionConfiguration: Sendable, Equatable {
    case transformer(VisionTransformer.Configuration)
    case resnet(ModifiedResNet.Configuration)

    public var imageSize: Int {
        switch self {
        case let .transformer(c): c.imageSize
        case let .resnet(c): c.imageSize
        }
    }

    /// The ViT's configuration; nil for a ResNet.
    public var transformer: VisionTransformer.Configuration? {
        if case let .transformer(c) = self { c } else { nil }
    }

    /// Share of patch tokens dropped while training (only a ViT has any).
    public var patchDropout: Double { transformer?.patchDropout ?? 0 }

    /// Parameters of the tower (buffers not counted), computed without building it.
    public var parameterCount: Int {
        switch self {
        case let .transformer(c): c.parameterCount
        case let .resnet(c): c.parameterCount
        }
    }

    /// The tower, at its constructors' values (see `VisionTower.resetParameters`).
    public func makeTower() -> any VisionTower {
        switch self {
        case let .transformer(c): VisionTransformer(c)
        case let .resnet(c): ModifiedResNet(c)
        }
    }
}
