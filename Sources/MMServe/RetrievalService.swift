import Foundation
import MMEval
import MMImage
import MMTensor

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// What the server does, apart from HTTP: queries in, JSON-ready answers out. Every model call and
/// search runs on the one `ComputeQueue`.
public final class RetrievalService: @unchecked Sendable {
    /// Bounds on what one request may ask for.
    public struct Limits: Sendable {
        /// Results with metadata (`num_images`, `k`).
        public var results = 1_000
        /// Result ids (`num_result_ids`).
        public var resultIDs = 10_000
        public var textsPerRequest = 256
        public var imagesPerRequest = 16
        public var labels = 1_000
        public var templates = 100
        /// Largest decoded image in a request, bytes.
        public var imageBytes = 16 << 20
        /// Largest file sent back as a thumbnail or a result's `image`, bytes.
        public var thumbnailBytes = 4 << 20
        public init() {}
    }

    public let embedder: Embedder
    public let indexes: [ServedIndex]
    public let limits: Limits
    /// Whether `image_url` queries may make the server fetch an address (off by default).
    public let allowURLFetch: Bool
    let compute: ComputeQueue
    /// Decodes and preprocesses query images from memory (used on the compute queue only, one at a time).
    private let imagePipeline: ImagePipeline
    private var classifiers: [String: ZeroShotClassifier] = [:]

    /// Cosine at or above which clip-retrieval's `deduplicate` drops a later result.
    static let duplicateCosine: Float = 0.94

    public init(
        embedder: Embedder, indexes: [ServedIndex], limits: Limits = Limits(), allowURLFetch: Bool = false,
        maximumWaiting: Int = 64
    ) throws {
        guard !indexes.isEmpty else { throw ServeSetupError("no index to serve") }
        guard Set(indexes.map(\.name)).count == indexes.count else { throw ServeSetupError("two indexes have the same name") }
        for s in indexes {
            do { try s.index.requireModel(embedder.fingerprint, dimension: embedder.model.config.embedDim) } catch {
                throw ServeSetupError("index \(s.name): \(error)")
            }
        }
        self.embedder = embedder
        self.indexes = indexes
        self.limits = limits
        self.allowURLFetch = allowURLFetch
        compute = ComputeQueue(maximumWaiting: maximumWaiting)
        imagePipeline = ImagePipeline(transform: embedder.preprocessing.evalTransform)
    }

    public var dimension: Int { embedder.model.config.embedDim }

    func served(_ name: String?) throws -> ServedIndex {
        guard let name else { return indexes[0] }
        guard let s = indexes.first(where: { $0.name == name }) else {
            throw ServeError.notFound("unknown index '\(name.prefix(100))'; GET /indices-list names them")
        }
        return s
    }

    // MARK: Queries

    /// Text searches waiting to run as one batch: one forward pass for all their texts and one
    /// product per index with all their embeddings, instead of one of each per request.
    private var pendingTextSearches: [PendingTextSearch] = []
    private let pendingLock = NSLock()

    struct PendingTextSearch {
        let text: String
        let served: ServedIndex
        let k: Int
        let kind: EmbeddingIndex.RowKind?
        let continuation: CheckedContinuation<[EmbeddingIndex.Match], Error>
    }

    /// The best `k` rows for a text, batched with the other text searches waiting at that moment.
    func textSearch(_ text: String, in served: ServedIndex, k: Int, kind: EmbeddingIndex.RowKind?) async throws -> [EmbeddingIndex.Match] {
        try await withCheckedThrowingContinuation { continuation in
            let (first, full) = pendingLock.withLock { () -> (Bool, Bool) in
                guard pendingTextSearches.count < compute.maximumWaiting else { return (false, true) }
                pendingTextSearches.append(PendingTextSearch(text: text, served: served, k: k, kind: kind, continuation: continuation))
                return (pendingTextSearches.count == 1, false)
            }
            if full {
                return continuation.resume(throwing: ServeError(503, "busy: \(compute.maximumWaiting) text searches are waiting; retry later"))
            }
            guard first else { return }
            // The first of a batch queues the job that will take every search waiting when it runs.
            Task {
                do {
                    try await compute.run { self.runPendingTextSearches() }
                } catch {
                    for p in self.takePending() { p.continuation.resume(throwing: error) }
                }
            }
        }
    }

    private func takePending() -> [PendingTextSearch] {
        pendingLock.withLock {
            defer { pendingTextSearches.removeAll() }; return pendingTextSearches
        }
    }

    /// Runs on the compute queue.
    private func runPendingTextSearches() {
        let batch = takePending()
        guard !batch.isEmpty else { return }
        let queries = embedder.embed(texts: batch.map(\.text))
        let d = queries.shape[1]
        // One search per (index, kind) over all its queries, with the largest k asked.
        var groups: [String: [Int]] = [:]
        for (i, p) in batch.enumerated() { groups["\(p.served.name)\u{0}\(p.kind?.rawValue ?? "")", default: []].append(i) }
        for members in groups.values {
            let first = batch[members[0]]
            let rows = Tensor(
                shape: [members.count, d], values: members.flatMap { i in Array(UnsafeBufferPointer(start: queries.data + i * d, count: d)) })
            do {
                let found = try first.served.index.search(
                    rows, k: members.map { batch[$0].k }.max()!, kind: first.kind, approximate: first.served.approximate)
                for (j, i) in members.enumerated() { batch[i].continuation.resume(returning: Array(found[j].prefix(batch[i].k))) }
            } catch {
                for i in members { batch[i].continuation.resume(throwing: error) }
            }
        }
    }

    /// The query of a request as a unit embedding [1, D]: `text`, `image` (base64), an embedding
    /// (`embeddingKey`), or an indexed row (`id`, searching by a result). Exactly one must be given.
    func queryEmbedding(_ body: JSONBody, embeddingKey: String, in served: ServedIndex) async throws -> Tensor {
        let given = ["text", "image", "image_url", embeddingKey, "id"].filter { body.has($0) }
        guard given.count == 1 else {
            throw ServeError.badRequest(
                given.isEmpty ? "give one of text, image, \(embeddingKey) or id" : "give only one of \(given.joined(separator: ", "))")
        }
        if let text = try body.string("text", maxLength: 10_000) {
            return try await compute.run { self.embedder.embed(texts: [text]) }
        }
        if let image = try body.string("image", maxLength: limits.imageBytes * 4 / 3 + 100) {
            let bytes = try decodeBase64Image(image, field: "image")
            return try await compute.run { try self.embedImages([bytes], field: "image") }
        }
        if body.has("image_url") {
            guard allowURLFetch else {
                throw ServeError(403, "image_url: fetching addresses is off on this server (start it with --allow-url-fetch)")
            }
            let bytes = try await fetch(try body.string("image_url", maxLength: 4096)!)
            return try await compute.run { try self.embedImages([bytes], field: "image_url") }
        }
        if let vector = try body.floats(embeddingKey, count: dimension) {
            let t = Tensor(shape: [1, dimension], values: vector)
            let norm = vector.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0, norm.isFinite else { throw ServeError.badRequest("\(embeddingKey): a zero vector has no direction") }
            return withoutGradients { t.l2Normalized() }
        }
        let id = try body.int("id", in: 0...Int.max)!
        guard let row = served.index.row(id: id) else { throw ServeError.notFound("index \(served.name) has no row with id \(id)") }
        return served.index.embeddings(rows: [row])
    }

    /// Base64 (optionally a `data:` URL) → bytes that start like a JPEG or PNG.
    func decodeBase64Image(_ text: String, field: String) throws -> [UInt8] {
        var payload = Substring(text)
        if payload.hasPrefix("data:"), let comma = payload.firstIndex(of: ",") { payload = payload[payload.index(after: comma)...] }
        guard let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw ServeError.badRequest("\(field): not valid base64")
        }
        guard data.count <= limits.imageBytes else { throw ServeError(413, "\(field): image larger than \(limits.imageBytes) bytes") }
        let bytes = [UInt8](data)
        switch ImageDecoder.format(of: bytes) {
        case .jpeg, .png: return bytes
        default: throw ServeError(415, "\(field): not a JPEG or PNG image")
        }
    }

    /// Unit embeddings [n, D] of encoded images, decoded in memory (called on the compute queue).
    func embedImages(_ images: [[UInt8]], field: String) throws -> Tensor {
        let size = imagePipeline.transform.size, plane = 3 * size * size
        let pixels = Tensor.zeros([images.count, 3, size, size])
        for (i, bytes) in images.enumerated() {
            let name = images.count > 1 ? "\(field)[\(i)]" : field
            do { try imagePipeline.process(.bytes(bytes, name: name), into: pixels.data + i * plane) } catch {
                throw ServeError.badRequest("\(name): cannot be decoded (\(String("\(error)".split(separator: "\n").first ?? "")))")
            }
        }
        return withoutGradients { embedder.model.encodeImage(pixels) }
    }

    /// Fetches an image URL (only with `allowURLFetch`): http(s) only, 10 s, size-capped.
    func fetch(_ address: String) async throws -> [UInt8] {
        guard let url = URL(string: address), ["http", "https"].contains(url.scheme?.lowercased() ?? "") else {
            throw ServeError.badRequest("image_url: expected an http or https address")
        }
        var request = URLRequest(url: url, timeoutInterval: 10)
        request.httpMethod = "GET"
        let (data, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw ServeError(502, "image_url: the address did not answer 200") }
        guard data.count <= limits.imageBytes else { throw ServeError(413, "image_url: image larger than \(limits.imageBytes) bytes") }
        return try decodeBase64Image(data.base64EncodedString(), field: "image_url")
    }

    /// The best `count` rows of `kind` for a unit query [1, D] (exact, or through the approximate index).
    func nearest(_ query: Tensor, in served: ServedIndex, count: Int, kind: EmbeddingIndex.RowKind?) async throws -> [EmbeddingIndex.Match] {
        try await compute.run {
            try served.index.search(query, k: count, kind: kind, approximate: served.approximate)[0]
        }
    }

    /// The best `count` rows for a request's query: text queries go through the batch.
    func matches(_ body: JSONBody, embeddingKey: String, in served: ServedIndex, count: Int, kind: EmbeddingIndex.RowKind?) async throws
        -> [EmbeddingIndex.Match]
    {
        if let text = try body.string("text", maxLength: 10_000), ["image", "image_url", embeddingKey, "id"].allSatisfy({ !body.has($0) }) {
            return try await textSearch(text, in: served, k: count, kind: kind)
        }
        return try await nearest(try await queryEmbedding(body, embeddingKey: embeddingKey, in: served), in: served, count: count, kind: kind)
    }

    /// clip-retrieval's deduplication: drop a result whose embedding has cosine ≥ 0.94 with an earlier kept one.
    func deduplicated(_ matches: [EmbeddingIndex.Match], in index: EmbeddingIndex) -> [EmbeddingIndex.Match] {
        guard matches.count > 1 else { return matches }
        let rows = index.embeddings(rows: matches.map(\.index))
        let gram = withoutGradients { Tensor.matmul(rows, rows, transposeB: true) }  // [n, n]
        let n = matches.count
        var kept: [Int] = []
        for i in 0..<n where !kept.contains(where: { gram.data[$0 * n + i] >= Self.duplicateCosine }) { kept.append(i) }
        return kept.map { matches[$0] }
    }

    // MARK: Results

    /// The fields of one row: id, caption, its file (`image_path`) for image rows, metadata
    /// columns; with `image`, the file itself as base64 when it is on this server.
    func describe(row: Int, in served: ServedIndex, withImage: Bool) -> [String: Any] {
        let index = served.index
        var out: [String: Any] = ["id": index.ids[row], "kind": index.kinds[row].rawValue]
        for (c, column) in index.columns.enumerated() where !index.metadata[row][c].isEmpty { out[column] = index.metadata[row][c] }
        if let caption = index.caption(row: row) { out["caption"] = caption }
        if index.kinds[row] == .image {
            out["image_path"] = index.names[row]
            out["thumbnail"] = "/thumbnail/\(served.name)/\(index.ids[row])"
            if withImage, let bytes = try? thumbnail(row: row, in: served) { out["image"] = Data(bytes.data).base64EncodedString() }
        }
        return out
    }

    /// The file of an image row, read only if it is a regular file no larger than the limit.
    /// Only names recorded in the index are ever opened: the request gives an id, never a path.
    func thumbnail(row: Int, in served: ServedIndex) throws -> (data: [UInt8], type: String) {
        let index = served.index
        guard index.kinds[row] == .image else { throw ServeError.notFound("row \(index.ids[row]) of \(served.name) is a text, not an image") }
        let path = index.names[row]
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw ServeError.notFound("the image of row \(index.ids[row]) is not on this server")
        }
        guard Int(info.st_size) <= limits.thumbnailBytes else {
            throw ServeError.notFound("the image of row \(index.ids[row]) is too large to serve")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ServeError.notFound("the image of row \(index.ids[row]) cannot be read")
        }
        let bytes = [UInt8](data)
        switch ImageDecoder.format(of: bytes) {
        case .jpeg: return (bytes, "image/jpeg")
        case .png: return (bytes, "image/png")
        default: throw ServeError.notFound("the file of row \(index.ids[row]) is not an image")
        }
    }

    func thumbnail(index name: String, id: Int) throws -> (data: [UInt8], type: String) {
        let served = try served(name)
        guard let row = served.index.row(id: id) else { throw ServeError.notFound("index \(name) has no row with id \(id)") }
        return try thumbnail(row: row, in: served)
    }

    // MARK: Endpoints

    /// clip-retrieval's POST /knn-service: an array best first; the first `num_images` carry the
    /// metadata (and `image` when the file is here), the rest up to `num_result_ids` only id and
    /// similarity. The safety, violence, aesthetic and mclip options are accepted and ignored.
    func knn(_ body: JSONBody) async throws -> Any {
        let served = try served(try body.string("indice_name", maxLength: 200))
        let numImages = try body.int("num_images", in: 1...limits.results) ?? 40
        let numIDs = max(numImages, try body.int("num_result_ids", in: 1...limits.resultIDs) ?? numImages)
        let kind = try modality(body)
        for ignored in ["use_safety_model", "use_violence_detector", "use_mclip"] { _ = try body.bool(ignored) }
        var matches = try await matches(body, embeddingKey: "embedding_input", in: served, count: numIDs, kind: kind)
        if try body.bool("deduplicate") ?? false { matches = deduplicated(matches, in: served.index) }
        return matches.enumerated().map { i, m -> [String: Any] in
            var out: [String: Any] = i < numImages ? describe(row: m.index, in: served, withImage: true) : [:]
            out["id"] = m.id
            out["similarity"] = Double(m.score)
            return out
        }
    }

    /// Which rows a query wants: clip-retrieval's `modality` ("image" | "text"; default image).
    func modality(_ body: JSONBody) throws -> EmbeddingIndex.RowKind? {
        guard let m = try body.string("modality", maxLength: 20) else { return nil }
        guard let kind = EmbeddingIndex.RowKind(rawValue: m) else { throw ServeError.badRequest("modality: expected \"image\" or \"text\"") }
        return kind
    }

    /// clip-retrieval's POST /metadata: `{"ids", "indice_name"}` → `[{"id", "metadata"}]`.
    func metadata(_ body: JSONBody) throws -> Any {
        let served = try served(try body.string("indice_name", maxLength: 200))
        guard let ids = try body.ints("ids", maxCount: limits.results) else { throw ServeError.badRequest("ids: required") }
        return try ids.map { id -> [String: Any] in
            guard let row = served.index.row(id: id) else { throw ServeError.notFound("index \(served.name) has no row with id \(id)") }
            var meta = describe(row: row, in: served, withImage: true)
            meta["id"] = nil
            return ["id": id, "metadata": meta]
        }
    }

    /// mm's POST /search: `{"text" | "image" | "embedding" | "id", "k", "index", "modality"}` →
    /// `{"index", "results": [{"id", "score", "kind", "caption", "image_path", "thumbnail", …}]}`.
    func search(_ body: JSONBody) async throws -> Any {
        let served = try served(try body.string("index", maxLength: 200))
        let k = try body.int("k", in: 1...limits.results) ?? 10
        let kind = try modality(body)
        let matches = try await matches(body, embeddingKey: "embedding", in: served, count: k, kind: kind)
        return [
            "index": served.name,
            "results": matches.map { m -> [String: Any] in
                var out = describe(row: m.index, in: served, withImage: false)
                out["score"] = Double(m.score)
                return out
            }
        ] as [String: Any]
    }

    /// mm's POST /embed: `{"texts": […]}` or `{"images": [base64…]}` → unit vectors.
    func embed(_ body: JSONBody) async throws -> Any {
        let vectors: Tensor
        if let texts = try body.strings("texts", maxCount: limits.textsPerRequest) {
            guard !body.has("images") else { throw ServeError.badRequest("give texts or images, not both") }
            guard !texts.isEmpty else { throw ServeError.badRequest("texts: empty") }
            vectors = try await compute.run { self.embedder.embed(texts: texts) }
        } else if let images = try body.strings("images", maxCount: limits.imagesPerRequest, maxLength: limits.imageBytes * 4 / 3 + 100) {
            guard !images.isEmpty else { throw ServeError.badRequest("images: empty") }
            let decoded = try images.enumerated().map { try decodeBase64Image($1, field: "images[\($0)]") }
            vectors = try await compute.run { try self.embedImages(decoded, field: "images") }
        } else {
            throw ServeError.badRequest("give texts (an array of strings) or images (an array of base64 images)")
        }
        let d = vectors.shape[1]
        let rows = (0..<vectors.shape[0]).map { i in (0..<d).map { Double(vectors.data[i * d + $0]) } }
        return ["model": embedder.fingerprint, "dimension": d, "embeddings": rows] as [String: Any]
    }

    /// mm's POST /zeroshot: `{"labels": […], "templates"?: […], "image": base64}` → the labels by
    /// probability (open_clip's ensembled classifier, softmax over 100 · cosine).
    func zeroShot(_ body: JSONBody) async throws -> Any {
        guard let labels = try body.strings("labels", maxCount: limits.labels, maxLength: 1000), !labels.isEmpty else {
            throw ServeError.badRequest("labels: a non-empty array of strings is required")
        }
        let templates = try body.strings("templates", maxCount: limits.templates, maxLength: 1000) ?? ["a photo of a {}."]
        guard !templates.isEmpty, templates.allSatisfy({ $0.contains("{}") }) else {
            throw ServeError.badRequest("templates: each must contain {} where the label goes")
        }
        guard let image = try body.string("image", maxLength: limits.imageBytes * 4 / 3 + 100) else {
            throw ServeError.badRequest("image: required (base64)")
        }
        let bytes = try decodeBase64Image(image, field: "image")
        let predictions = try await compute.run { () -> [(label: String, index: Int, probability: Double)] in
            let key = (labels + ["\u{0}"] + templates).joined(separator: "\u{1}")
            let classifier =
                self.classifiers[key]
                ?? ZeroShotClassifier(
                    model: self.embedder.model, tokenizer: self.embedder.tokenizer,
                    classes: labels.map { [$0] }, templates: templates)
            if self.classifiers.count >= 16 { self.classifiers.removeAll() }
            self.classifiers[key] = classifier
            return classifier.predictions(try self.embedImages([bytes], field: "image"), k: labels.count)[0]
        }
        return ["predictions": predictions.map { ["label": $0.label, "probability": $0.probability] as [String: Any] }] as [String: Any]
    }

    func health() -> Any {
        [
            "status": "ok", "model": embedder.fingerprint, "dimension": dimension,
            "indexes": Dictionary(
                uniqueKeysWithValues: indexes.map {
                    ($0.name, ["rows": $0.index.count, "approximate": $0.approximate?.info.kind.rawValue ?? "exact"] as [String: Any])
                })
        ] as [String: Any]
    }
}
