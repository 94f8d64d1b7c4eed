import Foundation
import MMCLIP
import MMData
import MMImage
import MMTokenizer

/// A model ready to embed images and texts: the checkpoint's weights with the preprocessing and
/// tokenizer it records. Embeddings are L2-normalised rows, so cosine = dot product.
///
///     let embedder = try Embedder(checkpoint: URL(fileURLWithPath: "model.safetensors"))
///     let photos = embedder.embed(imageFiles: ["a.jpg", "b.jpg"])
///     let texts = embedder.embed(texts: ["a red circle"])
public final class Embedder {
    public let model: CLIPModel
    public let preprocessing: Preprocessing
    public let tokenizer: Tokenizer

    /// What loading assumed (e.g. an activation the checkpoint does not record), for the user.
    public private(set) var notes: [String] = []

    /// Identifies the weights (see `EmbeddingIndex.fingerprint`); computed on first use.
    public private(set) lazy var fingerprint: String = EmbeddingIndex.fingerprint(model)

    public init(model: CLIPModel, preprocessing: Preprocessing, tokenizer: Tokenizer) {
        self.model = model
        self.preprocessing = preprocessing
        self.tokenizer = tokenizer
    }

    /// Loads a checkpoint (open_clip or Hugging Face layout). `config` is for checkpoints that do
    /// not record one; `vocabulary` (a folder) overrides the tokenizer the checkpoint names
    /// (default: CLIP's).
    public convenience init(checkpoint: URL, config: CLIPConfig? = nil, vocabulary: String? = nil) throws {
        let loaded = try CLIPModel.load(from: checkpoint, config: config)
        let named = try vocabulary ?? loaded.vocabularyFolder()
        let words = try named.map { try Vocabulary.load($0) } ?? Vocabulary.clip()
        let size = loaded.model.config.text.vocabSize
        guard words.count <= size else {
            throw EvalError.vocabularyTooLarge(vocabulary: named ?? "CLIP", tokens: words.count, towerTokens: size)
        }
        self.init(
            model: loaded.model, preprocessing: loaded.preprocessing,
            tokenizer: Tokenizer(vocabulary: words, contextLength: loaded.model.config.text.contextLength))
        notes = loaded.notes
    }

    /// Texts → [N, D], in batches.
    public func embed(texts: [String], batchSize: Int = 64) -> Tensor {
        precondition(batchSize > 0, "batch size must be positive")
        let context = model.config.text.contextLength
        var parts: [Tensor] = []
        for start in stride(from: 0, to: texts.count, by: batchSize) {
            let chunk = Array(texts[start..<min(start + batchSize, texts.count)])
            let ids = IntTensor(shape: [chunk.count, context], values: tokenizer.tokenize(chunk, contextLength: context))
            parts.append(withoutGradients { model.encodeText(ids) })
        }
        return parts.isEmpty ? Tensor.zeros([0, model.config.embedDim]) : Tensor.concatenate(parts, axis: 0)
    }

    /// Image files → embeddings of those that could be read (open_clip's eval transform), in
    /// batches; the others are listed in `failures`, never fatal.
    public func embed(imageFiles paths: [String], batchSize: Int = 32) -> ImageEmbeddings {
        precondition(batchSize > 0, "batch size must be positive")
        let loader: PairLoader
        do { loader = try PairLoader(evaluating: paths, batchSize: batchSize, transform: preprocessing.evalTransform) } catch {
            // No thread could start (a process limit): no file can be read.
            return ImageEmbeddings(paths: [], embeddings: Tensor.zeros([0, model.config.embedDim]), failures: paths.map { ($0, "\(error)") })
        }
        // A file-list loader lists bad files and never fails; `badImages` has them all (a batch
        // carries only those met while it filled).
        let samples = loader.encodeAll(width: model.config.embedDim, next: { try? $0.next() }, encode)
        return ImageEmbeddings(
            paths: samples.names, embeddings: samples.embeddings,
            failures: loader.badImages.map { ($0.path, $0.error.map { "\($0)" } ?? $0.reason) })
    }

    /// Every remaining sample of an evaluation loader (its transform should be
    /// `preprocessing.evalTransform`) → unit rows, with the samples' names and captions.
    public func embed(_ loader: PairLoader) throws -> EncodedSamples {
        try loader.encodeAll(width: model.config.embedDim, encode)
    }

    private func encode(_ images: Tensor) -> Tensor { withoutGradients { model.encodeImage(images) } }

    /// The index rows (of `kind`, if given) closest to a text; an error if the index was built by
    /// another model. With `approximate`, candidates come from it and are re-scored exactly.
    public func search(
        _ index: EmbeddingIndex, text: String, k: Int, kind: EmbeddingIndex.RowKind? = nil,
        approximate: ApproximateIndex? = nil
    ) throws -> [EmbeddingIndex.Match] {
        try index.requireModel(fingerprint, dimension: model.config.embedDim)
        return try index.search(embed(texts: [text]), k: k, kind: kind, approximate: approximate)[0]
    }

    /// The index rows closest to an image file; an error if it cannot be read or the index was
    /// built by another model.
    public func search(
        _ index: EmbeddingIndex, imageFile: String, k: Int, kind: EmbeddingIndex.RowKind? = nil,
        approximate: ApproximateIndex? = nil
    ) throws -> [EmbeddingIndex.Match] {
        try index.requireModel(fingerprint, dimension: model.config.embedDim)
        let query = embed(imageFiles: [imageFile])
        if let failure = query.failures.first { throw EvalError.unreadableQuery(reason: failure.error) }
        return try index.search(query.embeddings, k: k, kind: kind, approximate: approximate)[0]
    }
}

/// Embeddings of the image files that could be read, and why the others could not.
public struct ImageEmbeddings {
    /// The files embedded, one per row.
    public let paths: [String]
    /// [paths.count, D], unit rows.
    public let embeddings: Tensor
    public let failures: [(path: String, error: String)]
}
