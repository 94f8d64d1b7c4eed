import MMTensor

// Ranking metrics shared by evaluation (MMEval) and training's validation (MMTrain).

/// Embeddings or scores that are not finite: ranking them would report a broken model as a
/// good one (NaN compares false, so every NaN match looked like rank 1).
public struct MetricsError: Error, CustomStringConvertible, Equatable {
    /// What holds the bad value ("image embedding", "text embedding", "logits").
    public let what: String
    /// Its row (0-based).
    public let row: Int

    public init(what: String, row: Int) {
        self.what = what
        self.row = row
    }

    public var description: String { "\(what) \(row) is not finite (NaN or infinity): the model's weights or input are broken" }
}

/// Throws for the first row of `t` [N, D] holding a NaN or infinity.
public func requireFinite(_ t: Tensor, _ what: String) throws {
    guard t.rank == 2 else { return }
    let d = t.shape[1]
    for i in 0..<t.shape[0] {
        let row = t.data + i * d
        var sum: Float = 0
        for j in 0..<d { sum += row[j] * 0 }  // NaN or ±∞ anywhere makes this NaN
        if !sum.isFinite { throw MetricsError(what: what, row: i) }
    }
}

/// The 0-based rank of a match as open_clip's argsort/topk give it, with ties counted against
/// the match: how many candidates outside `isMatch` score at least `score`. A model that
/// scores everything alike ranks its matches last, not first.
@inline(__always)
func pessimisticRank(of score: Float, among count: Int, _ scoreAt: (Int) -> Float, isMatch: (Int) -> Bool) -> Int {
    var rank = 0
    for j in 0..<count where scoreAt(j) >= score && !isMatch(j) { rank += 1 }
    return rank
}

/// Cross-modal retrieval quality, as open_clip's `get_clip_metrics` reports it: for every query
/// the 0-based rank of its match among all candidates, then recall@K = share of ranks < K,
/// mean rank = mean + 1, median rank = floor(median) + 1. Ties are not wins.
public struct RetrievalMetrics: Codable, Sendable, Equatable {
    public struct Direction: Codable, Sendable, Equatable {
        public var recall: [Int: Double]
        public var meanRank: Double
        public var medianRank: Double
    }

    public var imageToText: Direction
    public var textToImage: Direction

    /// `images` [N, D] and `texts` [M, D] (L2-normalised); `imageOfText[j]` is the image caption j
    /// belongs to. An image query's match is the best-ranked of its captions. Non-finite
    /// embeddings are an error.
    public init(images: Tensor, texts: Tensor, imageOfText: [Int], ks: [Int] = [1, 5, 10]) throws {
        let (n, m) = (images.shape[0], texts.shape[0])
        precondition(imageOfText.count == m && imageOfText.allSatisfy { $0 >= 0 && $0 < n }, "every caption needs an image index")
        try requireFinite(images, "image embedding")
        try requireFinite(texts, "text embedding")
        let scores = withoutGradients { Tensor.matmul(images, texts, transposeB: true) }  // [N, M]
        let s = scores.data
        var captionsOf = [[Int]](repeating: [], count: n)
        for (j, i) in imageOfText.enumerated() { captionsOf[i].append(j) }

        var imageRanks: [Int] = []
        for i in 0..<n where !captionsOf[i].isEmpty {
            let row = s + i * m
            var best = -Float.infinity
            for j in captionsOf[i] { best = max(best, row[j]) }
            imageRanks.append(pessimisticRank(of: best, among: m, { row[$0] }, isMatch: { imageOfText[$0] == i }))
        }
        let textRanks = (0..<m).map { j in
            pessimisticRank(of: s[imageOfText[j] * m + j], among: n, { s[$0 * m + j] }, isMatch: { $0 == imageOfText[j] })
        }
        imageToText = Self.summarise(imageRanks, ks)
        textToImage = Self.summarise(textRanks, ks)
    }

    static func summarise(_ ranks: [Int], _ ks: [Int]) -> Direction {
        let sorted = ranks.sorted()
        let count = Double(max(ranks.count, 1))
        let mid =
            sorted.isEmpty
            ? 0
            : (sorted.count % 2 == 1
                ? Double(sorted[sorted.count / 2])
                : Double(sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2)
        return Direction(
            recall: Dictionary(uniqueKeysWithValues: ks.map { k in (k, Double(ranks.filter { $0 < k }.count) / count) }),
            meanRank: Double(ranks.reduce(0, +)) / count + 1,
            medianRank: mid.rounded(.down) + 1)
    }
}

/// Per sample, the 0-based rank of its true class among `logits` [N, C] (ties count against
/// it, as in `RetrievalMetrics`); non-finite logits are an error.
public func classRanks(logits: Tensor, truth: [Int]) throws -> [Int] {
    let (n, c) = (logits.shape[0], logits.shape[1])
    precondition(truth.count == n && truth.allSatisfy { $0 >= 0 && $0 < c }, "one class index per row")
    try requireFinite(logits, "logits row")
    return (0..<n).map { i in
        let row = logits.data + i * c
        return pessimisticRank(of: row[truth[i]], among: c, { row[$0] }, isMatch: { $0 == truth[i] })
    }
}

/// Share of samples whose true class ranks among the first k (`classRanks`).
public func topKAccuracy(ranks: [Int], k: Int) -> Double {
    ranks.isEmpty ? 0 : Double(ranks.filter { $0 < k }.count) / Double(ranks.count)
}

/// Top-k accuracy of rankings (class indices best first) against true class indices.
public func topKAccuracy(_ rankings: [[Int]], _ truth: [Int], k: Int) -> Double {
    precondition(rankings.count == truth.count, "one ranking per label")
    guard !truth.isEmpty else { return 0 }
    return Double(zip(rankings, truth).filter { $0.prefix(k).contains($1) }.count) / Double(truth.count)
}
