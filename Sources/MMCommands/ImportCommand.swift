import ArgumentParser
import Foundation
import MMEval

extension ClipRetrievalFolder.Rows: ExpressibleByArgument {}

extension IndexCommand {
    /// `mm index import`: a clip-retrieval output folder as an `.mmi` (and its faiss index as the `.ann`).
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Import what clip-retrieval wrote (embeddings, metadata parquet, autofaiss's image.index) as an index file.",
            discussion: """
                Reads the folders `clip-retrieval inference` and `clip-retrieval index` wrote \
                (each folder is searched itself and in embeddings/ and index/, the layout of \
                `clip-retrieval end2end`): img_emb/*.npy, text_emb/*.npy, metadata/*.parquet and \
                image.index / text.index. Rows keep clip-retrieval's order, so a row's id is the id \
                clip-retrieval's back end returns for it. Image rows are named by image_path (else \
                url); every other metadata column (caption, url, …) is kept.

                The matching faiss index (image.index for --rows image, text.index for --rows text) \
                is copied beside the output as OUTPUT.ann, when its row count and dimension match: \
                mm search and mm serve then take candidates from it and re-score them exactly \
                (below \(ApproximateIndex.exactBelowRows) rows searches stay exact). --rows both puts \
                image and text rows in one file (text ids follow the image ids) without a faiss index; \
                build one with `mm index ann`.

                -c names the model the embeddings came from (the same weights, as mm loads them: an \
                open_clip checkpoint or hub folder): its fingerprint is recorded, so that mm search and \
                mm serve embed queries with it.

                  mm index import clip_output/ -c ViT-B-32.safetensors -o laion.mmi
                  mm index import embeddings/ index/ -c model.safetensors --rows text -o captions.mmi
                  mm serve laion.mmi -c ViT-B-32.safetensors
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @Argument(help: "clip-retrieval's output folder, or its embeddings and index folders.") var folders: [String]
        @Option(name: [.short, .long], help: "Index file to write.") var output: String
        @Option(help: "Rows to import: image, text or both.") var rows: ClipRetrievalFolder.Rows = .image

        func run() throws {
            let folder = try ClipRetrievalFolder(folders: folders)
            let embedder = try modelOptions.embedder()
            var notes: [String] = []
            let index = try folder.index(rows: rows, modelFingerprint: embedder.fingerprint, notes: &notes)
            for note in notes { warn("note: \(note)") }
            try index.requireModel(embedder.fingerprint, dimension: embedder.model.config.embedDim)
            try checkModel(embedder, folder)
            let url = URL(fileURLWithPath: output)
            do { try index.save(to: url) } catch { throw CommandError("\(output): cannot write the index (\(error))") }
            removeStaleApproximate(url)
            let kinds = Dictionary(grouping: index.kinds, by: { $0 }).mapValues(\.count)
            warn(
                "imported \(kinds[.image] ?? 0) image and \(kinds[.text] ?? 0) text rows of dimension \(index.dimension) with "
                    + "\(index.columns.count) metadata columns (\(index.columns.joined(separator: ", "))) → \(output)")
            if let faiss = folder.faissIndex(for: rows) {
                try ClipRetrievalFolder.adopt(faiss, beside: try EmbeddingIndex.load(from: url))
                warn("adopted \(faiss) → \(output).ann (candidates re-scored exactly)")
            } else if rows != .both {
                warn("note: no \(rows == .image ? "image" : "text").index found: searches are exact (`mm index ann` builds an approximate index)")
            }
        }

        /// Embeds a few captions again and compares them with the stored text embeddings: the
        /// only way to tell that -c is the model clip-retrieval ran (the dimension alone says little).
        func checkModel(_ embedder: Embedder, _ folder: ClipRetrievalFolder) throws {
            guard let sample = try folder.captionSample(count: 16), !sample.captions.isEmpty else {
                return warn("note: no text embeddings with captions: cannot check that -c is the model that made the embeddings")
            }
            let mine = embedder.embed(texts: sample.captions), d = mine.shape[1]
            guard sample.embeddings.shape[1] == d else {
                throw CommandError("the text embeddings have dimension \(sample.embeddings.shape[1]), the model's \(d)")
            }
            let cosines = (0..<sample.captions.count).map { i -> Double in
                var dot = 0.0, a = 0.0, b = 0.0
                for j in 0..<d {
                    let x = Double(mine.data[i * d + j]), y = Double(sample.embeddings.data[i * d + j])
                    dot += x * y
                    a += x * x
                    b += y * y
                }
                return dot / max((a * b).squareRoot(), 1e-30)
            }
            let least = cosines.min()!
            let line = "the model's embeddings of \(cosines.count) captions against the stored ones: cosine ≥ \(String(format: "%.4f", least))"
            // float16 storage alone keeps the cosine above 0.999; another model lands far below.
            if least < 0.99 { warn("warning: \(line): -c is probably not the model that made these embeddings") } else { warn(line) }
        }
    }
}
