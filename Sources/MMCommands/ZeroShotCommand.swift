import ArgumentParser
import Foundation
import MMCLIP
import MMEval

/// `mm zeroshot`: classify images against free-text labels.
struct ZeroShotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zeroshot",
        abstract: "Classify images against free-text labels (zero-shot).",
        discussion: """
            Each label is embedded through every prompt template (open_clip's ensembling: each \
            template × synonym embedded and normalised, averaged, renormalised); an image's \
            probabilities are the softmax of 100 · image · labels. A labels line may give synonyms \
            as `car|automobile`; repeated labels are reported and dropped. Folders are searched \
            recursively for .jpg, .jpeg and .png files. Unreadable images are reported and skipped \
            (exit status 1).

            The label embeddings are cached in ~/.cache/mm/zeroshot (or $XDG_CACHE_HOME/mm/zeroshot, \
            or $MM_CACHE_DIR/zeroshot), keyed by the model's weights (a hash of their bits), the \
            tokenizer, the labels and the templates, and checked when read, so a second call \
            only embeds the images.

              mm zeroshot -c model.safetensors --labels labels.txt photo.jpg photos/
              mm zeroshot -c model.safetensors --labels labels.txt --templates simple -k 3 --json *.jpg
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Labels file: one class per line, `a|b` for synonyms.")
    var labels: String

    @Argument(help: "Image files or folders.")
    var images: [String]

    @Option(help: "Prompt templates: openai (80), simple (7), none, or a file with one template per line ({} = label).")
    var templates = "openai"

    @Option(name: .short, help: "Labels to show per image.")
    var k = 5

    @Flag(help: "One JSON object per image: {\"image\", \"labels\": [{\"label\", \"probability\"}…]}.")
    var json = false

    @Flag(help: "Neither read nor write the label-embedding cache.")
    var noCache = false

    @Option(help: "Images per forward pass.")
    var batchSize = 32

    func validate() throws {
        try OptionBounds.check(k, "-k", OptionBounds.k)
        try OptionBounds.check(batchSize, "--batch-size", OptionBounds.batchSize)
    }

    func run() throws {
        let classes = try readClassNames(labels).classes
        let prompts = try PromptTemplates.named(templates)
        let (paths, missing) = collectImages(images)
        guard !paths.isEmpty else { throw CommandError("no images to classify") }
        let embedder = try modelOptions.embedder()
        let classifier = try zeroShotClassifier(
            embedder.model, embedder.tokenizer, options: modelOptions, classes: classes, templates: prompts, useCache: !noCache)
        let images = embedImageFiles(embedder, paths, batchSize: batchSize)
        try requireFiniteEmbeddings(images.embeddings, names: images.paths, checkpoint: modelOptions.checkpoint)
        let top = classifier.predictions(images.embeddings, k: k)
        for (path, labels) in zip(images.paths, top) {
            if json {
                let labels: [[String: Any]] = labels.map { ["label": $0.label, "probability": $0.probability] }
                let data = try JSONSerialization.data(
                    withJSONObject: ["image": path, "labels": labels], options: [.sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(path)
                for p in labels { print("  " + String(format: "%6.2f%%", p.probability * 100) + "  " + p.label) }
            }
        }
        if missing > 0 || !images.failures.isEmpty { throw ExitCode(1) }
    }
}
