import Foundation

/// What can stop a training run, as typed cases for the caller to tell apart. Descriptions say
/// what happened and where; they give no command-line advice (the CLI adds its hints).
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// A configuration value no run can use.
    case invalidOption(name: String, value: String, rule: String)
    /// The folder holds no run configuration.
    case notARunFolder(path: String)
    /// The run folder already holds a run (and neither resuming nor overwriting was asked for).
    case runFolderNotEmpty(path: String)
    /// A run's JSON file cannot be read or decoded.
    case unreadableFile(path: String, reason: String)
    /// A resumed run's global batch does not split over this many ranks.
    case batchNotDivisible(run: String, globalBatch: Int, ranks: Int)
    /// The vocabulary has more tokens than the pretrained text tower's embedding.
    case vocabularyTooLarge(tokens: Int, checkpoint: String, towerTokens: Int)
    /// The sigmoid loss needs a model with logit_bias.
    case missingLogitBias(checkpoint: String)
    /// Fewer full batches than one optimizer step takes.
    case tooFewBatches(batches: Int, batchSize: Int, accumFreq: Int)
    /// The loss became non-finite; the last good checkpoint (if any) is kept.
    case diverged(loss: Float, step: Int, lastGood: String?)
    /// The validation manifest gave no batch.
    case emptyValidation
    /// A checkpoint that cannot continue this run (no position, missing optimizer state, other options' modules).
    case stateMismatch(file: String, detail: String)
    /// A resumed run's training manifest no longer holds the samples the run started with.
    case manifestChanged(path: String, saved: String, now: String)

    public var description: String {
        switch self {
        case let .invalidOption(name, value, rule): return "\(name) must be \(rule), got \(value)"
        case let .notARunFolder(path): return "\(path) is not a training run folder (no run.json or options.json)"
        case let .runFolderNotEmpty(path): return "\(path) already holds a training run"
        case let .unreadableFile(path, reason): return "\(path): \(reason)"
        case let .batchNotDivisible(run, global, ranks):
            return "\(run) trains with a global batch of \(global) pairs, which \(ranks) ranks cannot share evenly"
        case let .vocabularyTooLarge(tokens, checkpoint, towerTokens):
            return "the vocabulary has \(tokens) tokens but \(checkpoint)'s text tower has \(towerTokens)"
        case let .missingLogitBias(checkpoint): return "\(checkpoint) has no logit_bias, which the sigmoid loss needs"
        case let .tooFewBatches(batches, batchSize, accumFreq):
            return "the training set has \(batches) full batches of \(batchSize), fewer than one optimizer step (accumulation \(accumFreq))"
        case let .diverged(loss, step, lastGood):
            return "loss became \(loss) at step \(step)" + (lastGood.map { "; the last good checkpoint \($0) is kept" } ?? "")
        case .emptyValidation: return "the validation set produced no batches"
        case let .stateMismatch(file, detail): return "\(file): \(detail)"
        case let .manifestChanged(path, saved, now):
            return "\(path) has changed since the run started (\(saved) then, \(now) now)"
        }
    }
}
