import MMNN

/// open_clip's text tower: `token_embedding + positional_embedding` → causal pre-LN blocks →
/// `ln_final` → the features at the end-of-text token (the highest id in each row, as open_clip
/// pools) → `@ text_projection`.
public final class TextTransformer: Module {
    public struct Configuration: Sendable, Equatable {
        public var contextLength: Int
        public var vocabSize: Int
        public var width: Int
        public var layers: Int
        public var heads: Int
        public var mlpRatio: Float
        public var outputDim: Int
        public var activation: Activation

        public init(
            contextLength: Int = 77, vocabSize: Int = 49408, width: Int, layers: Int, heads: Int,
            mlpRatio: Float = 4, outputDim: Int, activation: Activation = .gelu
        ) {
            self.contextLength = contextLength
            self.vocabSize = vocabSize
            self.width = width
            self.layers = layers
            self.heads = heads
            self.mlpRatio = mlpRatio
            self.outputDim = outputDim
            self.activation = activation
        }
    }

    public let configuration: Configuration
    @Key("token_embedding") public var tokenEmbedding: Embedding
    @Key("positional_embedding") public var positionalEmbedding: Tensor
    public let transformer: Transformer
    @Key("ln_final") public var finalNorm: LayerNorm
    @Key("text_projection") public var projection: Tensor

    public init(_ c: Configuration) {
        configuration = c
        transformer = Transformer(width: c.width, layers: c.layers, heads: c.heads, mlpRatio: c.mlpRatio, activation: c.activation)
        tokenEmbedding = Embedding(c.vocabSize, c.width)
        positionalEmbedding = .zeros([c.contextLength, c.width], requiresGrad: true)
        finalNorm = LayerNorm(c.width)
        projection = .zeros([c.width, c.outputDim], requiresGrad: true)
    }

    /// open_clip's initialisation of the text tower.
    public func resetParameters(using g: inout SeededGenerator) {
        let c = configuration
        tokenEmbedding.weight.fillNormal(std: 0.02, using: &g)
        positionalEmbedding.fillNormal(std: 0.01, using: &g)
        transformer.resetParameters(using: &g)
        projection.fillNormal(std: 1 / Float(c.width).squareRoot(), using: &g)
    }

    /// ids [B, L] with L ≤ context length → features [B, outputDim]. `dropout` (training only,
    /// off by default as in open_clip) noises the embeddings and every block's residual branches.
    public func callAsFunction(_ ids: IntTensor, dropout: Dropout? = nil) -> Tensor {
        let c = configuration
        precondition(
            ids.shape.count == 2 && ids.shape[1] <= c.contextLength,
            "text tower expects ids [B, L ≤ \(c.contextLength)], got \(ids.shape)")
        // With the causal mask, a row's features at its end-of-text token depend only on the
        // tokens up to it, so the columns after the batch's last EOT (padding) are never needed.
        let eot = Self.endOfText(ids)
        let used = Int(eot.values.max() ?? 0) + 1
        let tokens = used < ids.shape[1] ? Self.leadingColumns(ids, used) : ids
        let l = tokens.shape[1]
        let positions = l == c.contextLength ? positionalEmbedding : positionalEmbedding.slice(axis: 0, 0..<l)
        var x = tokenEmbedding(tokens) + positions
        if let dropout { x = dropout(x, site: 0) }
        // ln_final is row-wise, so pooling before it is the same; the last block computes only
        // the EOT rows.
        return .matmul(finalNorm(transformer(x, causal: true, at: eot, dropout: dropout)), projection)
    }

    /// ids [B, L] → [B, n].
    static func leadingColumns(_ ids: IntTensor, _ n: Int) -> IntTensor {
        let (b, l) = (ids.shape[0], ids.shape[1])
        return IntTensor(shape: [b, n], values: (0..<b).flatMap { ids.values[($0 * l)..<($0 * l + n)] })
    }

    /// The position of each row's highest id (its first occurrence, as torch's argmax).
    static func endOfText(_ ids: IntTensor) -> IntTensor {
        let (b, l) = (ids.shape[0], ids.shape[1])
        return IntTensor(
            shape: [b],
            values: (0..<b).map { row in
                let tokens = ids.values[(row * l)..<((row + 1) * l)]
                return Int32(tokens.indices.max { tokens[$0] < tokens[$1] }! - row * l)
            })
    }
}
