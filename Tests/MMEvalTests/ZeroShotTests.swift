import Foundation
import MMData
import MMEval
import MMTensor
import MMTestSupport
import Testing

@Suite struct LabelsAndTemplatesTests {
    @Test func labelsWithSynonymsBlankLinesAndDuplicates() throws {
        let text = "car | automobile\n\ncat\nCar\ndog|puppy\ncat\n"
        let labels = try ClassLabels(parsing: Data(text.utf8), file: "labels.txt")
        #expect(labels.classes == [["car", "automobile"], ["cat"], ["dog", "puppy"]])
        #expect(labels.duplicates.map(\.line) == [4, 6])
        #expect(labels.duplicates.map(\.name) == ["Car", "cat"])
    }

    @Test func emptyOrBinaryLabelsAreErrors() {
        #expect(throws: DataError.badLabels(path: "labels.txt", reason: "no labels (one class name per line, a|b for synonyms)")) {
            try ClassLabels(parsing: Data(" \n|\n\n".utf8), file: "labels.txt")
        }
        #expect(throws: DataError.badLabels(path: "x.txt", reason: "not UTF-8")) { try ClassLabels(parsing: Data([0xff, 0xfe, 0x41]), file: "x.txt") }
        #expect(throws: DataError.self) { try ClassLabels(contentsOf: "/nonexistent/labels.txt") }
    }

    /// A labels file that is not names (a NUL inside a line), or that leaves one class (after
    /// duplicates and blank lines), is refused: one class scores every image 100 %.
    @Test func labelsWithControlCharactersOrOneClassAreErrors() {
        #expect(throws: DataError.controlCharacterInLabels(path: "l.txt", line: 2, value: 0)) {
            try ClassLabels(parsing: Data("cat\ncircle\u{0}square\n".utf8), file: "l.txt")
        }
        #expect(throws: DataError.oneClass(path: "l.txt", name: "circle")) {
            try ClassLabels(parsing: Data("circle\ncircle\n\nCircle\n".utf8), file: "l.txt")
        }
        #expect(throws: Never.self) { try ClassLabels(parsing: Data("a\tb\nc\n".utf8), file: "l.txt") }
    }

    @Test func bundledTemplates() throws {
        let openai = try PromptTemplates.named("openai")
        #expect(openai.count == 80)
        #expect(openai.allSatisfy { $0.contains("{}") })
        #expect(openai.first == "a bad photo of a {}.")
        #expect(try PromptTemplates.named("simple") == ZeroShotClassifier.simpleTemplates)
        #expect(try PromptTemplates.named("none") == ["{}"])
    }

    @Test func templateFileErrors() {
        #expect(throws: EvalError.templateWithoutSlot(file: "t.txt", line: 2, template: "a photo")) {
            try PromptTemplates.parse(Data("a {}.\na photo\n".utf8), file: "t.txt")
        }
        #expect(throws: EvalError.self) { try PromptTemplates.parse(Data("\n\n".utf8), file: "t.txt") }
        #expect(throws: EvalError.self) { try PromptTemplates.named("/nonexistent/templates.txt") }
    }
}

@Suite struct ClassifierTests {
    /// Each prompt normalised, averaged per class, renormalised (checked in Double).
    @Test func classWeightsEnsembleLikeOpenCLIP() {
        var g = SeededGenerator(seed: 7)
        let (d, counts) = (6, [3, 1, 2])
        let prompts = g.tensor([counts.reduce(0, +), d], scale: 2, requiresGrad: false)
        let w = ZeroShotClassifier.classWeights(prompts, promptsPerClass: counts)
        #expect(w.shape == [3, d])
        var row = 0
        for (c, n) in counts.enumerated() {
            var mean = [Double](repeating: 0, count: d)
            for r in row..<(row + n) {
                let p = (0..<d).map { Double(prompts.data[r * d + $0]) }
                let norm = p.map { $0 * $0 }.reduce(0, +).squareRoot()
                for j in 0..<d { mean[j] += p[j] / norm / Double(n) }
            }
            row += n
            let norm = mean.map { $0 * $0 }.reduce(0, +).squareRoot()
            for j in 0..<d { #expect(abs(Double(w.data[c * d + j]) - mean[j] / norm) < 1e-6, "class \(c) dim \(j)") }
        }
    }

    @Test func predictionsAreSoftmaxOfHundredTimesCosine() {
        let w = Tensor(shape: [3, 2], values: [1, 0, 0, 1, -1, 0])
        let classifier = ZeroShotClassifier(classNames: ["a", "b", "c"], weights: w)
        let image = Tensor(shape: [1, 2], values: [0.6, 0.8])
        let top = classifier.predictions(image, k: 2)[0]
        #expect(top.map(\.label) == ["b", "a"])
        // logits 60, 80, −60
        let z = exp(60.0 - 80) + 1 + exp(-60.0 - 80)
        #expect(abs(top[0].probability - 1 / z) < 1e-6)
        #expect(abs(top[1].probability - exp(60.0 - 80) / z) < 1e-6)
        #expect(classifier.ranking(image)[0] == [1, 0, 2])
    }

    /// The cache is keyed by the weights' fingerprint, and an entry is used only when its
    /// model, class names, dimension and values (finite unit rows) all check out.
    @Test func labelCacheIsKeyedByWeightsAndValidatedOnRead() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-eval-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cache = ClassifierCache(directory: dir)
        let classes = [["cat"], ["dog", "puppy"]]
        let entry = cache.entry(modelFingerprint: "m1", tokenizer: "clip", classes: classes, templates: ["a {}."])
        #expect(entry != cache.entry(modelFingerprint: "m1", tokenizer: "clip", classes: classes, templates: ["the {}."]))
        #expect(entry != cache.entry(modelFingerprint: "m1", tokenizer: "clip", classes: [["cat"], ["dog"]], templates: ["a {}."]))
        #expect(entry != cache.entry(modelFingerprint: "m2", tokenizer: "clip", classes: classes, templates: ["a {}."]))
        #expect(entry == cache.entry(modelFingerprint: "m1", tokenizer: "clip", classes: classes, templates: ["a {}."]))
        #expect(cache.read(entry, classNames: ["cat", "dog"], modelFingerprint: "m1", dimension: 3) == nil)
        let w = Tensor(shape: [2, 3], values: [1, 0, 0, 0, 0.6, 0.8])
        try cache.write(ZeroShotClassifier(classNames: ["cat", "dog"], weights: w), modelFingerprint: "m1", to: entry)
        let back = try #require(cache.read(entry, classNames: ["cat", "dog"], modelFingerprint: "m1", dimension: 3))
        #expect(back.weights.scalars == w.scalars)
        #expect(cache.read(entry, classNames: ["cat", "wolf"], modelFingerprint: "m1", dimension: 3) == nil)
        #expect(cache.read(entry, classNames: ["dog", "cat"], modelFingerprint: "m1", dimension: 3) == nil, "swapped rows")
        #expect(cache.read(entry, classNames: ["cat", "dog"], modelFingerprint: "m2", dimension: 3) == nil, "another model's entry")
        #expect(cache.read(entry, classNames: ["cat", "dog"], modelFingerprint: "m1", dimension: 4) == nil, "another dimension")
        for bad: [Float] in [[.nan, 0, 0, 0, 0.6, 0.8], [1, 0, 0, 0, 6, 8], [.infinity, 0, 0, 0, 0.6, 0.8]] {
            try cache.write(
                ZeroShotClassifier(classNames: ["cat", "dog"], weights: Tensor(shape: [2, 3], values: bad)), modelFingerprint: "m1", to: entry)
            #expect(cache.read(entry, classNames: ["cat", "dog"], modelFingerprint: "m1", dimension: 3) == nil, "\(bad)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "temporary files left: \(leftovers)")
    }
}

@Suite struct MetricsTests {
    @Test func zeroShotReportCountsAndConfusion() throws {
        // 4 samples, 3 classes.
        let logits = Tensor(
            shape: [4, 3],
            values: [
                3, 1, 0,  // true 0 → 0
                2, 1, 0,  // true 1 → 0 (rank 2)
                0, 0.5, 1,  // true 2 → 2
                0, 1, 2  // true 0 → 2 (rank 3)
            ])
        let r = try ZeroShotReport(logits: logits, truth: [0, 1, 2, 0], classNames: ["a", "b", "c"])
        #expect(r.count == 4)
        #expect(r.top1 == 0.5)
        #expect(r.top5 == 1)
        #expect(r.classes.map(\.support) == [2, 1, 1])
        #expect(r.classes.map(\.recall) == [0.5, 0, 1])
        #expect(abs(r.meanPerClassRecall - 0.5) < 1e-12)
        #expect(r.confusion == [[1, 0, 1], [1, 0, 0], [0, 0, 1]])
        #expect(r.confusionCSV == "true\\predicted,a,b,c\na,1,0,1\nb,1,0,0\nc,0,0,1\n")
    }

    @Test func retrievalRanksWithSeveralCaptionsPerImage() throws {
        // Images on the axes; captions 0,1 of image 0, caption 2 of image 1.
        let images = Tensor(shape: [2, 2], values: [1, 0, 0, 1])
        let texts = Tensor(shape: [3, 2], values: [0.6, 0.8, 1, 0, 0.8, 0.6])
        let m = try RetrievalMetrics(images: images, texts: texts, imageOfText: [0, 0, 1])
        // Image 0: best caption is 1 (score 1), rank 0. Image 1: caption 2 scores 0.6, below 0.8 → rank 1.
        #expect(m.imageToText.recall[1] == 0.5)
        #expect(m.imageToText.meanRank == 1.5)
        // Caption 0: image 1 scores 0.8 > 0.6 → rank 1; caption 1 → 0; caption 2: image 0 scores 0.8 > 0.6 → 1.
        #expect(abs(m.textToImage.recall[1]! - 1.0 / 3) < 1e-12)
        #expect(m.textToImage.medianRank == 2)
    }
}
