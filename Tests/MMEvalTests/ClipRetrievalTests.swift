import Foundation
import MMData
import MMEval
import MMTensor
import MMTestSupport
import Testing

/// `mm index import` on a folder written by clip-retrieval's own writer and indexer (autofaiss),
/// tools/make_clip_retrieval_fixture.py; search.json holds faiss's and numpy's answers.
@Suite struct ClipRetrievalTests {
    static let folder = ReferenceVenv.root.path + "/Tests/MMEvalTests/Fixtures/clip_retrieval"
    static let expected: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: folder + "/search.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    func scratch(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.path + "/mm-clip-retrieval-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/" + name
    }

    func imported(_ rows: ClipRetrievalFolder.Rows, folders: [String] = [folder]) throws -> (EmbeddingIndex, ClipRetrievalFolder) {
        let found = try ClipRetrievalFolder(folders: folders)
        var notes: [String] = []
        let index = try found.index(rows: rows, modelFingerprint: "clip-retrieval-test", notes: &notes)
        #expect(notes.isEmpty, "\(notes)")
        return (index, found)
    }

    var queries: Tensor {
        let q = Self.expected["queries"] as! [[Double]]
        return Tensor(shape: [q.count, q[0].count], values: q.flatMap { $0.map(Float.init) })
    }

    @Test func rowsAndMetadataInClipRetrievalsOrder() throws {
        let (index, found) = try imported(.image)
        #expect(found.imageEmbeddings.map { ($0 as NSString).lastPathComponent } == ["img_emb_00.npy", "img_emb_01.npy", "img_emb_02.npy"])
        #expect(found.imageIndex?.hasSuffix("index/image.index") == true && found.textIndex != nil)
        #expect(index.count == Self.expected["rows"] as! Int && index.dimension == Self.expected["dimension"] as! Int)
        #expect(index.ids == Array(0..<index.count) && index.kinds.allSatisfy { $0 == .image })
        #expect(Set(index.columns) == ["caption", "url", "key", "width", "similarity"])
        for (key, value) in Self.expected["written_rows"] as! [String: [String: Any]] {
            let row = Int(key)!
            #expect(index.names[row] == value["image_path"] as! String)
            #expect(index.caption(row: row) == value["caption"] as? String)
            for column in ["url", "key"] { #expect(index.field(column, row: row) == value[column] as? String, "row \(row) \(column)") }
            #expect(index.field("width", row: row) == String(value["width"] as! Int))
            // A value the writer left out is a null in the parquet file, an empty value here.
            let similarity = (value["similarity"] as? NSNumber)?.doubleValue
            #expect(index.field("similarity", row: row).flatMap(Double.init) == similarity, "row \(row)")
        }
    }

    @Test func exactSearchMatchesNumpy() throws {
        let (index, _) = try imported(.image)
        let results = index.search(queries, k: 10)
        let ids = Self.expected["exact_ids"] as! [[Int]], scores = Self.expected["exact_scores"] as! [[Double]]
        for (q, found) in results.enumerated() {
            #expect(found.map(\.id) == ids[q], "query \(q)")
            for (m, s) in zip(found, scores[q]) { #expect(abs(Double(m.score) - s) < 1e-5) }
        }
    }

    @Test func adoptsAutofaissIndexAndSearchesThroughIt() throws {
        let (index, found) = try imported(.image)
        let url = URL(fileURLWithPath: scratch("gallery.mmi"))
        try index.save(to: url)
        let saved = try EmbeddingIndex.load(from: url)
        try ClipRetrievalFolder.adopt(try #require(found.faissIndex(for: .image)), beside: saved)
        let approximate = try #require(try ApproximateIndex.load(beside: saved))
        #expect(approximate.info.kind == .adopted && approximate.info.rows == index.count)
        // faiss's candidates from the adopted file are what clip_back gets from image.index.
        let candidates = try approximate.candidates(queries, count: 10)
        #expect(candidates == Self.expected["faiss_ids"] as! [[Int]])
        // Editing the index makes the adopted file stale.
        var edited = saved
        edited.add(names: ["new.jpg"], embeddings: Tensor(shape: [1, index.dimension], values: Array(repeating: 0.25, count: index.dimension)))
        try edited.save(to: url)
        #expect(throws: EvalError.self) { try ApproximateIndex.load(beside: try EmbeddingIndex.load(from: url)) }
    }

    @Test func textRowsAdoptTextIndexAndBothKeepKindsApart() throws {
        let (texts, found) = try imported(.text)
        #expect(texts.kinds.allSatisfy { $0 == .text } && texts.ids == Array(0..<texts.count) && texts.count == 200)
        let written = Self.expected["written_rows"] as! [String: [String: Any]]
        #expect(texts.names[150] == written["150"]!["caption"] as! String)
        #expect(texts.field("image_path", row: 150) == written["150"]!["image_path"] as? String)
        let url = URL(fileURLWithPath: scratch("texts.mmi"))
        try texts.save(to: url)
        try ClipRetrievalFolder.adopt(try #require(found.faissIndex(for: .text)), beside: try EmbeddingIndex.load(from: url))

        let (both, _) = try imported(.both)
        #expect(both.count == 400 && both.ids == Array(0..<400))
        #expect(both.kinds[199] == .image && both.kinds[200] == .text && both.names[200 + 150] == texts.names[150])
        #expect(found.faissIndex(for: .both) == nil)
        let images = both.search(queries, k: 5, kind: .image), textHits = both.search(queries, k: 5, kind: .text)
        #expect(images.allSatisfy { $0.allSatisfy { $0.id < 200 } } && textHits.allSatisfy { $0.allSatisfy { $0.id >= 200 } })
    }

    // MARK: Mismatches and bad files

    /// A copy of the fixture folder to break.
    func copy() throws -> String {
        let dir = scratch("clip")
        try FileManager.default.copyItem(atPath: Self.folder, toPath: dir)
        return dir
    }

    @Test func partitionsThatDisagreeNameBothFiles() throws {
        let dir = try copy()
        let meta = dir + "/embeddings/metadata"
        try FileManager.default.removeItem(atPath: meta + "/metadata_01.parquet")
        try FileManager.default.copyItem(atPath: meta + "/metadata_00.parquet", toPath: meta + "/metadata_01.parquet")
        let error = try #require(throws: EvalError.self) { _ = try imported(.image, folders: [dir]) }
        #expect(
            "\(error)"
                == "\(dir)/embeddings/img_emb/img_emb_01.npy: holds 70 rows but \(meta)/metadata_01.parquet holds 80: the row counts disagree")

        try FileManager.default.removeItem(atPath: dir + "/embeddings/img_emb/img_emb_02.npy")
        let totals = try #require(throws: EvalError.self) { _ = try imported(.image, folders: [dir]) }
        #expect("\(totals)".contains("holds 150 rows in 2 files but the metadata holds 210 in 3"), "\(totals)")
    }

    @Test func aFaissIndexOfOtherRowsIsRefused() throws {
        let (index, found) = try imported(.image)
        let partial = EmbeddingIndex(
            modelFingerprint: index.modelFingerprint, names: Array(index.names.prefix(120)),
            embeddings: index.embeddings(rows: Array(0..<120)))
        let url = URL(fileURLWithPath: scratch("partial.mmi"))
        try partial.save(to: url)
        let error = try #require(throws: EvalError.self) {
            try ClipRetrievalFolder.adopt(found.imageIndex!, beside: try EmbeddingIndex.load(from: url))
        }
        #expect("\(error)".hasSuffix("image.index: holds 200 rows of dimension 16, the embeddings 120 of 16"), "\(error)")
        #expect(!FileManager.default.fileExists(atPath: url.path + ".ann"))
    }

    @Test func badEmbeddingFilesAreOneErrorNamingThem() throws {
        let dir = try copy()
        let npy = dir + "/embeddings/img_emb/img_emb_01.npy"
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: npy)))
        var integers = bytes
        let descr = try #require((0..<64).first { Array(bytes[$0..<($0 + 3)]) == Array("<f2".utf8) })
        integers.replaceSubrange((descr + 1)..<(descr + 3), with: Array("i8".utf8))
        for (broken, message) in [
            (Array(bytes.prefix(bytes.count - 2)), "needs 2240 bytes of values, the file has 2238"),
            (Array(bytes.prefix(5)), "not a .npy file"),
            (integers, "embeddings must be float16 or float32")
        ] {
            try Data(broken).write(to: URL(fileURLWithPath: npy))
            let error = try #require(throws: EvalError.self) { _ = try imported(.image, folders: [dir]) }
            #expect("\(error)".hasPrefix(npy + ": ") && "\(error)".contains(message), "\(error)")
        }
        let parquet = dir + "/embeddings/metadata/metadata_02.parquet"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: parquet))
        try Data(bytes).write(to: URL(fileURLWithPath: npy))
        let error = try #require(throws: DataError.self) { _ = try imported(.image, folders: [dir]) }
        #expect("\(error)" == "\(parquet): not a Parquet file (no PAR1 magic at both ends)")
    }
}
