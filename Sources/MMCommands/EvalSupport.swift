import ArgumentParser
import Foundation
import MMCLIP
import MMData
import MMEval
import MMFoundation
import MMImage
import MMTokenizer

// Helpers shared by the commands that classify, evaluate or index images.

/// Refuses embeddings holding NaN or infinity before they are printed, written or ranked,
/// naming the first item (a diverged or corrupted checkpoint gives such embeddings).
func requireFiniteEmbeddings(_ embeddings: Tensor, names: [String], checkpoint: String) throws {
    do { try requireFinite(embeddings, "embedding") } catch let error as MetricsError {
        let name = error.row < names.count ? names[error.row] : "row \(error.row)"
        throw CommandError("\(name): its embedding is not finite (NaN or infinity); the checkpoint \(checkpoint) is broken")
    }
}

/// One spelling per file (`x.jpg`, `./x.jpg` and `/abs/x.jpg` are one image): the absolute,
/// standardised path, so a name stays valid from any working directory.
func canonicalPath(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

/// `paths` canonicalised, each file once (in first-seen order); repeats are reported.
func uniqueFiles(_ paths: [String]) -> [String] {
    var seen = Set<String>(), out: [String] = []
    for p in paths {
        let c = canonicalPath(p)
        if seen.insert(c).inserted { out.append(c) } else { warn("\(p): given more than once; used once") }
    }
    return out
}

/// Writes the names file beside an embeddings/index file: one escaped name a line
/// (`Text.escapedLine`), atomically.
func writeNames(_ names: [String], to path: String) throws {
    do { try AtomicFile.write(names.map { Text.escapedLine($0) + "\n" }.joined(), to: path) } catch let error as FileError {
        throw CommandError(error.description)
    }
}

/// Class names, one per line; `a|b` gives synonyms of one class. Blank lines are ignored;
/// a repeated class is reported and dropped.
func readClassNames(_ path: String) throws -> ClassLabels {
    let labels = try ClassLabels(contentsOf: path)
    for d in labels.duplicates { warn("\(path):\(d.line): label '\(d.name)' appears again; ignored") }
    return labels
}

/// The unit embeddings of every usable sample `loader` gives (an evaluation loader with the
/// embedder's eval transform); each skipped sample is reported (prefixed with `source`).
func embedSamples(_ embedder: Embedder, _ loader: PairLoader, source: String? = nil) throws -> EncodedSamples {
    let samples = try embedder.embed(loader)
    for s in samples.skipped { warn("skipped \(source.map { $0 + " " } ?? "")\(s)") }
    return samples
}

/// Normalised embeddings of the image files that could be read; each unreadable one is reported.
func embedImageFiles(_ embedder: Embedder, _ paths: [String], batchSize: Int = 32) -> ImageEmbeddings {
    let result = embedder.embed(imageFiles: paths, batchSize: batchSize)
    for f in result.failures { warn("skipped \(f.error)") }
    return result
}

/// Image files named on the command line: files as absolute paths, each once; folders searched
/// recursively for .jpg/.jpeg/.png/.webp (sorted). Missing paths and folders without images are
/// reported; `missing` counts them.
func collectImages(_ arguments: [String]) -> (paths: [String], missing: Int) {
    let fm = FileManager.default
    let extensions: Set<String> = ["jpg", "jpeg", "png", "webp"]
    var paths: [String] = [], missing = 0
    for argument in arguments {
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: argument, isDirectory: &isFolder) else {
            warn("skipped \(argument): no such file or folder")
            missing += 1
            continue
        }
        guard isFolder.boolValue else { paths.append(canonicalPath(argument)); continue }
        let root = URL(fileURLWithPath: argument)
        var found: [String] = []
        if let walker = fm.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) {
            for case let url as URL in walker where extensions.contains(url.pathExtension.lowercased()) {
                found.append(url.path)
            }
        }
        if found.isEmpty {
            warn("\(argument): no .jpg, .jpeg or .png files in this folder")
            missing += 1
        }
        paths += found.sorted()
    }
    return (uniqueFiles(paths), missing)
}

/// The zero-shot classifier for these classes and templates: read from the on-disk cache when
/// this model, tokenizer, classes and templates were seen before, else built and cached.
func zeroShotClassifier(
    _ model: CLIPModel, _ tokenizer: Tokenizer, options: ModelOptions, classes: [[String]],
    templates: [String], useCache: Bool
) throws -> ZeroShotClassifier {
    let cache = ClassifierCache()
    let fingerprint = EmbeddingIndex.fingerprint(model)
    var words = FNV1a()
    for token in tokenizer.vocabulary.tokens { words.combine(bytes: token.utf8); words.combine(word: 0x0A) }
    let entry = cache.entry(
        modelFingerprint: fingerprint, tokenizer: "\(FNV1a.hex(words.value))|\(tokenizer.contextLength)",
        classes: classes, templates: templates)
    if useCache, let cached = cache.read(entry, classNames: classes.map { $0[0] }, modelFingerprint: fingerprint, dimension: model.config.embedDim) {
        warn("using cached label embeddings \(entry.path)")
        return cached
    }
    let prompts = classes.reduce(0) { $0 + $1.count } * templates.count
    warn("embedding \(classes.count) labels × \(templates.count) templates (\(prompts) prompts)…")
    let classifier = ZeroShotClassifier(model: model, tokenizer: tokenizer, classes: classes, templates: templates)
    try requireFiniteEmbeddings(classifier.weights, names: classifier.classNames.map { "label '\($0)'" }, checkpoint: options.checkpoint)
    if useCache {
        do {
            try cache.write(classifier, modelFingerprint: fingerprint, to: entry)
            warn("cached label embeddings in \(entry.path)")
        } catch {
            warn("could not cache label embeddings in \(cache.directory.path): \(error)")
        }
    }
    return classifier
}

/// Prints a JSON object on one line (keys sorted, slashes kept).
func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}
