import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMEval
import MMFoundation

/// `mm index`: embed a gallery of images (and texts) into an index file for `mm search` and `mm serve`.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Build a retrieval index of image (and text) embeddings.",
        subcommands: [Build.self, Add.self, Ann.self, Import.self, Export.self, Bench.self]
    )

    /// Images per forward pass, shared by build and add.
    struct Batching: ParsableArguments {
        @Option(help: "Images per forward pass (1…4096).") var batchSize = 32

        func validate() throws {
            guard (1...4096).contains(batchSize) else { throw ValidationError("--batch-size must be 1…4096, got \(batchSize)") }
        }
    }

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "build",
            abstract: "Embed images (files or folders, searched for .jpg/.jpeg/.png/.webp, or WebDataset shards) and texts into an index file.",
            discussion: """
                The index records the model's fingerprint (a hash of its weights), so searching it \
                with another model is refused. It is checked on reading (magic, version, checksum).
                Rows get stable integer ids; image paths are stored absolute.

                  mm index build photos/ -o gallery.mmi -c model.safetensors
                  mm index build -c model.safetensors --captions test.tsv -o gallery.mmi     # images + captions from a manifest
                  mm index build photos/ --captions captions.tsv --texts captions.txt --ann hnsw -o gallery.mmi

                --captions reads a TSV/CSV with a header (as `mm train` manifests): the image column \
                (--image-key, default filepath; relative to the file), the caption column (--caption-key, \
                default title), and every other column, all kept as row metadata. With no image \
                arguments, the captions file's images are indexed.
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @Argument(help: "Image files or folders, or WebDataset shards (rows named by __key__, captions kept).") var paths: [String] = []
        @Option(name: [.short, .long], help: "Index file to write.") var output: String
        @OptionGroup var batching: Batching
        @Option(help: "Captions and metadata: a TSV/CSV with a header naming the image column.") var captions: String?
        @Option(help: "Image column of --captions.") var imageKey = "filepath"
        @Option(help: "Caption column of --captions.") var captionKey = "title"
        @Option(help: "Texts to index as text rows, one per line (for text→text and image→text search).") var texts: String?
        @Option(help: "Also build an approximate index beside the file: ivf, ivf-pq, hnsw or pq-scan.") var ann: ApproximateIndex.Kind?
        @OptionGroup var annOptions: AnnOptions
        @OptionGroup(title: "WebDataset shards") var shardOptions: ShardOptions

        func validate() throws {
            guard !paths.isEmpty || captions != nil || texts != nil else { throw ValidationError("give images, --captions or --texts") }
        }

        func run() throws {
            if paths.count == 1 && ShardURLs.looksLikeShards(paths[0]) { return try buildFromShards(paths[0]) }
            let metadata = try captions.map { try CaptionsFile(path: $0, imageKey: imageKey, captionKey: captionKey) }
            let (files, missing) = paths.isEmpty ? (metadata?.images ?? [], 0) : collectImages(paths)
            let textRows = try texts.map(readTextRows) ?? []
            guard !files.isEmpty || !textRows.isEmpty else { throw CommandError("no images or texts to index") }
            let embedder = try modelOptions.embedder()
            let images = embedImageFiles(embedder, files.map(canonicalPath), batchSize: batching.batchSize)
            guard !images.paths.isEmpty || files.isEmpty else { throw CommandError("none of the \(files.count) images could be read") }
            var index = EmbeddingIndex(
                modelFingerprint: embedder.fingerprint, names: images.paths, embeddings: images.embeddings,
                modified: images.paths.map(modificationTime),
                columns: metadata?.columns ?? [], metadata: metadata.map { m in images.paths.map { m.row(for: $0) } })
            if !textRows.isEmpty {
                index.add(names: textRows, embeddings: embedder.embed(texts: textRows), modified: textRows.map { _ in -1 }, kind: .text)
            }
            let url = URL(fileURLWithPath: output)
            do { try index.save(to: url) } catch {
                throw CommandError("\(output): cannot write the index (\(error))")
            }
            warn("indexed \(images.paths.count) images and \(textRows.count) texts → \(output)")
            if let ann {
                try annOptions.build(beside: url, kind: ann)
            } else {
                removeStaleApproximate(url)
            }
            if missing > 0 || !images.failures.isEmpty { throw ExitCode(1) }
        }

        /// Shard samples as image rows named by `__key__`, their captions as the `caption` column.
        func buildFromShards(_ spec: String) throws {
            let embedder = try modelOptions.embedder()
            let samples = try embedShards(embedder, try shardOptions.open(spec), batchSize: batching.batchSize)
            let index = EmbeddingIndex(
                modelFingerprint: embedder.fingerprint, names: samples.names, embeddings: samples.embeddings,
                modified: samples.names.map { _ in -1 }, columns: ["caption"], metadata: samples.captions.map { [$0] })
            let url = URL(fileURLWithPath: output)
            do { try index.save(to: url) } catch { throw CommandError("\(output): cannot write the index (\(error))") }
            warn("indexed \(index.count) shard samples → \(output)")
            if let ann {
                try annOptions.build(beside: url, kind: ann)
            } else {
                removeStaleApproximate(url)
            }
            if !samples.skipped.isEmpty { throw ExitCode(1) }
        }
    }
}

/// The search settings of an approximate index, fixed when it is built (recorded in its `.ann.json`).
struct AnnOptions: ParsableArguments {
    @Option(help: "IVF lists scanned per query (ivf, ivf-pq; default 1/64 of the lists, at least 8).") var nprobe: Int?
    @Option(help: "Graph search breadth (hnsw; default \(ApproximateIndex.defaultEfSearch)).") var efSearch: Int?
    @Option(
        help:
            "Candidates per wanted result re-scored exactly (ivf-pq, hnsw: default \(ApproximateIndex.defaultCandidatesPerResult); pq-scan: default \(ApproximateIndex.defaultCandidates(.pqScan)) with this CPU's \(ApproximateIndex.defaultScanBits)-bit codes, its search breadth)."
    )
    var candidates: Int?
    @Option(
        help: ArgumentHelp(
            "Bits per code of pq-scan: 6 (64 centroids per 4 dimensions) or 4 (16 per 2).",
            discussion:
                "Default 6 on CPUs with AVX-512 VBMI (its byte permutes scan them), else 4. Both take 128 bytes a 512-d row; 6-bit codes scan batches of queries about 1.6× faster and lone queries a little slower (docs/serve.md)."
        ))
    var pqBits: Int?

    func validate() throws {
        if let nprobe, !(1...65_536).contains(nprobe) { throw ValidationError("--nprobe must be 1…65536") }
        if let efSearch, !(1...65_536).contains(efSearch) { throw ValidationError("--ef-search must be 1…65536") }
        if let candidates, !(1...1000).contains(candidates) { throw ValidationError("--candidates must be 1…1000") }
        if let pqBits, pqBits != 4 && pqBits != 6 { throw ValidationError("--pq-bits must be 4 or 6") }
    }

    func build(beside url: URL, kind: ApproximateIndex.Kind) throws {
        try buildApproximate(url, kind: kind, nprobe: nprobe, efSearch: efSearch, candidates: candidates, pqBits: pqBits)
    }
}

/// Builds (or rebuilds) the approximate index beside a saved index file.
func buildApproximate(_ url: URL, kind: ApproximateIndex.Kind, nprobe: Int?, efSearch: Int?, candidates: Int?, pqBits: Int?) throws {
    let index = try EmbeddingIndex.load(from: url)
    let built = try ApproximateIndex.build(
        index, kind: kind, nprobe: nprobe, efSearch: efSearch, candidatesPerResult: candidates, pqBits: pqBits)
    try built.save(beside: url)
    if let reason = built.slowScanReason { warn("\(url.path).ann: \(reason)") }
    let note = index.count < ApproximateIndex.exactBelowRows ? " (searches stay exact below \(ApproximateIndex.exactBelowRows) rows)" : ""
    warn(
        "approximate index \(built.info.factory) over \(index.count) rows in \(String(format: "%.1f", built.info.buildSeconds ?? 0)) s → \(url.path).ann\(note)"
    )
}

/// An approximate index left from an earlier version of this file would be refused as stale: remove it.
func removeStaleApproximate(_ url: URL) {
    let (faiss, info) = ApproximateIndex.files(beside: url)
    for f in [faiss, info] where FileManager.default.fileExists(atPath: f.path) {
        try? FileManager.default.removeItem(at: f)
        warn("removed \(f.path) (built from the previous index)")
    }
}

/// Text rows: one per non-empty line (LF, CRLF or CR).
func readTextRows(_ path: String) throws -> [String] {
    let text: String?
    do { text = try ReadableFile(path, maxSize: 1 << 30).readText() } catch let error as FileError { throw CommandError(error.description) }
    guard let text else { throw CommandError("\(path): not UTF-8 text") }
    let rows = Text.lines(text).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !rows.isEmpty else { throw CommandError("\(path): no texts") }
    return rows
}

/// A captions file: a manifest (TSV/CSV with a header) whose image column names files and whose
/// other columns are kept as row metadata; the caption column is stored as `caption`.
struct CaptionsFile {
    let columns: [String]
    let images: [String]
    private let rows: [String: [String]]

    init(path: String, imageKey: String, captionKey: String) throws {
        let head: Manifest
        do { head = try Manifest(path: path, options: .init(imageKey: imageKey, captionKey: nil)) } catch { throw CommandError("\(error)") }
        guard head.hasHeader else { throw CommandError("\(path): needs a header line naming its columns") }
        let others = head.columns.filter { $0 != imageKey }
        // The manifest reader keeps one extra column per pass: read the file once per column.
        var values: [[String]] = []
        for column in others {
            let m: Manifest
            do { m = try Manifest(path: path, options: .init(imageKey: imageKey, captionKey: nil, labelKey: column)) } catch {
                throw CommandError("\(error)")
            }
            values.append(Array(m.labels!))
        }
        columns = others.map { $0 == captionKey ? "caption" : $0 }
        images = head.images.map(canonicalPath)
        var rows: [String: [String]] = [:]
        for (r, image) in images.enumerated() where rows[image] == nil { rows[image] = values.map { $0[r] } }
        self.rows = rows
        if !head.badLines.isEmpty { for b in head.badLines { warn("\(path): \(b)") } }
    }

    /// The metadata of an image (absolute path); empty values when the file does not list it.
    func row(for image: String) -> [String] { rows[image] ?? Array(repeating: "", count: columns.count) }
}

extension IndexCommand {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Add images to an index; files already there and unchanged (same modification time) are not re-embedded.",
            discussion: """
                An approximate index beside the file is rebuilt.

                  mm index add gallery.mmi new_photos/ -c model.safetensors
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @Argument(help: "Index file to update.") var index: String
        @Argument(help: "Image files or folders.") var paths: [String]
        @OptionGroup var batching: Batching

        func run() throws {
            let url = URL(fileURLWithPath: index)
            var gallery = try EmbeddingIndex.load(from: url)
            let approximate = try? ApproximateIndex.load(beside: gallery)
            let (files, missing) = collectImages(paths)
            let embedder = try modelOptions.embedder()
            try gallery.requireModel(embedder.fingerprint, dimension: embedder.model.config.embedDim)
            var row: [String: Int] = [:]
            for (i, name) in gallery.names.enumerated() where gallery.kinds[i] == .image { row[name] = i }
            // Rows to (re-)embed: new files and files changed since they were embedded (names as
            // stored: absolute for indexes built by this version, as given for older ones).
            let stale = files.map { row[$0] != nil ? $0 : canonicalPath($0) }.filter { path in
                guard let i = row[path], let times = gallery.modified else { return true }
                return times[i] != modificationTime(path)
            }
            let images = embedImageFiles(embedder, stale, batchSize: batching.batchSize)
            gallery.add(names: images.paths, embeddings: images.embeddings, modified: images.paths.map(modificationTime))
            do { try gallery.save(to: url) } catch { throw CommandError("\(index): cannot write the index (\(error))") }
            warn("embedded \(images.paths.count) new or changed images, \(files.count - stale.count) unchanged; \(gallery.count) in \(index)")
            if let info = approximate?.info, info.kind != .adopted {
                try buildApproximate(
                    url, kind: info.kind, nprobe: info.nprobe, efSearch: info.efSearch, candidates: info.candidatesPerResult,
                    pqBits: info.scanBits)
            } else {
                removeStaleApproximate(url)
            }
            if missing > 0 || !images.failures.isEmpty { throw ExitCode(1) }
        }
    }

    struct Ann: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ann",
            abstract: "Build an approximate index beside an index file: ivf, ivf-pq, hnsw (faiss) or pq-scan.",
            discussion: """
                ivf scans the rows of the lists nearest the query; pq-scan scans 4-bit codes of every \
                row and re-scores the best --candidates per result (for data where lists cannot prune).

                  mm index ann gallery.mmi --kind ivf      # writes gallery.mmi.ann and gallery.mmi.ann.json
                  mm index ann gallery.mmi --kind pq-scan --candidates 100
                """
        )

        @Argument(help: "Index file.") var index: String
        @Option(help: "ivf, ivf-pq, hnsw or pq-scan.") var kind: ApproximateIndex.Kind
        @OptionGroup var annOptions: AnnOptions

        func run() throws {
            try annOptions.build(beside: URL(fileURLWithPath: index), kind: kind)
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write an index's embeddings as a float32 .npy of [N, D] and OUT.txt with one name per row.",
            discussion: """
                  mm index export gallery.mmi -o gallery.npy    # numpy: np.load("gallery.npy")
                """
        )

        @Argument(help: "Index file.") var index: String
        @Option(name: [.short, .long], help: "The .npy to write.") var output: String

        func run() throws {
            // Neither output may replace the index it is read from.
            for target in [output, output + ".txt"] where sameFile(target, index) {
                throw CommandError("\(target): is the index being exported; choose another output name")
            }
            let gallery = try EmbeddingIndex.load(from: URL(fileURLWithPath: index))
            try writeNPY(gallery.embeddings.scalars, shape: gallery.embeddings.shape, to: output)
            try writeNames(gallery.names, to: output + ".txt")
        }
    }
}

/// Whether two paths name the same file (same device and inode, or the same standardised path).
func sameFile(_ a: String, _ b: String) -> Bool {
    var sa = stat(), sb = stat()
    if stat(a, &sa) == 0, stat(b, &sb) == 0 { return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino }
    return canonicalPath(a) == canonicalPath(b)
}

/// The kinds mm builds (an adopted index comes from another tool).
extension ApproximateIndex.Kind: ExpressibleByArgument {
    public init?(argument: String) {
        guard let kind = Self(rawValue: argument), Self.buildable.contains(kind) else { return nil }
        self = kind
    }

    public static var allValueStrings: [String] { buildable.map(\.rawValue) }
}

extension IndexCommand {
    /// Exact search timed on random unit vectors (tools/bench/bench_search.py), and approximate
    /// search against it (tools/serve/bench_ann.sh): recall@k, queries/s of both in batches and one
    /// query at a time, build time and memory, for each search breadth on one build.
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench", abstract: "Time exact (and approximate) search over random embeddings or an index file (prints JSON).",
            shouldDisplay: false)

        @Option var rows = 1_000_000
        @Option var dim = 512
        @Option(help: "Queries searched in one batch.") var queries = 100
        @Option(help: "Of those, how many are also searched one at a time.") var singleQueries = 0
        @Option(name: .short) var k = 10
        @Option var runs = 3
        @Option(help: "Save the index to this file and search it memory-mapped (the file is removed after).") var mapped: String?
        @Flag(help: "Keep the --mapped file (a gallery of random rows for serving benchmarks).") var keep = false
        @Option(help: "Model fingerprint recorded in the --mapped file (a model's, to serve it with that model).") var fingerprint = "bench"
        @Option(help: "Also build this approximate index over the rows (needs --mapped or --index) and compare.") var ann: ApproximateIndex.Kind?
        @Option(help: "Bench this index file instead of random rows; queries mix two random rows.") var index: String?
        @Option(parsing: .upToNextOption, help: "nprobe (IVF), efSearch (HNSW) or candidates per result (pq-scan) measured on the one build.")
        var breadth: [Int] = []
        @Option var candidates: Int?
        @Option(help: "Dimensions per sub-quantiser of pq-scan.") var pqDims: Int?
        @Option(help: "Bits per code of pq-scan: 4 or 6.") var pqBits: Int?

        func run() throws {
            var g = SeededGenerator(seed: 1)
            var gallery: EmbeddingIndex
            var file: URL?
            let query: Tensor
            if let index {
                gallery = try EmbeddingIndex.load(from: URL(fileURLWithPath: index))
                let a = gallery.embeddings(rows: (0..<queries).map { _ in Int.random(in: 0..<gallery.count, using: &g) })
                let b = gallery.embeddings(rows: (0..<queries).map { _ in Int.random(in: 0..<gallery.count, using: &g) })
                query = withoutGradients { (a + b).l2Normalized() }
            } else {
                let rowsTensor = Tensor.zeros([rows, dim]), q = Tensor.zeros([queries, dim])
                rowsTensor.fillNormal(std: 1, using: &g)
                q.fillNormal(std: 1, using: &g)
                gallery = EmbeddingIndex(
                    modelFingerprint: fingerprint, names: [String](repeating: "", count: rows),
                    embeddings: withoutGradients { rowsTensor.l2Normalized() })
                query = withoutGradients { q.l2Normalized() }
                if let mapped {
                    file = URL(fileURLWithPath: mapped)
                    try gallery.save(to: file!)
                    gallery = try EmbeddingIndex.load(from: file!)
                }
            }
            defer {
                if let file, !keep {
                    for f in [file.path, file.path + ".ann", file.path + ".ann.json"] { try? FileManager.default.removeItem(atPath: f) }
                }
            }
            // Median wall and CPU seconds (all threads) of `a` and of `b`, run in turn `runs` times so
            // that both see the same load; CPU time is what the machine's other load disturbs least.
            func inTurn(_ a: () throws -> Void, _ b: () throws -> Void) rethrows -> (wall: (Double, Double), cpu: (Double, Double)) {
                var wall: ([Double], [Double]) = ([], []), cpu: ([Double], [Double]) = ([], [])
                func clock(_ body: () throws -> Void) rethrows -> (Double, Double) {
                    let t = DispatchTime.now().uptimeNanoseconds, c = cpuSeconds()
                    try body()
                    return (Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9, cpuSeconds() - c)
                }
                for _ in 0..<max(1, runs) {
                    let (wa, ca) = try clock(a), (wb, cb) = try clock(b)
                    wall.0.append(wa)
                    wall.1.append(wb)
                    cpu.0.append(ca)
                    cpu.1.append(cb)
                }
                func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
                return ((median(wall.0), median(wall.1)), (median(cpu.0), median(cpu.1)))
            }
            // One query at a time, as a lone client's request is served.
            let singles = (0..<min(singleQueries, queries)).map { i in
                Tensor(shape: [1, query.shape[1]], values: Array(UnsafeBufferPointer(start: query.data + i * query.shape[1], count: query.shape[1])))
            }
            var built: ApproximateIndex?, before = 0.0, after = 0.0
            if let ann {
                guard file != nil || index != nil else { throw ValidationError("--ann needs --mapped or --index") }
                before = residentMB()
                built = try ApproximateIndex.build(
                    gallery, kind: ann, nprobe: breadth.first, efSearch: breadth.first,
                    candidatesPerResult: ann == .pqScan ? breadth.first ?? candidates : candidates, pqDimensions: pqDims,
                    pqBits: pqBits)
                after = residentMB()
                // Saved (to measure its size) beside the temporary file only, never beside a user's index.
                if let file { try built!.save(beside: file) }
            }
            let exact = gallery.search(query, k: k)  // also the warm-up
            var report: [String: Any] = [
                "rows": gallery.count, "dim": gallery.dimension, "queries": queries, "k": k, "threads": Threads.count,
                "mapped": mapped != nil || index != nil
            ]
            guard let built else {
                let seconds = inTurn({ _ = gallery.search(query, k: k) }, {}).wall.0
                report.merge(["seconds": seconds, "exact_queries_per_s": Double(queries) / seconds]) { $1 }
                return try printJSON(report)
            }
            // For each breadth: exact and approximate search timed in turn, in a batch and one by one.
            var points: [[String: Any]] = []
            for b in breadth.isEmpty ? [nil] : breadth.map(Optional.some) {
                if let b { try built.tune(breadth: b) }
                let found = try gallery.search(query, k: k, approximate: built)
                let batch = try inTurn({ _ = gallery.search(query, k: k) }, { _ = try gallery.search(query, k: k, approximate: built) })
                let one = try inTurn(
                    { for q in singles { _ = gallery.search(q, k: k) } }, { for q in singles { _ = try gallery.search(q, k: k, approximate: built) } }
                )
                // Hits by row, and counting a result whose exact score ties the k-th best as a hit
                // (rows with equal embeddings, e.g. repeated captions, are interchangeable).
                let hits = zip(exact, found).map { Set($0.map(\.index)).intersection($1.map(\.index)).count }.reduce(0, +)
                let tied = zip(exact, found).map { e, f in f.filter { $0.score >= (e.last?.score ?? .infinity) - 1e-5 }.count }.reduce(0, +)
                var point: [String: Any] = [
                    "candidates_per_result": built.info.candidatesPerResult,
                    "recall_at_k": Double(hits) / Double(queries * k), "recall_at_k_ties": Double(tied) / Double(queries * k),
                    "exact_queries_per_s": Double(queries) / batch.wall.0, "ann_queries_per_s": Double(queries) / batch.wall.1,
                    "speedup": batch.wall.0 / batch.wall.1, "cpu_speedup": batch.cpu.0 / batch.cpu.1,
                    "exact_cpu_ms_per_query": batch.cpu.0 * 1000 / Double(queries), "ann_cpu_ms_per_query": batch.cpu.1 * 1000 / Double(queries)
                ]
                if !singles.isEmpty {
                    point.merge([
                        "exact_single_queries_per_s": Double(singles.count) / one.wall.0,
                        "ann_single_queries_per_s": Double(singles.count) / one.wall.1,
                        "single_speedup": one.wall.0 / one.wall.1, "single_cpu_speedup": one.cpu.0 / one.cpu.1
                    ]) { $1 }
                }
                if let nprobe = built.info.nprobe { point["nprobe"] = nprobe }
                if let efSearch = built.info.efSearch { point["ef_search"] = efSearch }
                points.append(point)
            }
            let annBytes = file.flatMap { try? FileManager.default.attributesOfItem(atPath: $0.path + ".ann")[.size] as? Int } ?? -1
            report.merge([
                "ann": built.info.factory, "build_seconds": built.info.buildSeconds ?? -1, "ann_file_mb": Double(annBytes) / 1e6,
                "rss_before_build_mb": before, "rss_after_build_mb": after, "peak_rss_mb": peakResidentMB(), "points": points
            ]) { $1 }
            try printJSON(report)
        }
    }
}

/// This process's resident memory now (from /proc/self/statm) and at its peak (getrusage), MB.
func residentMB() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
        let pages = Double(text.split(separator: " ").dropFirst().first ?? "")
    else { return -1 }
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1e6
}

/// CPU seconds this process has used, all threads, user and system.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
    return user + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

func peakResidentMB() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// A file's modification time in seconds since 1970 (−1 when unknown).
func modificationTime(_ path: String) -> Double {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
}

/// `mm search`: the gallery images closest to a text or an image.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search an index by text or by image (cosine; through the approximate index when one is beside the file).",
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
    @Option(help: "Rows to search: image or text (default: all).") var modality: EmbeddingIndex.RowKind?
    @Flag(help: "Search every row exactly even when an approximate index is beside the file.") var exact = false
    @Flag(help: "One JSON object: {\"query\", \"results\": [{\"id\", \"path\", \"score\"}…]}.") var json = false

    func validate() throws {
        if (text == nil) == (image == nil) { throw ValidationError("give either --text or --image") }
        guard (1...100_000).contains(k) else { throw ValidationError("-k must be 1…100000") }
    }

    func run() throws {
        let gallery = try EmbeddingIndex.load(from: URL(fileURLWithPath: index))
        let approximate = exact ? nil : try ApproximateIndex.load(beside: gallery)
        if let reason = approximate?.slowScanReason { warn("\(index).ann: \(reason)") }
        let embedder = try modelOptions.embedder()
        let results =
            try text.map { try embedder.search(gallery, text: $0, k: k, kind: modality, approximate: approximate) }
            ?? embedder.search(gallery, imageFile: image!, k: k, kind: modality, approximate: approximate)
        if json {
            try printJSON([
                "query": text ?? image!, "results": results.map { ["id": $0.id, "path": $0.name, "score": Double($0.score)] as [String: Any] }
            ])
        } else {
            for r in results { print(String(format: "%.4f  ", r.score) + r.name) }
        }
    }
}

extension EmbeddingIndex.RowKind: ExpressibleByArgument {}
