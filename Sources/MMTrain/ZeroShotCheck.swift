import MMCLIP
import MMData
import MMFoundation
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
        classes = try ClassLabels(contentsOf: labels)
        manifest = try Manifest(path: data, options: options)
        truth = try classes.classIndices(of: manifest)
        self.tokenizer = tokenizer
        self.transform = transform
        self.threads = threads
    }

    /// Top-1 and top-5 accuracy of `model` (nil when no image could be read).
    public func callAsFunction(_ model: CLIPModel) -> (top1: Double, top5: Double)? {
        guard let loader = try? PairLoader(evaluating: manifest, batchSize: 64, transform: transform, tokenizer: nil, threads: threads) else {
            return nil
        }
        let images = loader.encodeAll(
            width: model.config.embedDim, next: { loader in Interruption.whileWaiting { try? loader.next() } },
            { images in withoutGradients { model.encodeImage(images) } })
        guard images.count > 0 else { return nil }
        let classifier = ZeroShotClassifier(model: model, tokenizer: tokenizer, classes: classes.classes, templates: ["a photo of a {}."])
        let ranking = classifier.ranking(images.embeddings), labels = images.indices.map { truth[$0] }
        return (topKAccuracy(ranking, labels, k: 1), topKAccuracy(ranking, labels, k: 5))
    }
}
