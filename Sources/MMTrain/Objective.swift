import Foundation
import MMCLIP
import MMData
import MMDistributed

/// A projection head or predictor: Linear–ReLU–Linear (keys `0.` and `2.`, as torch's
/// `nn.Sequential(Linear, ReLU, Linear)`).
public final class ProjectionHead: Module {
    @Key("0") public var first: Linear
    @Key("2") public var second: Linear

    public init(_ input: Int, hidden: Int, output: Int) {
        first = Linear(input, hidden)
        second = Linear(hidden, output)
    }

    public func resetParameters(using g: inout SeededGenerator) {
        first.resetParameters(using: &g)
        second.resetParameters(using: &g)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { second(first(x).relu()) }
}

/// The trainable modules the self-supervised terms add beside the model (`ssl.` keys).
public final class SSLHeads: Module {
    public let projection: ProjectionHead
    /// BYOL's predictor (online network only).
    public let predictor: ProjectionHead?

    init(dimension d: Int, predictor: Bool, seed: UInt64) {
        projection = ProjectionHead(d, hidden: 2 * d, output: d)
        self.predictor = predictor ? ProjectionHead(d, hidden: 2 * d, output: d) : nil
        var g = SeededGenerator(seed: seed ^ 0x55_534C)
        projection.resetParameters(using: &g)
        self.predictor?.resetParameters(using: &g)
    }
}

/// What the optimizer trains: the model (open_clip keys) and the heads (`ssl.…`).
final class TrainableModules: Module {
    @Key("") var model: CLIPModel
    @Key("ssl") var heads: SSLHeads?

    init(model: CLIPModel, heads: SSLHeads?) {
        self.model = model
        self.heads = heads
    }
}

/// The training objective: CLIP's (or SigLIP's) loss with the contrastive-family options, and
/// the modules and state those options add. Each option is off by default:
///
/// - **queue** (`queueSize` K): momentum copies of both towers (θₖ ← m θₖ + (1 − m) θ_q after each
///   step) whose features of every trained batch enter two FIFO queues; each image is contrasted
///   with the batch's texts plus the K queued texts and vice versa (MoCo/ALBEF). The batch's own
///   columns stay the online features, so the default loss's gradient is kept and the queue
///   only adds constant negatives.
/// - **simclr** (SLIP): the CLIP view and a second augmented view of each image through the
///   image tower and a Linear–ReLU–Linear head, NT-Xent between them, times `sslWeight`.
/// - **byol**: online head + predictor regress onto a momentum target (tower and head) of the
///   other view, symmetrised; no negatives.
/// - **simcse**: a second dropout-noised pass of each caption, NT-Xent against the first.
/// - **multiPositive**: identical captions (and equal labels) are targets of each other in every
///   contrastive term instead of false negatives.
///
/// Under gradient accumulation every term composes: the contrastive term is the big batch's,
/// the self-supervised ones are averaged over the micro-batches, and dropout masks are seeded
/// per (step, micro-batch, pass, sample) so the cached and recomputed passes agree.
///
/// On several ranks every term is the global batch's: the losses score this rank's rows against
/// all ranks' columns (`LossRanks`), the queue receives every rank's momentum features in the
/// order one process would (so it holds the same rows), and dropout masks follow the sample's
/// place in the global batch. `EpochOrder` deals rank r the samples r, r + R, r + 2R, … of each
/// global batch, so local row i is row r + R·i of the one-process batch.
final class Objective {
    let model: CLIPModel
    let options: TrainingOptions
    let settings: ContrastiveOptions
    let heads: SSLHeads?
    let momentumModel: CLIPModel?
    let momentumHeads: SSLHeads?
    let queue: FeatureQueue?
    /// On several ranks: the collectives the terms gather their columns with.
    let parallel: DataParallel?
    let ranks: LossRanks

    init(model: CLIPModel, options: TrainingOptions, parallel: DataParallel? = nil) {
        self.model = model
        self.options = options
        self.parallel = parallel
        if let parallel {
            ranks = LossRanks(
                rank: parallel.rank, count: parallel.size, gather: parallel.gathered,
                gatherKeys: { keys in
                    PositiveKeys(caption: parallel.gatheredValues(keys.caption), label: keys.label.map { parallel.gatheredValues($0) })
                })
        } else {
            ranks = .single
        }
        settings = options.contrastive ?? ContrastiveOptions()
        let d = model.config.embedDim
        heads = settings.imageSSL.map { SSLHeads(dimension: d, predictor: $0 == .byol, seed: options.seed) }
        if settings.needsMomentumModel {
            // The momentum copies start equal to the online networks and never get gradients.
            let copy = CLIPModel(model.config)
            try! copy.load(model.stateDict())
            copy.setRequiresGrad(false)
            momentumModel = copy
        } else {
            momentumModel = nil
        }
        if settings.imageSSL == .byol, let heads {
            let copy = SSLHeads(dimension: d, predictor: false, seed: 0)
            try! copy.load(heads.projection.stateDict().mapKeys { "projection." + $0 })
            copy.setRequiresGrad(false)
            momentumHeads = copy
        } else {
            momentumHeads = nil
        }
        queue = settings.queueSize > 0 ? FeatureQueue(capacity: settings.queueSize, dimension: d) : nil
    }

    var needsSecondView: Bool { settings.imageSSL != nil }

    // MARK: - Forward

    /// One micro-batch through the online towers: the image tower's output before
    /// normalisation (the heads' input), and the unit embeddings of both.
    struct Encoded {
        var rawImage: Tensor
        var image: Tensor
        var text: Tensor
    }

    func encode(_ b: PairBatch, step: Int, micro: Int) -> Encoded {
        let patches = patchDropout(step: step, micro: micro, pass: 0, rows: b.count)
        let raw =
            b.imageFeatures
            ?? (options.lockImage
                ? withoutGradients { model.encodeImage(b.images, normalize: false, patchDropout: patches) }  // batch norms frozen too
                : model.encodeImage(b.images, normalize: false, patchDropout: patches, training: true))
        return Encoded(
            rawImage: raw, image: raw.l2Normalized(),
            text: model.encodeText(b.ids, dropout: dropout(step: step, micro: micro, pass: 0, rows: b.count)))
    }

    /// The dropout of one text pass: a pure function of (seed, step, micro-batch, pass), each
    /// sample's mask drawn by its row in the global micro-batch.
    func dropout(step: Int, micro: Int, pass: Int, rows: Int) -> Dropout? {
        guard settings.textDropout > 0 else { return nil }
        let key = Dropout.mix(options.seed ^ 0x5349_4D43_5345) ^ Dropout.mix(UInt64(step) << 16 | UInt64(micro) << 2 | UInt64(pass))
        return Dropout(rate: settings.textDropout, seed: Dropout.mix(key), samples: (0..<rows).map { ranks.rank + ranks.count * $0 })
    }

    /// The patch dropout of one image pass (FLIP; the model config's `vision_cfg.patch_dropout`),
    /// seeded like `dropout`: the cached and recomputed passes of a micro-batch keep the same
    /// patches, and an image's subset follows its row in the global micro-batch.
    func patchDropout(step: Int, micro: Int, pass: Int, rows: Int) -> PatchDropout? {
        let rate = model.config.vision.patchDropout
        guard rate > 0 else { return nil }
        let key = Dropout.mix(options.seed ^ 0x5041_5443_4844) ^ Dropout.mix(UInt64(step) << 16 | UInt64(micro) << 2 | UInt64(pass))
        return PatchDropout(rate: rate, seed: Dropout.mix(key), samples: (0..<rows).map { ranks.rank + ranks.count * $0 })
    }

    /// Every rank's rows of `local` (no gradient), in the row order of one process's batch.
    func globalRows(_ local: Tensor) -> Tensor {
        guard let parallel else { return local }
        let gathered = withoutGradients { parallel.gathered(local) }
        let (n, width, r) = (local.shape[0], local.count / local.shape[0], parallel.size)
        let out = Tensor.zeros(gathered.shape)
        for rank in 0..<r {
            for i in 0..<n { (out.data + (rank + r * i) * width).update(from: gathered.data + (rank * n + i) * width, count: width) }
        }
        return out
    }

    /// Every rank's `local` values, in the row order of one process's batch.
    func globalRows(_ local: [Int64]) -> [Int64] {
        guard let parallel else { return local }
        let gathered = parallel.gatheredValues(local), (n, r) = (local.count, parallel.size)
        return (0..<(n * r)).map { gathered[($0 % r) * n + $0 / r] }
    }

    /// The multi-positive keys of the samples of `micro`, in order (nil unless --multi-positive).
    func keys(_ micro: [PairBatch]) -> PositiveKeys? {
        guard settings.multiPositive else { return nil }
        return micro.map { b in PositiveKeys(ids: b.ids, labels: settings.usesLabels ? b.labels : nil) }
            .dropFirst().reduce(PositiveKeys(ids: micro[0].ids, labels: settings.usesLabels ? micro[0].labels : nil)) { $0.appending($1) }
    }

    /// The image–text term over the whole (possibly accumulated) batch. `detachTemperature`
    /// cuts logit_scale (and bias) out of the gradient.
    func contrastive(image: Tensor, text: Tensor, keys: PositiveKeys?, detachTemperature: Bool) -> Tensor {
        let scale = detachTemperature ? model.logitScale.detached() : model.logitScale
        switch options.loss {
        case .clip:
            return ContrastiveLoss.infoNCE(image: image, text: text, logitScale: scale, queued: queue?.contents, positives: keys, ranks: ranks)
        case .siglip:
            let bias = detachTemperature ? model.logitBias!.detached() : model.logitBias!
            return ContrastiveLoss.sigmoid(image: image, text: text, logitScale: scale, logitBias: bias, positives: keys, ranks: ranks)
        }
    }

    /// The self-supervised terms of one micro-batch (already weighted), or nil if none is on.
    /// `encoded` is the batch's online pass, which serves as the first view.
    func selfSupervised(_ b: PairBatch, _ encoded: Encoded, keys: PositiveKeys?, step: Int, micro: Int) -> Tensor? {
        var terms: [Tensor] = []
        if let kind = settings.imageSSL, let heads {
            guard let view = b.views else { preconditionFailure("image self-supervision needs batches with a second view") }
            let raw2 = model.encodeImage(
                view, normalize: false, patchDropout: patchDropout(step: step, micro: micro, pass: 1, rows: b.count), training: true)
            switch kind {
            case .simclr:
                terms.append(
                    ContrastiveLoss.ntXent(
                        heads.projection(encoded.rawImage), heads.projection(raw2),
                        temperature: settings.sslTemperature, positives: keys, ranks: ranks))
            case .byol:
                let predictor = heads.predictor!, target = momentumModel!, targetHead = momentumHeads!.projection
                let p1 = predictor(heads.projection(encoded.rawImage)), p2 = predictor(heads.projection(raw2))
                let (z1, z2) = withoutGradients {
                    (
                        targetHead(target.encodeImage(b.images, normalize: false, training: true)),
                        targetHead(target.encodeImage(view, normalize: false, training: true))
                    )
                }
                terms.append(ContrastiveLoss.byol(prediction: p1, target: z2) + ContrastiveLoss.byol(prediction: p2, target: z1))
            }
        }
        if settings.textSSL == .simcse {
            let second = model.encodeText(b.ids, dropout: dropout(step: step, micro: micro, pass: 1, rows: b.count))
            terms.append(ContrastiveLoss.ntXent(encoded.text, second, temperature: settings.simcseTemperature, positives: keys, ranks: ranks))
        }
        guard var total = terms.first else { return nil }
        for t in terms.dropFirst() { total = total + t }
        return total.scaled(by: settings.sslWeight)
    }

    // MARK: - After the optimizer step

    /// The momentum update of the copies, then the step's momentum features into the queue (every
    /// rank's, so that all ranks keep the same queue).
    func afterStep(_ micro: [PairBatch]) {
        guard let momentumModel else { return }
        let m = settings.momentum
        for ((_, target), (_, online)) in zip(momentumModel.namedParameters(), model.namedParameters()) {
            target.moveAverage(toward: online, momentum: m)
        }
        if let momentumHeads, let heads {
            for ((_, target), (_, online)) in zip(momentumHeads.projection.namedParameters(), heads.projection.namedParameters()) {
                target.moveAverage(toward: online, momentum: m)
            }
        }
        if let queue {
            withoutGradients {
                for b in micro {
                    let keys = PositiveKeys(ids: b.ids, labels: settings.usesLabels ? b.labels : nil)
                    queue.enqueue(
                        image: globalRows(momentumModel.encodeImage(b.images, training: true)), text: globalRows(momentumModel.encodeText(b.ids)),
                        keys: PositiveKeys(caption: globalRows(keys.caption), label: keys.label.map(globalRows)))
                }
            }
        }
    }

    // MARK: - Checkpoint state (the run's latest checkpoint only; epoch checkpoints stay open_clip's)

    static let momentumPrefix = "momentum."
    static let headsPrefix = "ssl."
    /// Keys of `latest` that are not the model's.
    static func isExtra(_ key: String) -> Bool {
        key.hasPrefix(momentumPrefix) || key.hasPrefix(headsPrefix) || key.hasPrefix("queue.")
    }

    /// Momentum copies and queue (the heads are saved with the trainable modules).
    func stateTensors() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, t) in momentumModel?.namedParameters() ?? [] { out[Self.momentumPrefix + k] = t }
        for (k, t) in momentumHeads?.namedParameters() ?? [] { out[Self.momentumPrefix + Self.headsPrefix + k] = t }
        out.merge(queue?.tensors ?? [:]) { a, _ in a }
        return out
    }

    func stateMetadata() -> [String: String] {
        queue.map { [FeatureQueue.metadataKey: $0.metadata] } ?? [:]
    }

    /// Rank 0's momentum copies and queue, on every rank (after rank 0 alone resumed).
    func synchronize(_ parallel: DataParallel) throws {
        try parallel.broadcast(stateTensors().sorted { $0.key < $1.key }.map(\.value))
        if let queue { queue.state = try parallel.group.broadcast(queue.state) }
    }

    func restore(_ file: Safetensors, source: String) throws {
        func part(_ prefix: String) -> [String: Tensor] {
            Dictionary(
                uniqueKeysWithValues: file.tensors.filter { $0.key.hasPrefix(prefix) }.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
        }
        do {
            if let heads { try heads.load(part(Self.headsPrefix)) }
            if let momentumModel { try momentumModel.load(part(Self.momentumPrefix).filter { !$0.key.hasPrefix(Self.headsPrefix) }) }
            if let momentumHeads { try momentumHeads.load(part(Self.momentumPrefix + Self.headsPrefix)) }
        } catch let error as LoadError {
            throw TrainingError.stateMismatch(file: source, detail: "the contrastive options' modules do not match this run's (\(error))")
        }
        try queue?.restore(tensors: file.tensors, metadata: file.metadata[FeatureQueue.metadataKey], source: source)
    }
}

extension Dictionary where Key == String {
    func mapKeys(_ f: (String) -> String) -> [String: Value] {
        Dictionary(uniqueKeysWithValues: map { (f($0.key), $0.value) })
    }
}
