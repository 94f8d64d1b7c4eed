import MMNN
import MMTokenizer

/// A zero-shot classifier as open_clip builds one: for each class, the text embeddings of every
/// prompt template (and synonym) are L2-normalised, averaged and renormalised; an image's
/// scores are 100 · image · Wᵀ.
public struct ZeroShotClassifier {
    public let classNames: [String]
    /// [C, D], unit rows.
    public let weights: Tensor

    /// A classifier from class weights computed before (e.g. read from a cache).
    public init(classNames: [String], weights: Tensor) {
        precondition(weights.rank == 2 && weights.shape[0] == classNames.count, "one weight row per class")
        self.classNames = classNames
        self.weights = weights
    }

    /// `classes`: per class, its names (synonyms are averaged with the templates);
    /// `templates`: prompts with `{}` where the name goes. `progress` is told after each class.
    public init(
        model: CLIPModel, tokenizer: Tokenizer, classes: [[String]], templates: [String],
        progress: ((Int) -> Void)? = nil
    ) {
        precondition(!classes.isEmpty && classes.allSatisfy { !$0.isEmpty } && !templates.isEmpty, "zero-shot needs classes and templates")
        let context = model.config.text.contextLength
        let d = model.config.embedDim
        let w = Tensor.zeros([classes.count, d])
        withoutGradients {
            for (c, names) in classes.enumerated() {
                let prompts = names.flatMap { name in templates.map { $0.replacingOccurrences(of: "{}", with: name) } }
                let ids = IntTensor(shape: [prompts.count, context], values: tokenizer.tokenize(prompts, contextLength: context))
                let row = Self.classWeights(model.encodeText(ids), promptsPerClass: [prompts.count])
                (w.data + c * d).update(from: row.data, count: d)
                progress?(c + 1)
            }
        }
        self.init(classNames: classes.map { $0[0] }, weights: w)
    }

    /// open_clip's ensembling: `prompts` [P, D] holds each class's prompt embeddings in turn
    /// (`promptsPerClass` of them); each is normalised, a class's are averaged, the mean
    /// renormalised → [C, D].
    public static func classWeights(_ prompts: Tensor, promptsPerClass: [Int]) -> Tensor {
        precondition(prompts.rank == 2 && promptsPerClass.reduce(0, +) == prompts.shape[0], "prompt counts must cover the rows")
        let d = prompts.shape[1]
        let unit = withoutGradients { prompts.l2Normalized() }
        let w = Tensor.zeros([promptsPerClass.count, d])
        var row = 0
        for (c, n) in promptsPerClass.enumerated() {
            precondition(n > 0, "every class needs a prompt")
            let out = w.data + c * d
            for r in row..<(row + n) {
                let p = unit.data + r * d
                for j in 0..<d { out[j] += p[j] }
            }
            row += n
        }
        return withoutGradients { w.l2Normalized() }
    }

    /// 100 · images · Wᵀ for normalised image embeddings [N, D] → [N, C].
    public func logits(_ imageEmbeddings: Tensor) -> Tensor {
        withoutGradients { Tensor.matmul(imageEmbeddings, weights, transposeB: true).scaled(by: 100) }
    }

    /// Per image, class indices best first.
    public func ranking(_ imageEmbeddings: Tensor) -> [[Int]] {
        let l = logits(imageEmbeddings)
        let c = classNames.count
        return (0..<l.shape[0]).map { i in topIndices(l.data + i * c, count: c, k: c) }
    }

    /// Per image, the k most probable classes (softmax over the logits) with their probabilities.
    public func predictions(_ imageEmbeddings: Tensor, k: Int) -> [[(label: String, index: Int, probability: Double)]] {
        let p = withoutGradients { logits(imageEmbeddings).softmax() }
        let c = classNames.count
        return (0..<p.shape[0]).map { i in
            let row = p.data + i * c
            return topIndices(row, count: c, k: k).map { (classNames[$0], $0, Double(row[$0])) }
        }
    }

    /// open_clip's simple ImageNet templates.
    public static let simpleTemplates = [
        "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
        "a {} in a video game.", "art of the {}.", "a photo of the small {}."
    ]
}

/// The indices of the k largest of `count` values, largest first (ties: lower index first).
/// A partial selection: one pass keeping a small sorted list, O(count · k) worst case.
func topIndices(_ values: UnsafePointer<Float>, count: Int, k: Int) -> [Int] {
    let k = min(k, count)
    guard k > 0 else { return [] }
    if k == count {
        return (0..<count).sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
    }
    var best: [Int] = []
    best.reserveCapacity(k + 1)
    for i in 0..<count {
        let v = values[i]
        if best.count == k, v <= values[best[k - 1]] { continue }
        var at = best.count
        while at > 0, values[best[at - 1]] < v { at -= 1 }
        best.insert(i, at: at)
        if best.count > k { best.removeLast() }
    }
    return best
}
