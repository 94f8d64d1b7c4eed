import Foundation
import MMCLIP
import MMEval
import MMTokenizer
import MMTrain

// Usage: TrainFromSwift [MM_ROOT] — trains mm-tiny for 5 steps on MM_ROOT/datasets/shapes
// into a temporary run folder, then zero-shot classifies one test image with the result.
let root = URL(fileURLWithPath: CommandLine.arguments.dropFirst().first ?? "../..")
let shapes = root.appendingPathComponent("datasets/shapes")
let folder = FileManager.default.temporaryDirectory.appendingPathComponent("train-from-swift-\(getpid())")

var training = TrainingOptions()
training.epochs = 1
training.maxSteps = 5
training.batchSize = 16
training.warmup = 2
training.learningRate = 1e-3
let configuration = RunConfiguration(data: .init(pairs: shapes.appendingPathComponent("train.tsv").path), training: training)

do {
    let run = try TrainingRun(configuration, folder: folder)
    run.trainer.showsProgress = false
    run.trainer.afterStep = { trainer in print("step \(trainer.position.step)") }
    _ = try run.train()
    for case .step(let s) in run.folder.readLog() { print("step \(s.step): loss \(String(format: "%.4f", s.loss))") }

    // The epoch checkpoint is a plain open_clip-layout model.
    let loaded = try CLIPModel.load(from: run.trainer.lastEpochCheckpoint!)
    let tokenizer = Tokenizer(vocabulary: try Vocabulary.clip(), contextLength: loaded.model.config.text.contextLength)
    let classes = [["red circle"], ["blue square"], ["green triangle"]]
    let classifier = ZeroShotClassifier(model: loaded.model, tokenizer: tokenizer, classes: classes, templates: ["a photo of a {}."])
    let embedder = Embedder(model: loaded.model, preprocessing: loaded.preprocessing, tokenizer: tokenizer)
    let image = shapes.appendingPathComponent("images/test/000000.jpg").path
    let embedded = embedder.embed(imageFiles: [image], batchSize: 1)
    print("\(image): most like \(classes[classifier.ranking(embedded.embeddings)[0][0]][0])")
    try? FileManager.default.removeItem(at: folder)
} catch {
    FileHandle.standardError.write(Data("TrainFromSwift: \(error)\n".utf8))
    exit(1)
}
