import Foundation

/// AdamW with decoupled weight decay, as torch.optim.AdamW computes it:
/// p ← p·(1 − lr·wd); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + eps).
public final class AdamW {
    public struct Group {
        public var parameters: [Tensor]
        public var weightDecay: Float
        public init(parameters: [Tensor], weightDecay: Float) {
            self.parameters = parameters
            self.weightDecay = weightDecay
        }
    }

    public var groups: [Group]
    public var beta1: Float, beta2: Float, eps: Float
    /// Steps taken so far (for bias correction).
    public private(set) var step = 0
    /// First and second moments, one buffer pair per parameter, in group order.
    public private(set) var moments: [(m: Tensor, v: Tensor)]

    /// open_clip's defaults: β (0.9, 0.98), eps 1e-6.
    public init(groups: [Group], beta1: Float = 0.9, beta2: Float = 0.98, eps: Float = 1e-6) {
        self.groups = groups
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        moments = groups.flatMap(\.parameters).map { (Tensor.zeros($0.shape), Tensor.zeros($0.shape)) }
    }

    /// Two groups split by `WeightDecayRule` over a module's named parameters; frozen
    /// parameters (`requiresGrad == false`) are left out.
    public convenience init(
        _ module: Module, weightDecay: Float, rule: WeightDecayRule = .standard,
        beta1: Float = 0.9, beta2: Float = 0.98, eps: Float = 1e-6
    ) {
        let trainable = module.namedParameters().filter { $0.tensor.requiresGrad }
        let decayed = trainable.filter { rule.decays($0.key, $0.tensor) }.map(\.tensor)
        let exempt = trainable.filter { !rule.decays($0.key, $0.tensor) }.map(\.tensor)
        self.init(
            groups: [Group(parameters: decayed, weightDecay: weightDecay), Group(parameters: exempt, weightDecay: 0)],
            beta1: beta1, beta2: beta2, eps: eps)
    }

    /// One update with learning rate `lr` from each parameter's accumulated `grad`; parameters
    /// without a gradient are left untouched, as torch does (the step count is shared, not per parameter).
    public func update(lr: Float) {
        step += 1
        let bc1 = 1 - Foundation.pow(Double(beta1), Double(step))
        let bc2 = 1 - Foundation.pow(Double(beta2), Double(step))
        let stepSize = Float(Double(lr) / bc1)
        let rootBC2 = Float(bc2.squareRoot())
        var index = 0
        for group in groups {
            let decay = 1 - lr * group.weightDecay
            for p in group.parameters {
                defer { index += 1 }
                guard let g = p.grad else { continue }
                let (m, v) = moments[index]
                adamWUpdate(
                    p, gradient: g, m: m, v: v, decay: decay, beta1: beta1, beta2: beta2,
                    stepSize: stepSize, rootBC2: rootBC2, eps: eps)
            }
        }
    }

    /// Drops every parameter's gradient before the next accumulation.
    public func zeroGradients() {
        for group in groups { for p in group.parameters { p.grad = nil } }
    }

    /// Restores step count and moments (for resuming).
    public func restore(step: Int, moments: [(m: Tensor, v: Tensor)]) {
        precondition(moments.count == self.moments.count, "optimizer state has \(moments.count) parameters, expected \(self.moments.count)")
        for (own, saved) in zip(self.moments, moments) {
            precondition(own.m.shape == saved.m.shape && own.v.shape == saved.v.shape, "optimizer state shape mismatch")
            own.m.data.update(from: saved.m.data, count: own.m.count)
            own.v.data.update(from: saved.v.data, count: own.v.count)
        }
        self.step = step
    }
}

/// Which parameters get weight decay. open_clip exempts gains, biases and 1-D parameters
/// (LayerNorm, `class_embedding`) and `logit_scale`; `.standard` also exempts embedding tables
/// (`token_embedding`, `positional_embedding`), as many CLIP recipes do.
public struct WeightDecayRule: Sendable {
    public var exemptEmbeddings: Bool

    public static let standard = WeightDecayRule(exemptEmbeddings: true)
    public static let openCLIP = WeightDecayRule(exemptEmbeddings: false)

    public func decays(_ key: String, _ p: Tensor) -> Bool {
        let leaf = key.split(separator: ".").last.map(String.init) ?? key
        if p.rank < 2 || leaf == "bias" || key.contains("logit_scale") { return false }
        if key.split(separator: ".").contains(where: { $0.hasPrefix("ln") || $0.hasPrefix("bn") }) { return false }
        if exemptEmbeddings && key.contains("embedding") { return false }
        return true
    }
}

/// Linear warm-up to the base rate, then constant or half-cosine decay to 0 (open_clip's
/// `cosine_lr`: step s < warmup gives base·(s+1)/warmup).
public struct LearningRateSchedule: Sendable {
    public enum Shape: String, Codable, Sendable, CaseIterable { case cosine, constant }
    public var base: Float
    public var warmup: Int
    public var total: Int
    public var shape: Shape

    public init(base: Float, warmup: Int, total: Int, shape: Shape = .cosine) {
        self.base = base
        self.warmup = warmup
        self.total = total
        self.shape = shape
    }

    public func rate(at step: Int) -> Float {
        if step < warmup { return base * Float(step + 1) / Float(warmup) }
        switch shape {
        case .constant: return base
        case .cosine:
            let span = max(total - warmup, 1)
            let progress = Double(min(step - warmup, span)) / Double(span)
            return Float(0.5 * (1 + Foundation.cos(Double.pi * progress))) * base
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm` (torch's
/// clip_grad_norm_: coefficient maxNorm / (norm + 1e-6), capped at 1). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total: Double = 0
    for p in parameters {
        guard let g = p.grad else { continue }
        var s: Float = 0
        for i in 0..<g.count { s += g.data[i] * g.data[i] }
        total += Double(s)
    }
    let norm = Float(total.squareRoot())
    let coefficient = maxNorm / (norm + 1e-6)
    if coefficient < 1 {
        for p in parameters { if let g = p.grad { for i in 0..<g.count { g.data[i] *= coefficient } } }
    }
    return norm
}
