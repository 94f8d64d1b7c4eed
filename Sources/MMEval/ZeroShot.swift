import MMCLIP
import MMTokenizer

/// A zero-shot classifier as open_clip builds one: for each class, the text embeddings of every
/// prompt template (and synonym) are L2-normalised, averaged and renormalised; an image's
/// scores are 100 · image · Wᵀ.
public struct ZeroShotClassifier {
    public let classNames: [String]
    /// [C, D], unit rows.
    public let weights: Tensor

    /// `classes`: per class, its names (synonyms are averaged with the templates);
    /// `templates`: prompts with `{}` where the name goes.
    public init(model: CLIPModel, tokenizer: Tokenizer, classes: [[String]], templates: [String]) {
        precondition(!classes.isEmpty && classes.allSatisfy { !$0.isEmpty } && !templates.isEmpty, "zero-shot needs classes and templates")
        let context = model.config.text.contextLength
        let d = model.config.embedDim
        let w = Tensor.zeros([classes.count, d])
        withoutGradients {
            for (c, names) in classes.enumerated() {
                let prompts = names.flatMap { name in templates.map { $0.replacingOccurrences(of: "{}", with: name) } }
                let ids = IntTensor(shape: [prompts.count, context], values: tokenizer.tokenize(prompts, contextLength: context))
                let e = model.encodeText(ids)  // normalised
                let mean = Tensor.matmul(Tensor.filled([1, prompts.count], with: 1 / Float(prompts.count)), e).l2Normalized()
                (w.data + c * d).update(from: mean.data, count: d)
            }
        }
        classNames = classes.map { $0[0] }
        weights = w
    }

    /// 100 · images · Wᵀ for normalised image embeddings [N, D] → [N, C].
    public func logits(_ imageEmbeddings: Tensor) -> Tensor {
        withoutGradients { Tensor.matmul(imageEmbeddings, weights, transposeB: true).scaled(by: 100) }
    }

    /// Per image, class indices best first.
    public func ranking(_ imageEmbeddings: Tensor) -> [[Int]] {
        let l = logits(imageEmbeddings)
        let c = classNames.count
        return (0..<l.shape[0]).map { i in (0..<c).sorted { l.data[i * c + $0] > l.data[i * c + $1] } }
    }

    /// open_clip's simple ImageNet templates.
    public static let simpleTemplates = [
        "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
        "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
    ]
}

/// Top-k accuracy of rankings against true class indices.
public func topKAccuracy(_ rankings: [[Int]], _ truth: [Int], k: Int) -> Double {
    precondition(rankings.count == truth.count, "one ranking per label")
    guard !truth.isEmpty else { return 0 }
    return Double(zip(rankings, truth).filter { $0.prefix(k).contains($1) }.count) / Double(truth.count)
}
