import CFaiss
import Foundation
import MMData
import MMFoundation
import MMTensor

/// What `clip-retrieval inference` and `clip-retrieval index` wrote, found under one or more
/// folders (each searched itself and in its `embeddings/` and `index/` subfolders, the layout of
/// `clip-retrieval end2end`): `img_emb/*.npy`, `text_emb/*.npy` and `metadata/*.parquet`, one file
/// of each per partition, and autofaiss's `image.index` and `text.index`.
///
/// clip-retrieval's result ids are row positions: the partitions in file-name order, rows in
/// order within each. An import keeps exactly that order, so row i of the `.mmi` has id i.
public struct ClipRetrievalFolder {
    public let imageEmbeddings: [String]
    public let textEmbeddings: [String]
    public let metadata: [String]
    public let imageIndex: String?
    public let textIndex: String?

    public init(folders: [String]) throws {
        var places: [String] = []
        for f in folders {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: f, isDirectory: &isFolder), isFolder.boolValue else {
                throw EvalError.badClipRetrieval(file: f, reason: "not a folder")
            }
            places += [f, f + "/embeddings", f + "/index"]
        }
        func files(_ sub: String, _ ext: String) -> [String] {
            for p in places {
                let dir = p + "/" + sub
                guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
                let found = names.filter { $0.hasSuffix(ext) }.sorted()
                if !found.isEmpty { return found.map { dir + "/" + $0 } }
            }
            return []
        }
        func file(_ name: String) -> String? { places.map { $0 + "/" + name }.first { FileManager.default.fileExists(atPath: $0) } }
        imageEmbeddings = files("img_emb", ".npy")
        textEmbeddings = files("text_emb", ".npy")
        metadata = files("metadata", ".parquet")
        imageIndex = file("image.index")
        textIndex = file("text.index")
        guard !imageEmbeddings.isEmpty || !textEmbeddings.isEmpty else {
            throw EvalError.badClipRetrieval(
                file: folders.joined(separator: ", "),
                reason: "no img_emb/*.npy or text_emb/*.npy (the embeddings folder of clip-retrieval inference)")
        }
    }

    /// Which rows an import makes: clip-retrieval searches images and texts in two faiss indexes
    /// over the same metadata; an `.mmi` has one approximate index beside it.
    public enum Rows: String, CaseIterable, Sendable {
        /// Image rows (ids = clip-retrieval's), `image.index` adopted.
        case image
        /// Text rows (ids = clip-retrieval's), `text.index` adopted.
        case text
        /// Image rows (ids 0…n−1) then text rows (ids n…2n−1) in one file for image→text search;
        /// no index adopted (`mm index ann` builds one over both).
        case both
    }

    /// The faiss index that matches `rows`, if there is one.
    public func faissIndex(for rows: Rows) -> String? {
        switch rows {
        case .image: return imageIndex
        case .text: return textIndex
        case .both: return nil
        }
    }

    /// An index of `rows`: image rows named by `image_path` (else `url`), text rows by their
    /// caption, every metadata column kept (numbers as text, nulls empty) but the one naming the
    /// rows. `fingerprint` names the model the embeddings came from. `notes` collects what was
    /// left out (columns mm cannot read). Bad or disagreeing files are an `EvalError` naming them
    /// (a bad Parquet file the reader's `DataError`).
    public func index(rows: Rows, modelFingerprint fingerprint: String, notes: inout [String]) throws -> EmbeddingIndex {
        let wantImages = rows != .text, wantTexts = rows != .image
        if wantImages && imageEmbeddings.isEmpty { throw EvalError.badClipRetrieval(file: "img_emb", reason: "no image embeddings (*.npy) found") }
        if wantTexts && textEmbeddings.isEmpty { throw EvalError.badClipRetrieval(file: "text_emb", reason: "no text embeddings (*.npy) found") }
        guard !metadata.isEmpty else { throw EvalError.badClipRetrieval(file: "metadata", reason: "no metadata/*.parquet found") }
        let images = wantImages ? try Self.embeddings(imageEmbeddings) : nil
        let texts = wantTexts ? try Self.embeddings(textEmbeddings) : nil
        let table = try Self.table(metadata, notes: &notes)
        // The partitions must agree row for row: pair them when they pair up, else compare totals.
        for parts in [images, texts].compactMap({ $0 }) {
            if parts.counts.count == table.counts.count {
                for (i, (a, b)) in zip(parts.counts, table.counts).enumerated() where a != b {
                    throw EvalError.badClipRetrieval(
                        file: parts.files[i], reason: "holds \(a) rows but \(table.files[i]) holds \(b): the row counts disagree")
                }
            } else if parts.rows.shape[0] != table.rows {
                throw EvalError.badClipRetrieval(
                    file: parts.files.count == 1 ? parts.files[0] : (parts.files[0] as NSString).deletingLastPathComponent,
                    reason:
                        "holds \(parts.rows.shape[0]) rows in \(parts.files.count) files but the metadata holds \(table.rows) in \(table.files.count)"
                )
            }
        }
        if let images, let texts, images.rows.shape[1] != texts.rows.shape[1] {
            throw EvalError.badClipRetrieval(
                file: textEmbeddings[0], reason: "text embeddings have dimension \(texts.rows.shape[1]), image embeddings \(images.rows.shape[1])")
        }
        let n = table.rows
        let imageName = ["image_path", "url"].lazy.compactMap { table.columns.firstIndex(of: $0) }.first
        let caption = table.columns.firstIndex(of: "caption")
        if wantImages && imageName == nil { notes.append("the metadata has no image_path or url column: image rows are named \"image N\"") }
        // The column naming image rows is their name, not metadata; a text row's caption stays a column.
        let columns = table.columns.indices.filter { !wantImages || $0 != imageName }
        let values = (0..<n).map { r in columns.map { table.values[$0][r] } }
        func names(_ column: Int?, _ prefix: String) -> [String] {
            (0..<n).map { r in column.map { table.values[$0][r] }.flatMap { $0.isEmpty ? nil : $0 } ?? "\(prefix) \(r)" }
        }
        // One init for both kinds: `add` would merge text rows with equal captions.
        let parts = [
            images.map { ($0.rows, EmbeddingIndex.RowKind.image, names(imageName, "image")) },
            texts.map { ($0.rows, EmbeddingIndex.RowKind.text, names(caption, "text")) }
        ].compactMap { $0 }
        let d = parts[0].0.shape[1]
        let all = parts.count == 1 ? parts[0].0 : Tensor.zeros([parts.count * n, d])
        if parts.count > 1 {
            for (i, p) in parts.enumerated() { (all.data + i * n * d).update(from: p.0.data, count: n * d) }
        }
        return EmbeddingIndex(
            modelFingerprint: fingerprint, names: parts.flatMap(\.2), embeddings: all,
            kinds: parts.flatMap { Array(repeating: $0.1, count: n) }, columns: columns.map { table.columns[$0] },
            metadata: Array(repeating: values, count: parts.count).flatMap { $0 })
    }

    /// The first `count` captions of the first partition with their stored text embeddings [n, D],
    /// nil without text embeddings or a caption column: embedding the captions again tells whether
    /// a model is the one that made the embeddings.
    public func captionSample(count: Int) throws -> (captions: [String], embeddings: Tensor)? {
        guard let npy = textEmbeddings.first, let parquet = metadata.first,
            let column = try ParquetFile(path: parquet).read(column: "caption")
        else { return nil }
        let stored = try NumpyMatrix(path: npy)
        let rows = (0..<min(count, stored.rows, column.count)).filter { !column.isNull[$0] }
        let all = Tensor.zeros([stored.rows, stored.columns])
        stored.copy(into: all.data)
        let sample = Tensor.zeros([rows.count, stored.columns])
        for (i, r) in rows.enumerated() { (sample.data + i * stored.columns).update(from: all.data + r * stored.columns, count: stored.columns) }
        return (rows.map { column.text($0) ?? "" }, sample)
    }

    /// Copies `faissFile` beside the saved `index` as its approximate index (`.mmi.ann` and its
    /// `.json`), after checking that faiss reads it and that it holds the index's rows (count,
    /// dimension, inner product). Its search settings are the ones saved in it.
    public static func adopt(_ faissFile: String, beside index: EmbeddingIndex) throws {
        guard let file = index.file, let checksum = index.checksum else { throw EvalError.unsavedIndex }
        var error = [CChar](repeating: 0, count: 512)
        var handle: OpaquePointer?
        guard mmf_read(faissFile, &handle, &error, error.count) == 0, let handle else {
            throw EvalError.faiss(file: faissFile, reason: "could not read it (\(String(cString: error)))")
        }
        defer { mmf_free(handle) }
        let rows = Int(mmf_count(handle)), dimension = Int(mmf_dimension(handle))
        guard rows == index.count, dimension == index.dimension else {
            throw EvalError.badClipRetrieval(
                file: faissFile, reason: "holds \(rows) rows of dimension \(dimension), the embeddings \(index.count) of \(index.dimension)")
        }
        guard mmf_is_inner_product(handle) == 1 else {
            throw EvalError.badClipRetrieval(
                file: faissFile, reason: "ranks by L2 distance; mm adopts inner-product indexes (clip-retrieval builds those)")
        }
        let (faissURL, infoURL) = ApproximateIndex.files(beside: URL(fileURLWithPath: file))
        let info = ApproximateIndex.Info(
            kind: .adopted, factory: URL(fileURLWithPath: faissFile).standardizedFileURL.path, rows: rows, dimension: dimension,
            checksum: String(checksum, radix: 16), nprobe: nil, efSearch: nil,
            candidatesPerResult: ApproximateIndex.defaultCandidatesPerResult, buildSeconds: nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            let source = try MappedFile(faissFile)
            try AtomicFile.write(to: faissURL.path) { try $0.write(source.bytes) }
            try AtomicFile.write(try encoder.encode(info), to: infoURL.path)
        } catch let error as FileError {
            throw EvalError.unwritable(file: error.path, reason: error.reason)
        }
    }

    // MARK: Files

    /// Embedding partitions, concatenated: rows [n, D] and each file's row count.
    struct Embeddings {
        let rows: Tensor
        let files: [String]
        let counts: [Int]
    }

    static func embeddings(_ files: [String]) throws -> Embeddings {
        let parts = try files.map { try NumpyMatrix(path: $0) }
        let d = parts[0].columns
        if let odd = parts.first(where: { $0.columns != d }) {
            throw EvalError.badClipRetrieval(file: odd.path, reason: "has \(odd.columns) columns, \(parts[0].path) has \(d)")
        }
        let n = parts.reduce(0) { $0 + $1.rows }
        let rows = Tensor.zeros([n, d])
        var at = 0
        for p in parts {
            p.copy(into: rows.data + at * d)
            at += p.rows
        }
        return Embeddings(rows: rows, files: files, counts: parts.map(\.rows))
    }

    /// The metadata partitions as text columns: the union of their columns (a column missing from
    /// a partition is empty there), nulls as "". A bad file is the Parquet reader's `DataError`.
    struct Table {
        var columns: [String] = []
        var values: [[String]] = []
        var files: [String] = []
        var counts: [Int] = []
        var rows: Int { counts.reduce(0, +) }
    }

    static func table(_ files: [String], notes: inout [String]) throws -> Table {
        var t = Table()
        for path in files {
            let file = try ParquetFile(path: path)
            let before = t.rows
            for (i, column) in file.columns.enumerated() {
                // pandas' index (when not a plain range) and what is not text or numbers stay out.
                if column.name.hasPrefix("__index_level_") { continue }
                if let why = column.unsupported {
                    notes.append("\(path): column '\(column.name)' left out (\(why))")
                    continue
                }
                if (column.type == .byteArray || column.type == .fixedLengthByteArray || column.type == .int96) && !column.isText {
                    notes.append("\(path): column '\(column.name)' left out (binary, not text)")
                    continue
                }
                let values = try file.read(column: i)
                if !t.columns.contains(column.name) {
                    t.columns.append(column.name)
                    t.values.append(Array(repeating: "", count: before))
                }
                let c = t.columns.firstIndex(of: column.name)!
                t.values[c] += (0..<values.count).map { values.text($0) ?? "" }
            }
            t.files.append(path)
            t.counts.append(file.rowCount)
            for c in t.values.indices where t.values[c].count < t.rows { t.values[c] += Array(repeating: "", count: t.rows - t.values[c].count) }
        }
        return t
    }
}
