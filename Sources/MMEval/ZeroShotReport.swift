import MMCLIP

/// Zero-shot classification quality on labelled images: top-1/top-5 accuracy as open_clip
/// reports them (a sample counts when its class is among the k highest logits), mean
/// per-class recall, and the confusion matrix of top-1 predictions.
public struct ZeroShotReport: Sendable, Equatable {
    public struct ClassResult: Sendable, Equatable {
        public var name: String
        /// Samples of this class.
        public var support: Int
        /// Share of them predicted as this class (top-1), nil without samples.
        public var recall: Double?
        /// Share of them with this class among the top 5.
        public var top5: Double?
    }

    public var count: Int
    public var top1: Double
    public var top5: Double
    /// Mean of the recalls of the classes that have samples.
    public var meanPerClassRecall: Double
    public var classes: [ClassResult]
    /// `confusion[t][p]`: samples of class t predicted as class p.
    public var confusion: [[Int]]

    /// `logits` [N, C]; `truth[i]` the class of sample i. A sample counts for top-k when fewer
    /// than k other classes score at least as high as its own (ties are not wins, so a model
    /// that scores every class alike gets 0, not 100 %); non-finite logits are an error.
    public init(logits: Tensor, truth: [Int], classNames: [String]) throws {
        let (n, c) = (logits.shape[0], logits.shape[1])
        precondition(truth.count == n && classNames.count == c && truth.allSatisfy { $0 >= 0 && $0 < c }, "one class index per row")
        let ranks = try classRanks(logits: logits, truth: truth)
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: c), count: c)
        var hits1 = [Int](repeating: 0, count: c), hits5 = [Int](repeating: 0, count: c), support = [Int](repeating: 0, count: c)
        for i in 0..<n {
            let row = logits.data + i * c
            let t = truth[i]
            var argmax = 0
            for j in 0..<c where row[j] > row[argmax] { argmax = j }
            support[t] += 1
            if ranks[i] < 1 { hits1[t] += 1 }
            if ranks[i] < 5 { hits5[t] += 1 }
            confusion[t][argmax] += 1
        }
        count = n
        top1 = n == 0 ? 0 : Double(hits1.reduce(0, +)) / Double(n)
        top5 = n == 0 ? 0 : Double(hits5.reduce(0, +)) / Double(n)
        classes = (0..<c).map { j in
            ClassResult(
                name: classNames[j], support: support[j],
                recall: support[j] == 0 ? nil : Double(hits1[j]) / Double(support[j]),
                top5: support[j] == 0 ? nil : Double(hits5[j]) / Double(support[j]))
        }
        let recalls = classes.compactMap(\.recall)
        meanPerClassRecall = recalls.isEmpty ? 0 : recalls.reduce(0, +) / Double(recalls.count)
        self.confusion = confusion
    }

    /// The confusion matrix as CSV: a header of predicted classes, one row per true class.
    public var confusionCSV: String {
        func field(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        var lines = ["true\\predicted," + classes.map { field($0.name) }.joined(separator: ",")]
        for (t, row) in confusion.enumerated() {
            lines.append(field(classes[t].name) + "," + row.map(String.init).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
