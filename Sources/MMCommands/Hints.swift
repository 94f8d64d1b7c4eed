import ArgumentParser
import MMData
import MMEval
import MMTrain

// The libraries' errors say what went wrong and where; the command line adds what to do about
// it here, in the options a user can pass.

/// `error` as the one line `mm` prints, with a hint where an option or command helps;
/// ArgumentParser's own errors and exit codes pass through unchanged.
func withHint(_ error: Error) -> Error {
    switch error {
    case let e as TrainingError: return CommandError(explain(e))
    case let e as DataError: return CommandError(explain(e))
    case let e as EvalError: return CommandError(explain(e))
    default: return error
    }
}

/// One line for a training error, with what to do about it on the command line.
func explain(_ error: TrainingError) -> String {
    switch error {
    case .invalidOption(let name, _, _):
        let flag = [
            "epochs": "--epochs", "steps": "--steps", "batch size": "--batch-size", "accumulation frequency": "--accum-freq",
            "learning rate": "--lr", "weight decay": "--wd", "warm-up": "--warmup", "gradient clip": "--grad-clip",
            "time budget": "--max-minutes", "queue size": "--queue", "momentum": "--momentum",
            "image self-supervision": "--image-ssl", "text self-supervision": "--text-ssl", "text dropout": "--text-dropout",
            "SSL temperature": "--ssl-temperature", "SimCSE temperature": "--simcse-temperature", "SSL weight": "--ssl-weight",
            "labels": "--labels-key", "separator": "--separator", "workers": "--workers",
            "cached image features": "--cache-image-features"
        ][name]
        return flag.map { "\($0): \(error)" } ?? "\(error)"
    case .runFolderNotEmpty: return "\(error); continue it with --resume, or start over with --overwrite"
    case .batchNotDivisible(_, let global, _): return "\(error); resume with a rank count dividing \(global)"
    case .tooFewBatches: return "\(error); lower --batch-size or --accum-freq"
    case .diverged(_, _, let lastGood):
        return "\(error). Try \(lastGood != nil ? "--resume RUN with " : "")a lower --lr, or --grad-clip 1"
    case .missingLogitBias: return "\(error); use --loss clip or a SigLIP checkpoint"
    case .manifestChanged: return "\(error); resume with the original file, or start a new run"
    default: return "\(error)"
    }
}

/// One line for a data error, naming the option that helps.
func explain(_ error: DataError) -> String {
    switch error {
    case .badLine: return "\(error); fix the line or pass --skip-bad to skip and count bad lines"
    case .missingColumn(_, _, let role, _): return "\(error); pass --\(role)-key naming one of them, or add a header line"
    case .noCaptions: return "\(error); pass --caption-key"
    case .noLabelColumn: return "\(error); pass --label-key naming it"
    case .batchLargerThanData(_, let samples): return "\(error); use a batch of at most \(samples)"
    default: return "\(error)"
    }
}

/// One line for an evaluation error, naming the command that helps.
func explain(_ error: EvalError) -> String {
    switch error {
    case .staleApproximateIndex: return "\(error); rebuild it with --ann"
    case .badClipRetrieval("img_emb", _): return "\(error); --rows text imports the text embeddings"
    default: return "\(error)"
    }
}
