import Foundation
import MMCLIP
import MMData
import MMEval
import MMImage
import MMTokenizer

/// The zero-shot check after each epoch: a labels file and a manifest of labelled images, read
/// once; each call classifies the images with the model's current weights (one template,
/// "a photo of a {}.") and returns top-1 and top-5 accuracy.
public struct ZeroShotCheck {
    public let classes: ClassLabels
    public let manifest: Manifest
    /// The class of each manifest row.
    let truth: [Int]
    let tokenizer: Tokenizer
    let transform: ImageTransform
    let threads: Int

    public init(labels: String, data: String, options: Manifest.Options, tokenizer: Tokenizer, transform: ImageTransform, threads: Int) throws {
        let classes = try ClassLabels(contentsOf: labels), manifest = try Manifest(path: data, options: options)
        guard let column = manifest.labels else { throw TrainingError.unusableZeroShotData(file: data, reason: "no label column") }
        var index: [String: Int] = [:]
        for (i, names) in classes.classes.enumerated() { for n in names where index[n.lowercased()] == nil { index[n.lowercased()] = i } }
        truth = try column.enumerated().map { row, label in
            guard let i = index[label.lowercased()] else { throw TrainingError.unknownLabel(file: data, line: manifest.lines[row], label: label) }
            return i
        }
        self.classes = classes
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.transform = transform
        self.threads = threads
    }

    /// Top-1 and top-5 accuracy of `model` (nil when no image could be read).
    public func callAsFunction(_ model: CLIPModel) -> (top1: Double, top5: Double)? {
        guard let loader = try? PairLoader(evaluating: manifest, batchSize: 64, transform: transform, tokenizer: nil, threads: threads) else {
            return nil
        }
        var parts: [Tensor] = [], rows: [Int] = []
        while let b = Interruption.whileWaiting({ try? loader.next() }) {
            parts.append(withoutGradients { model.encodeImage(b.images) })
            rows += b.indices
        }
        guard !parts.isEmpty else { return nil }
        let classifier = ZeroShotClassifier(model: model, tokenizer: tokenizer, classes: classes.classes, templates: ["a photo of a {}."])
        let ranking = classifier.ranking(Tensor.concatenate(parts, axis: 0)), labels = rows.map { truth[$0] }
        return (topKAccuracy(ranking, labels, k: 1), topKAccuracy(ranking, labels, k: 5))
    }
}
