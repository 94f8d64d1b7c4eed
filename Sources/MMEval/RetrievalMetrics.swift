import MMCLIP

/// Cross-modal retrieval quality, as open_clip's `get_clip_metrics` reports it: for every query
/// the 0-based rank of its match among all candidates, then recall@K = share of ranks < K,
/// mean rank = mean + 1, median rank = floor(median) + 1.
public struct RetrievalMetrics: Codable, Sendable, Equatable {
    public struct Direction: Codable, Sendable, Equatable {
        public var recall: [Int: Double]
        public var meanRank: Double
        public var medianRank: Double
    }

    public var imageToText: Direction
    public var textToImage: Direction

    /// `images` [N, D] and `texts` [M, D] (L2-normalised); `imageOfText[j]` is the image caption j
    /// belongs to. An image query's match is the best-ranked of its captions.
    public init(images: Tensor, texts: Tensor, imageOfText: [Int], ks: [Int] = [1, 5, 10]) {
        let (n, m) = (images.shape[0], texts.shape[0])
        precondition(imageOfText.count == m && imageOfText.allSatisfy { $0 >= 0 && $0 < n }, "every caption needs an image index")
        let scores = withoutGradients { Tensor.matmul(images, texts, transposeB: true) }  // [N, M]
        let s = scores.data
        var captionsOf = [[Int]](repeating: [], count: n)
        for (j, i) in imageOfText.enumerated() { captionsOf[i].append(j) }

        // Rank = number of candidates scoring strictly higher than the match.
        var imageRanks: [Int] = []
        for i in 0..<n where !captionsOf[i].isEmpty {
            let row = s + i * m
            var best = -Float.infinity
            for j in captionsOf[i] { best = max(best, row[j]) }
            var above = 0
            for j in 0..<m where row[j] > best { above += 1 }
            imageRanks.append(above)
        }
        var textRanks = [Int](repeating: 0, count: m)
        for j in 0..<m {
            let target = s[imageOfText[j] * m + j]
            var above = 0
            for i in 0..<n where s[i * m + j] > target { above += 1 }
            textRanks[j] = above
        }
        imageToText = Self.summarise(imageRanks, ks)
        textToImage = Self.summarise(textRanks, ks)
    }

    static func summarise(_ ranks: [Int], _ ks: [Int]) -> Direction {
        let sorted = ranks.sorted()
        let count = Double(max(ranks.count, 1))
        let mid = sorted.isEmpty ? 0 : (sorted.count % 2 == 1 ? Double(sorted[sorted.count / 2])
                                        : Double(sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2)
        return Direction(recall: Dictionary(uniqueKeysWithValues: ks.map { k in (k, Double(ranks.filter { $0 < k }.count) / count) }),
                         meanRank: Double(ranks.reduce(0, +)) / count + 1,
                         medianRank: mid.rounded(.down) + 1)
    }
}
