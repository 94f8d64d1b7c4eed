import MMFoundation
import MMNN

/// The contrastive family in one place. Every loss is a mean over the batch, built from taped
/// ops, so its gradient comes from the ops' backward kernels (checked by finite differences and
/// against the PyTorch reference in tools/make_contrastive_fixtures.py).
///
/// - `infoNCE`: CLIP's symmetric InfoNCE over paired image/text embeddings, optionally with
///   extra negatives (a MoCo/ALBEF queue of momentum features) and optionally with several
///   positives per row (supervised-contrastive form).
/// - `ntXent`: SimCLR's normalised-temperature cross-entropy between two views of one modality.
/// - `sigmoid`: SigLIP's pairwise sigmoid loss (optionally multi-positive).
/// - `byol`: BYOL's normalised regression of a prediction onto a target (no negatives).
///
/// **Multi-positive targets.** With `PositiveKeys`, every column whose sample shares the row's
/// caption key (or label) is a positive, and the cross-entropy's one-hot target becomes the
/// uniform distribution over a row's positives: −Σⱼ qᵢⱼ log softmax(zᵢ)ⱼ with qᵢⱼ = 1/|P(i)| on
/// P(i) (Khosla et al.'s L_out, as SupCon and open_clip's duplicate-aware variants use it).
/// Without duplicates it equals the plain loss.
///
/// **Ranks.** Every loss takes `ranks` (default: one process). On several data-parallel ranks
/// each rank passes its own rows and the loss scores them against every rank's columns (open_clip's
/// `ClipLoss` with `gather_features` and `local_loss`: targets `i + n·rank`); the mean of the
/// ranks' losses is then the global batch's loss, and so are their averaged gradients.
public enum ContrastiveLoss {
    /// Momentum features queued from earlier batches ([K, D] each, unit rows), used as extra
    /// negatives: each image is also scored against the K queued texts and each text against
    /// the K queued images. They carry no gradient.
    public struct Queued {
        public var image: Tensor
        public var text: Tensor
        /// The queued samples' keys, for multi-positive targets (queued duplicates are positives).
        public var keys: PositiveKeys?

        public init(image: Tensor, text: Tensor, keys: PositiveKeys?) {
            precondition(image.shape == text.shape, "queued features differ in shape: \(image.shape) vs \(text.shape)")
            self.image = image
            self.text = text
            self.keys = keys
        }
    }

    /// CLIP's symmetric InfoNCE: with logits = e^{scale} · I Tᵀ, the mean of the cross-entropy
    /// of each image against all texts and of each text against all images, the matching pair
    /// (the diagonal) being the target. `queued` appends K negative columns to both directions;
    /// `positives` makes every same-key column a target.
    public static func infoNCE(
        image: Tensor, text: Tensor, logitScale: Tensor, queued: Queued? = nil,
        positives: PositiveKeys? = nil, ranks: LossRanks = .single
    ) -> Tensor {
        let n = image.shape[0], offset = ranks.offset(rows: n)
        precondition(image.shape == text.shape, "paired embeddings differ in shape: \(image.shape) vs \(text.shape)")
        precondition(positives == nil || positives!.count == n, "\(positives!.count) positive keys for a batch of \(n)")
        let scale = logitScale.exp()
        var textColumns = ranks.columns(text), imageColumns = ranks.columns(image)
        if let queued {
            textColumns = .concatenate([textColumns, queued.text.detached()], axis: 0)
            imageColumns = .concatenate([imageColumns, queued.image.detached()], axis: 0)
        }
        let perImage = Tensor.matmul(image, textColumns, transposeB: true) * scale
        let perText = Tensor.matmul(text, imageColumns, transposeB: true) * scale
        guard let positives else {
            let diagonal = IntTensor(shape: [n], values: (0..<Int32(n)).map { $0 + Int32(offset) })
            return (perImage.crossEntropy(targets: diagonal) + perText.crossEntropy(targets: diagonal)).scaled(by: 0.5)
        }
        let batchColumns = ranks.columns(positives)
        let columns = queued.map { batchColumns.appending($0.keys ?? .unique(count: $0.image.shape[0])) } ?? batchColumns
        let q = positives.targets(columns: columns)
        return (softCrossEntropy(perImage, q) + softCrossEntropy(perText, q)).scaled(by: 0.5)
    }

    /// SimCLR's NT-Xent between two views a, b [N, D] (normalised here): the 2N rows of
    /// z = [a; b] are scored against each other by cosine / `temperature`, self-pairs excluded,
    /// and each row's target is its other view (with `positives`, every other row of the same key).
    public static func ntXent(
        _ a: Tensor, _ b: Tensor, temperature: Float, positives: PositiveKeys? = nil,
        ranks: LossRanks = .single
    ) -> Tensor {
        precondition(a.shape == b.shape && a.rank == 2, "two views of the same shape [N, D] expected, got \(a.shape) and \(b.shape)")
        let n = a.shape[0], total = n * ranks.count, offset = ranks.offset(rows: n)
        let (unitA, unitB) = (a.l2Normalized(), b.l2Normalized())
        let z = Tensor.concatenate([unitA, unitB], axis: 0)
        let columns = ranks.count == 1 ? z : Tensor.concatenate([ranks.columns(unitA), ranks.columns(unitB)], axis: 0)
        // Row k of z sits at column self(k) of the columns; its other view at other(k).
        func selfColumn(_ k: Int) -> Int { k < n ? offset + k : total + offset + k - n }
        func otherView(_ k: Int) -> Int { k < n ? total + offset + k : offset + k - n }
        // A row never scores itself: −1e9 on its own column vanishes under the softmax.
        var selfMask = [Float](repeating: 0, count: 2 * n * 2 * total)
        for k in 0..<(2 * n) { selfMask[k * 2 * total + selfColumn(k)] = -1e9 }
        let logits =
            Tensor.matmul(z, columns, transposeB: true).scaled(by: 1 / temperature)
            + Tensor(shape: [2 * n, 2 * total], values: selfMask)
        guard let positives else {
            return logits.crossEntropy(targets: IntTensor(shape: [2 * n], values: (0..<(2 * n)).map { Int32(otherView($0)) }))
        }
        let gathered = ranks.columns(positives)
        return softCrossEntropy(
            logits,
            positives.appending(positives).targets(
                columns: gathered.appending(gathered),
                excluding: (0..<(2 * n)).map(selfColumn)))
    }

    /// SigLIP's sigmoid loss: every pair is an independent binary decision,
    /// −Σᵢⱼ log σ(zᵢⱼ · (e^{scale} · Iᵢ·Tⱼ + bias)) / N with z = +1 for matching pairs (the
    /// diagonal, or with `positives` every same-key pair) and −1 elsewhere (open_clip's
    /// `SigLipLoss` on one device).
    public static func sigmoid(
        image: Tensor, text: Tensor, logitScale: Tensor, logitBias: Tensor,
        positives: PositiveKeys? = nil, ranks: LossRanks = .single
    ) -> Tensor {
        let n = image.shape[0], offset = ranks.offset(rows: n)
        precondition(image.shape == text.shape, "paired embeddings differ in shape: \(image.shape) vs \(text.shape)")
        let columns = ranks.columns(text), c = columns.shape[0]
        let columnKeys = positives.map { ranks.columns($0) }
        let logits = Tensor.matmul(image, columns, transposeB: true) * logitScale.exp() + logitBias
        var signs = [Float](repeating: -1, count: n * c)
        for i in 0..<n {
            for j in 0..<c where j == offset + i || positives?.match(i, columnKeys!, j) == true { signs[i * c + j] = 1 }
        }
        return (logits * Tensor(shape: [n, c], values: signs)).logSigmoid().sum().scaled(by: -1 / Float(n))
    }

    /// BYOL's regression loss: the mean over rows of ‖p̂ − ẑ‖² = 2 − 2 cos(p, z) between the
    /// online network's prediction p and the target network's projection z (a constant).
    public static func byol(prediction: Tensor, target: Tensor) -> Tensor {
        precondition(
            prediction.shape == target.shape && prediction.rank == 2,
            "prediction and target must be [N, D] alike, got \(prediction.shape) and \(target.shape)")
        let n = prediction.shape[0]
        let cosines = (prediction.l2Normalized() * target.detached().l2Normalized()).sum()
        return cosines.scaled(by: -2 / Float(n)) + Tensor.scalar(2)
    }

    /// −Σᵢⱼ qᵢⱼ log softmax(logits)ᵢⱼ / N for a row-stochastic target q [N, C] (a constant).
    static func softCrossEntropy(_ logits: Tensor, _ q: Tensor) -> Tensor {
        (logits.logSoftmax() * q).sum().scaled(by: -1 / Float(logits.shape[0]))
    }
}

/// What makes two samples positives of each other in a multi-positive loss: the same caption
/// (as a hash of its token ids: identical after tokenisation) or, when labels are given, the
/// same label.
public struct PositiveKeys: Sendable, Equatable {
    public var caption: [Int64]
    public var label: [Int64]?

    public init(caption: [Int64], label: [Int64]? = nil) {
        precondition(label == nil || label!.count == caption.count, "\(caption.count) caption keys but \(label!.count) labels")
        self.caption = caption
        self.label = label
    }

    /// Keys of token-id rows [B, L]: FNV-1a over each row, so equal rows get equal keys.
    public init(ids: IntTensor, labels: [Int64]? = nil) {
        let (b, l) = (ids.shape[0], ids.shape[1])
        let caption = (0..<b).map { row -> Int64 in
            var h = FNV1a()
            for v in ids.values[(row * l)..<(row * l + l)] { h.combine(word: UInt64(UInt32(bitPattern: v))) }
            return Int64(bitPattern: h.value >> 1)  // non-negative: negative keys are reserved for `unique`
        }
        self.init(caption: caption, label: labels)
    }

    /// Keys that match nothing but themselves (samples with no known duplicates).
    public static func unique(count: Int) -> PositiveKeys {
        PositiveKeys(caption: (0..<count).map { -1 - Int64($0) })
    }

    public var count: Int { caption.count }

    /// The keys of these samples followed by `other`'s. Labels survive only if both have them.
    public func appending(_ other: PositiveKeys) -> PositiveKeys {
        var label: [Int64]?
        if let a = self.label, let b = other.label { label = a + b }
        return PositiveKeys(caption: caption + other.caption, label: label)
    }

    /// Whether sample i here and sample j of `other` are positives.
    @inline(__always)
    public func match(_ i: Int, _ other: PositiveKeys, _ j: Int) -> Bool {
        if caption[i] == other.caption[j] { return true }
        if let a = label, let b = other.label, a[i] == b[j], a[i] >= 0 { return true }
        return false
    }

    /// Row i of the result is the uniform distribution over the columns that match sample i
    /// ([count, columns.count]), leaving out column `excluding[i]` (a row's own column, where it
    /// must not count as its own positive).
    func targets(columns: PositiveKeys, excluding: [Int]? = nil) -> Tensor {
        let (r, c) = (count, columns.count)
        var q = [Float](repeating: 0, count: r * c)
        for i in 0..<r {
            var matches: [Int] = []
            for j in 0..<c where j != excluding?[i] && match(i, columns, j) { matches.append(j) }
            precondition(!matches.isEmpty, "sample \(i) has no positive")
            for j in matches { q[i * c + j] = 1 / Float(matches.count) }
        }
        return Tensor(shape: [r, c], values: q)
    }
}

/// The data-parallel ranks a batch is spread over, as the losses see them: each rank passes its
/// own n rows, and its columns are every rank's rows stacked in rank order, its own at
/// `rank·n ..< (rank+1)·n`. `gather` must be differentiable (its backward hands each rank the
/// gradient of its rows summed over ranks); `MMDistributed.DataParallel` provides both gathers.
public struct LossRanks {
    public let rank: Int
    public let count: Int
    private let gatherRows: (Tensor) -> Tensor
    private let gatherKeys: (PositiveKeys) -> PositiveKeys

    public init(rank: Int, count: Int, gather: @escaping (Tensor) -> Tensor, gatherKeys: @escaping (PositiveKeys) -> PositiveKeys) {
        precondition(count >= 1 && (0..<count).contains(rank), "rank \(rank) of \(count)")
        self.rank = rank
        self.count = count
        gatherRows = gather
        self.gatherKeys = gatherKeys
    }

    /// One process: the columns are the rows.
    public static let single = LossRanks(rank: 0, count: 1, gather: { $0 }, gatherKeys: { $0 })

    /// Where this rank's rows start among the columns.
    public func offset(rows: Int) -> Int { rank * rows }
    /// Every rank's rows of `local` (the rows themselves on one process).
    public func columns(_ local: Tensor) -> Tensor { count == 1 ? local : gatherRows(local) }
    /// Every rank's keys of `local`.
    public func columns(_ local: PositiveKeys) -> PositiveKeys { count == 1 ? local : gatherKeys(local) }
}
