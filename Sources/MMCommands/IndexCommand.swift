import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMEval

/// `mm index`: embed a gallery of images into an index file for `mm search`.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Build a retrieval index of image embeddings.",
        subcommands: [Build.self, Add.self, Export.self, Bench.self]
    )

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "build",
            abstract: "Embed images (files or folders, searched for .jpg/.jpeg/.png/.webp) into an index file.",
            discussion: """
                The index records the model's fingerprint (a hash of its weights), so searching it \
                with another model is refused. It is checked on reading (magic, version, checksum).

                  mm index build photos/ -o gallery.mmi -c model.safetensors
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @Argument(help: "Image files or folders, or WebDataset shards (rows named by __key__).") var paths: [String]
        @Option(name: [.short, .long], help: "Index file to write.") var output: String
        @Option(help: "Images per forward pass.") var batchSize = 32
        @OptionGroup(title: "WebDataset shards") var shardOptions: ShardOptions

        func run() throws {
            if paths.count == 1 && ShardURLs.looksLikeShards(paths[0]) {
                let embedder = try modelOptions.embedder()
                let samples = try ShardEmbeddings(embedder, try shardOptions.open(paths[0]), batchSize: batchSize)
                let index = EmbeddingIndex(modelFingerprint: embedder.fingerprint, names: samples.keys, embeddings: samples.embeddings,
                                           modified: samples.keys.map { _ in -1 })
                do { try index.save(to: URL(fileURLWithPath: output)) } catch {
                    throw CommandError("\(output): cannot write the index (\(error.localizedDescription))")
                }
                warn("indexed \(index.count) shard samples → \(output)")
                if samples.skipped > 0 { throw ExitCode(1) }
                return
            }
            let (files, missing) = collectImages(paths)
            guard !files.isEmpty else { throw CommandError("no images to index") }
            let embedder = try modelOptions.embedder()
            let images = embedImageFiles(embedder, files, batchSize: batchSize)
            guard !images.paths.isEmpty else { throw CommandError("none of the \(files.count) images could be read") }
            let index = EmbeddingIndex(modelFingerprint: embedder.fingerprint, names: images.paths, embeddings: images.embeddings,
                                       modified: images.paths.map(modificationTime))
            do { try index.save(to: URL(fileURLWithPath: output)) } catch {
                throw CommandError("\(output): cannot write the index (\(error.localizedDescription))")
            }
            warn("indexed \(index.count) images → \(output)")
            if missing > 0 || !images.failures.isEmpty { throw ExitCode(1) }
        }
    }
}

extension IndexCommand {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Add images to an index; files already there and unchanged (same modification time) are not re-embedded.",
            discussion: """
                  mm index add gallery.mmi new_photos/ -c model.safetensors
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @Argument(help: "Index file to update.") var index: String
        @Argument(help: "Image files or folders.") var paths: [String]
        @Option(help: "Images per forward pass.") var batchSize = 32

        func run() throws {
            let url = URL(fileURLWithPath: index)
            var gallery = try EmbeddingIndex.load(from: url)
            let (files, missing) = collectImages(paths)
            let embedder = try modelOptions.embedder()
            try gallery.requireModel(embedder.fingerprint)
            var row: [String: Int] = [:]
            for (i, name) in gallery.names.enumerated() { row[name] = i }
            // Rows to (re-)embed: new files and files changed since they were embedded.
            let stale = files.filter { path in
                guard let i = row[path], let times = gallery.modified else { return true }
                return times[i] != modificationTime(path)
            }
            let images = embedImageFiles(embedder, stale, batchSize: batchSize)
            gallery.add(names: images.paths, embeddings: images.embeddings, modified: images.paths.map(modificationTime))
            do { try gallery.save(to: url) } catch { throw CommandError("\(index): cannot write the index (\(error.localizedDescription))") }
            warn("embedded \(images.paths.count) new or changed images, \(files.count - stale.count) unchanged; \(gallery.count) in \(index)")
            if missing > 0 || !images.failures.isEmpty { throw ExitCode(1) }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write an index's embeddings as a float32 .npy of [N, D] and OUT.txt with one path per row.",
            discussion: """
                  mm index export gallery.mmi -o gallery.npy    # numpy: np.load("gallery.npy")
                """
        )

        @Argument(help: "Index file.") var index: String
        @Option(name: [.short, .long], help: "The .npy to write.") var output: String

        func run() throws {
            let gallery = try EmbeddingIndex.load(from: URL(fileURLWithPath: index))
            try writeNPY(gallery.embeddings.scalars, shape: gallery.embeddings.shape, to: output)
            try (gallery.names.joined(separator: "\n") + "\n").write(toFile: output + ".txt", atomically: true, encoding: .utf8)
        }
    }
}

extension IndexCommand {
    /// Timing of exact search on random unit vectors, for tools/bench/bench_search.py.
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench", abstract: "Time exact search over random embeddings (prints JSON).", shouldDisplay: false)

        @Option var rows = 1_000_000
        @Option var dim = 512
        @Option var queries = 100
        @Option(name: .short) var k = 10
        @Option var runs = 3
        @Option(help: "Save the index to this file and search it memory-mapped (the file is removed after).") var mapped: String?

        func run() throws {
            var g = SeededGenerator(seed: 1)
            let gallery = Tensor.zeros([rows, dim]), query = Tensor.zeros([queries, dim])
            gallery.fillNormal(std: 1, using: &g)
            query.fillNormal(std: 1, using: &g)
            var index = EmbeddingIndex(modelFingerprint: "bench", names: [String](repeating: "", count: rows),
                                       embeddings: withoutGradients { gallery.l2Normalized() })
            if let mapped {
                let url = URL(fileURLWithPath: mapped)
                try index.save(to: url)
                defer { try? FileManager.default.removeItem(at: url) }
                index = try EmbeddingIndex.load(from: url)
            }
            let q = withoutGradients { query.l2Normalized() }
            _ = index.search(q, k: k)  // warm-up
            var times: [Double] = []
            for _ in 0..<max(1, runs) {
                let t = DispatchTime.now().uptimeNanoseconds
                _ = index.search(q, k: k)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9)
            }
            try printJSON(["rows": rows, "dim": dim, "queries": queries, "k": k, "threads": Threads.count, "mapped": mapped != nil,
                           "seconds": times.sorted()[times.count / 2]])
        }
    }
}

/// A file's modification time in seconds since 1970 (−1 when unknown).
func modificationTime(_ path: String) -> Double {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
}

/// `mm search`: the gallery images closest to a text or an image.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search an index by text or by image (exact cosine search).",
        discussion: """
              mm search gallery.mmi -c model.safetensors --text "a red circle" -k 5
              mm search gallery.mmi -c model.safetensors --image query.jpg --json
            """
    )

    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "Index file made by `mm index build`.") var index: String
    @Option(help: "Text query.") var text: String?
    @Option(help: "Image query.") var image: String?
    @Option(name: .short, help: "Results to show.") var k = 10
    @Flag(help: "One JSON object: {\"query\", \"results\": [{\"path\", \"score\"}…]}.") var json = false

    func validate() throws {
        if (text == nil) == (image == nil) { throw ValidationError("give either --text or --image") }
        guard k >= 1 else { throw ValidationError("-k must be at least 1") }
    }

    func run() throws {
        let gallery = try EmbeddingIndex.load(from: URL(fileURLWithPath: index))
        let embedder = try modelOptions.embedder()
        let results = try text.map { try embedder.search(gallery, text: $0, k: k) } ?? embedder.search(gallery, imageFile: image!, k: k)
        if json {
            try printJSON(["query": text ?? image!, "results": results.map { ["path": $0.name, "score": Double($0.score)] }])
        } else {
            for r in results { print(String(format: "%.4f  ", r.score) + r.name) }
        }
    }
}
