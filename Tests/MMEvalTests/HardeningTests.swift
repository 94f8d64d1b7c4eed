import Foundation
import MMData
import MMEval
import MMTensor
import Testing

/// Wrong answers that look right: ties, NaNs, line ends.
@Suite struct HardeningTests {
    /// A model that scores everything alike (zeroed projection, diverged weights) must not rank
    /// its matches first: ties are not wins, as with open_clip's argsort/topk.
    @Test func tiedScoresAreNotWins() throws {
        let same = Tensor(shape: [4, 2], values: [Float](repeating: Float(0.5).squareRoot(), count: 8))
        let m = try RetrievalMetrics(images: same, texts: same, imageOfText: [0, 1, 2, 3])
        #expect(m.imageToText.recall[1] == 0 && m.textToImage.recall[1] == 0)
        #expect(m.imageToText.meanRank == 4 && m.textToImage.meanRank == 4)
        let report = try ZeroShotReport(logits: Tensor.zeros([3, 6]), truth: [0, 1, 5], classNames: (0..<6).map { "c\($0)" })
        #expect(report.top1 == 0 && report.top5 == 0)
        // A single tie with a lower-index class is a loss too; a strict win still counts.
        let r = try ZeroShotReport(logits: Tensor(shape: [2, 2], values: [1, 1, 0, 1]), truth: [1, 1], classNames: ["a", "b"])
        #expect(r.top1 == 0.5)
    }

    /// NaN or infinite embeddings are an error naming the row, never a ranking.
    @Test func nonFiniteEmbeddingsAreRefused() {
        let good = Tensor(shape: [2, 2], values: [1, 0, 0, 1])
        let bad = Tensor(shape: [2, 2], values: [1, 0, .nan, .nan])
        #expect(throws: MetricsError(what: "image embedding", row: 1)) { try RetrievalMetrics(images: bad, texts: good, imageOfText: [0, 1]) }
        #expect(throws: MetricsError(what: "text embedding", row: 1)) { try RetrievalMetrics(images: good, texts: bad, imageOfText: [0, 1]) }
        let inf = Tensor(shape: [1, 2], values: [.infinity, 0])
        #expect(throws: MetricsError.self) { try ZeroShotReport(logits: inf, truth: [0], classNames: ["a", "b"]) }
    }

    /// Labels and templates files split at LF, CRLF and CR alike.
    @Test func labelAndTemplateFilesAcceptEveryLineEnd() throws {
        for end in ["\n", "\r\n", "\r"] {
            let labels = try ClassLabels(parsing: Data(["cat", "dog|puppy", "", "bird"].joined(separator: end).utf8), file: "l.txt")
            #expect(labels.classes == [["cat"], ["dog", "puppy"], ["bird"]], "line end \(Array(end.utf8))")
            let templates = try PromptTemplates.parse(Data(["a {}.", "the {}.", ""].joined(separator: end).utf8), file: "t.txt")
            #expect(templates == ["a {}.", "the {}."], "line end \(Array(end.utf8))")
        }
    }

    /// Reading a labels file refuses what is not a regular file instead of blocking on it.
    @Test func labelFilesMustBeRegularFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-eval-fifo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("labels.txt").path
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(throws: DataError.badLabels(path: fifo, reason: "cannot read the labels file (is a FIFO, not a regular file)")) {
            try ClassLabels(contentsOf: fifo)
        }
        #expect(throws: DataError.badLabels(path: "/dev/zero", reason: "cannot read the labels file (is a character device, not a regular file)")) {
            try ClassLabels(contentsOf: "/dev/zero")
        }
    }
}
