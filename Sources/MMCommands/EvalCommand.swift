import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMEval
import MMFoundation
import MMImage

/// `mm eval`: measure a model on labelled images or image–caption pairs.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure a model: zero-shot accuracy or cross-modal retrieval.",
        subcommands: [ZeroShot.self, Retrieval.self]
    )

    /// The manifest columns shared by both evaluations.
    struct ManifestOptions: ParsableArguments {
        @Option(help: "Image column.") var imageKey = Manifest.Options.defaultImageKey
        @Option(help: "Column separator (default: from the extension, tab for .tsv, comma for .csv).") var separator: String?
        @Flag(help: "Skip malformed manifest lines (reported) instead of stopping.") var skipBad = false
        @Option(help: "Threads decoding images.") var workers = Threads.count

        var separatorCharacter: Character? { separator.map { Character($0 == "\\t" ? "\t" : $0) } }

        func validate() throws { try OptionBounds.check(workers, "--workers", OptionBounds.workers) }
    }

    struct ZeroShot: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "zeroshot",
            abstract: "Zero-shot top-1/top-5 accuracy, per-class recall and confusion matrix on labelled images.",
            discussion: """
                DATA is a TSV/CSV manifest with an image and a label column (default filepath, \
                label); every label must be in the labels file (a line's synonyms match too). \
                Accuracy counts a sample when its class is among the k highest scores, as open_clip.

                  mm eval zeroshot -c model.safetensors --labels labels.txt test_labels.tsv --confusion confusion.csv
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var manifestOptions: ManifestOptions
        @Option(help: "Labels file: one class per line, `a|b` for synonyms.") var labels: String
        @Argument(help: "Manifest of images and their labels.") var data: String
        @Option(help: "Label column.") var labelKey = "label"
        @Option(help: "Prompt templates: openai, simple, none, or a file.") var templates = "openai"
        @Option(help: "Write the confusion matrix (rows: true class, columns: predicted) as CSV, and as an SVG heat map beside it (.csv → .svg).")
        var confusion: String?
        @Flag(help: "Print the results as one JSON object.") var json = false
        @Flag(help: "Neither read nor write the label-embedding cache.") var noCache = false

        /// The heat map beside the CSV: confusion.csv → confusion.svg.
        var confusionPicture: String? {
            confusion.map { $0.lowercased().hasSuffix(".csv") ? String($0.dropLast(4)) + ".svg" : $0 + ".svg" }
        }

        func validate() throws { try manifestOptions.validate() }

        func run() throws {
            let labelsFile = try readClassNames(labels), classes = labelsFile.classes
            let prompts = try PromptTemplates.named(templates)
            let manifest = try Manifest(
                path: data,
                options: Manifest.Options(
                    imageKey: manifestOptions.imageKey, captionKey: nil, labelKey: labelKey,
                    separator: manifestOptions.separatorCharacter, skipBad: manifestOptions.skipBad))
            for bad in manifest.badLines { warn("skipped \(data) \(bad)") }
            let truth = try labelsFile.classIndices(of: manifest)
            let embedder = try modelOptions.embedder()
            let classifier = try zeroShotClassifier(
                embedder.model, embedder.tokenizer, options: modelOptions, classes: classes, templates: prompts, useCache: !noCache)
            let samples = try embedSamples(
                embedder,
                PairLoader(
                    evaluating: manifest, batchSize: 64, transform: embedder.preprocessing.evalTransform, tokenizer: nil,
                    threads: manifestOptions.workers), source: manifest.path)
            guard samples.count > 0 else { throw CommandError("\(manifest.path): no readable images") }
            let (images, rows) = (samples.embeddings, samples.indices)
            if rows.count < manifest.count { warn("skipped \(manifest.count - rows.count) unreadable images") }
            try requireFiniteEmbeddings(images, names: samples.names, checkpoint: modelOptions.checkpoint)
            let report = try ZeroShotReport(logits: classifier.logits(images), truth: rows.map { truth[$0] }, classNames: classifier.classNames)
            if let confusion, let confusionPicture {
                for (file, text) in [(confusion, report.confusionCSV), (confusionPicture, report.confusionSVG)] {
                    do { try AtomicFile.write(text, to: file) } catch let error as FileError {
                        throw CommandError("\(file): cannot write the confusion matrix (\(error.reason))")
                    }
                }
            }
            if json {
                try printJSON([
                    "samples": report.count, "top1": report.top1, "top5": report.top5,
                    "mean_per_class_recall": report.meanPerClassRecall, "skipped": manifest.count - rows.count,
                    "classes": report.classes.map { c -> [String: Any] in
                        let recall: Any = c.recall ?? NSNull(), top5: Any = c.top5 ?? NSNull()
                        return ["name": c.name, "support": c.support, "recall": recall, "top5": top5]
                    }
                ])
            } else {
                print("zero-shot on \(report.count) images, \(classes.count) classes, \(prompts.count) templates")
                print(
                    String(
                        format: "top-1 %.2f%%   top-5 %.2f%%   mean per-class recall %.2f%%", report.top1 * 100, report.top5 * 100,
                        report.meanPerClassRecall * 100))
                let width = max(5, classifier.classNames.map(\.count).max() ?? 0)
                print("\n" + "class".padding(toLength: width, withPad: " ", startingAt: 0) + "  support   recall    top-5")
                for c in report.classes {
                    let recall = c.recall.map { String(format: "%7.2f%%", $0 * 100) } ?? "       —"
                    let top5 = c.top5.map { String(format: "%7.2f%%", $0 * 100) } ?? "       —"
                    let name: String = c.name.padding(toLength: width, withPad: " ", startingAt: 0)
                    let support: String = String(format: "  %7d", c.support)
                    print(name + support + "  " + recall + "  " + top5)
                }
                if let confusion { print("\nconfusion matrix: \(confusion), picture: \(confusionPicture!)") }
            }
            if rows.count < manifest.count || !manifest.badLines.isEmpty { throw ExitCode(1) }
        }
    }

    struct Retrieval: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "retrieval",
            abstract: "Image→text and text→image recall@1/5/10, mean and median rank on image–caption pairs.",
            discussion: """
                PAIRS is a TSV/CSV manifest of images and captions (default columns filepath, \
                title); an image may appear on several lines, once per caption, and is embedded \
                once. Ranks as open_clip's get_clip_metrics: 1 = the match scored highest; an \
                image's match is its best-ranked caption.

                  mm eval retrieval -c model.safetensors test.tsv --json
                """
        )

        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var manifestOptions: ManifestOptions
        @Argument(help: "Manifest of image–caption pairs, or WebDataset shards.") var pairs: String
        @Option(help: "Caption column.") var captionKey = Manifest.Options.defaultCaptionKey
        @Flag(help: "Print the results as one JSON object, with open_clip's metric names.") var json = false
        @OptionGroup(title: "WebDataset shards") var shardOptions: ShardOptions

        func validate() throws { try manifestOptions.validate() }

        func run() throws {
            if ShardURLs.looksLikeShards(pairs) { return try runOnShards() }
            let manifest = try Manifest(
                path: pairs,
                options: Manifest.Options(
                    imageKey: manifestOptions.imageKey, captionKey: captionKey,
                    separator: manifestOptions.separatorCharacter, skipBad: manifestOptions.skipBad))
            for bad in manifest.badLines { warn("skipped \(pairs) \(bad)") }
            guard let captions = manifest.captions, manifest.count > 0 else { throw CommandError("\(pairs): no image–caption pairs") }
            var imageIndex: [String: Int] = [:], uniqueImages: [String] = []
            // One row per file however it is spelled (x.jpg, ./x.jpg): a second spelling would be
            // a distinct candidate scoring exactly like the match.
            let imageOfRow = manifest.images.map { given -> Int in
                let path = canonicalPath(given)
                if let i = imageIndex[path] { return i }
                imageIndex[path] = uniqueImages.count
                uniqueImages.append(path)
                return uniqueImages.count - 1
            }
            let embedder = try modelOptions.embedder()
            let images = embedImageFiles(embedder, uniqueImages)
            guard !images.paths.isEmpty else { throw CommandError("\(pairs): no readable images") }
            // Captions of unreadable images are left out; the rest point at their image's row.
            var rowOfPath: [String: Int] = [:]
            for (r, path) in images.paths.enumerated() { rowOfPath[path] = r }
            let row = uniqueImages.map { rowOfPath[$0] ?? -1 }
            let used = (0..<manifest.count).filter { row[imageOfRow[$0]] >= 0 }
            let texts = embedder.embed(texts: used.map { captions[$0] })
            try requireFiniteEmbeddings(images.embeddings, names: images.paths, checkpoint: modelOptions.checkpoint)
            try requireFiniteEmbeddings(texts, names: used.map { "\(pairs):\(manifest.lines[$0]): caption" }, checkpoint: modelOptions.checkpoint)
            let m = try RetrievalMetrics(images: images.embeddings, texts: texts, imageOfText: used.map { row[imageOfRow[$0]] })
            let kept = images.paths
            let skipped = uniqueImages.count - kept.count
            try report(m, images: kept.count, captions: used.count, skipped: skipped)
            if skipped > 0 || !manifest.badLines.isEmpty { throw ExitCode(1) }
        }
    }
}
