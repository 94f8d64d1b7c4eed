import Foundation
import MMCLIP
import MMData
import MMEval
import MMImage
import MMTokenizer

// Helpers shared by the commands that classify, evaluate or index images.

/// Class names, one per line; `a|b` gives synonyms of one class. Blank lines are ignored;
/// a repeated class is reported and dropped.
func readClassNames(_ path: String) throws -> [[String]] {
    let labels = try ClassLabels(contentsOf: path)
    for d in labels.duplicates { warn("\(path):\(d.line): label '\(d.name)' appears again; ignored") }
    return labels.classes
}

/// The class index of each sample's label column.
func classIndices(_ manifest: Manifest, _ classes: [[String]], file: String) throws -> [Int] {
    var index: [String: Int] = [:]
    for (i, names) in classes.enumerated() { for n in names where index[n.lowercased()] == nil { index[n.lowercased()] = i } }
    guard let labels = manifest.labels else { throw CommandError("\(file): no label column") }
    return try labels.enumerated().map { row, label in
        guard let i = index[label.lowercased()] else {
            throw CommandError("\(file):\(manifest.lines[row]): label '\(label)' is not in the labels file")
        }
        return i
    }
}

/// Normalised image embeddings of a manifest's images (eval transform) and the manifest rows
/// they belong to (unreadable images are left out).
func embedImages(_ model: CLIPModel, _ manifest: Manifest, size: Int, normalization: Normalization,
                 threads: Int) throws -> (Tensor, [Int]) {
    let loader = try PairLoader(evaluating: manifest, batchSize: 64, transform: .eval(size: size, normalization: normalization),
                                tokenizer: nil, threads: threads)
    var parts: [Tensor] = [], rows: [Int] = []
    while let b = try loader.next() {
        parts.append(withoutGradients { model.encodeImage(b.images) })
        rows += b.indices
    }
    guard !parts.isEmpty else { throw CommandError("\(manifest.path): no readable images") }
    return (Tensor.concatenate(parts, axis: 0), rows)
}

/// Normalised embeddings of the image files that could be read; each unreadable one is reported.
func embedImageFiles(_ embedder: Embedder, _ paths: [String], batchSize: Int = 32) -> ImageEmbeddings {
    let result = embedder.embed(imageFiles: paths, batchSize: batchSize)
    for f in result.failures { warn("skipped \(f.error)") }
    return result
}

/// Image files named on the command line: files as given, folders searched recursively for
/// .jpg/.jpeg/.png/.webp (sorted). Missing paths are reported; `missing` counts them.
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
        guard isFolder.boolValue else { paths.append(argument); continue }
        let root = URL(fileURLWithPath: argument)
        var found: [String] = []
        if let walker = fm.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) {
            for case let url as URL in walker where extensions.contains(url.pathExtension.lowercased()) {
                found.append(url.path)
            }
        }
        if found.isEmpty { warn("\(argument): no .jpg, .jpeg or .png files in this folder") }
        paths += found.sorted()
    }
    return (paths, missing)
}

/// The zero-shot classifier for these classes and templates: read from the on-disk cache when
/// this model, tokenizer, classes and templates were seen before, else built and cached.
func zeroShotClassifier(_ model: CLIPModel, _ tokenizer: Tokenizer, options: ModelOptions, classes: [[String]],
                        templates: [String], useCache: Bool) -> ZeroShotClassifier {
    let cache = ClassifierCache()
    let entry = cache.entry(checkpoint: options.checkpoint, tokenizer: "\(options.vocab ?? "default")|\(options.model ?? "")",
                            classes: classes, templates: templates)
    if useCache, let cached = cache.read(entry, classNames: classes.map { $0[0] }) {
        warn("using cached label embeddings \(entry.path)")
        return cached
    }
    let prompts = classes.reduce(0) { $0 + $1.count } * templates.count
    warn("embedding \(classes.count) labels × \(templates.count) templates (\(prompts) prompts)…")
    let classifier = ZeroShotClassifier(model: model, tokenizer: tokenizer, classes: classes, templates: templates)
    if useCache {
        do {
            try cache.write(classifier, to: entry)
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
