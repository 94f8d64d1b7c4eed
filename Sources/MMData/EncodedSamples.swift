import MMTensor

/// A pass over an evaluation loader with each batch's images run through an encoder (the
/// image tower): the rows in sample order, whom they belong to, and the samples left out.
public struct EncodedSamples {
    /// `[count, width]`, one row a sample that loaded.
    public let embeddings: Tensor
    /// The samples' indices (manifest rows, positions in a file list, shard sample ids).
    public let indices: [Int]
    /// The samples' names: image paths, or shard `__key__`s.
    public let names: [String]
    /// Their captions (empty without a caption source).
    public let captions: [String]
    /// The samples that could not be used, in stream order.
    public let skipped: [SkippedImage]

    public var count: Int { indices.count }
}

extension PairLoader {
    /// Runs every remaining batch's images through `encode` (`[B, 3, S, S]` → `[B, width]`).
    /// `next` takes one batch from the loader, for a caller that watches its waits.
    public func encodeAll(
        width: Int, next: (PairLoader) throws -> PairBatch? = { try $0.next() }, _ encode: (Tensor) -> Tensor
    ) rethrows -> EncodedSamples {
        var parts: [Tensor] = [], indices: [Int] = [], names: [String] = [], captions: [String] = [], skipped: [SkippedImage] = []
        while let b = try next(self) {
            parts.append(encode(b.images))
            indices += b.indices
            names += b.names
            captions += b.captions
            skipped += b.skipped
        }
        return EncodedSamples(
            embeddings: parts.isEmpty ? Tensor.zeros([0, width]) : Tensor.concatenate(parts, axis: 0), indices: indices,
            names: names, captions: captions, skipped: skipped)
    }
}
