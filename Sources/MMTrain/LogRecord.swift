import Foundation

/// One line of a run's `log.jsonl`. Step lines carry no `event` field; the others name theirs
/// (`epoch`, `skipped`, `skipped_line`, `resumed`). Field names are stable: tools read them.
public enum LogRecord: Codable, Equatable, Sendable {
    case step(Step)
    case epoch(Epoch)
    /// An image the loader could not use (replaced by the next sample of the stream).
    case skipped(Skipped)
    /// A malformed manifest line left out (with skipping of bad lines on).
    case skippedLine(SkippedLine)
    /// The run continued from its latest checkpoint.
    case resumed(Resumed)
    /// Settings the training data chose when the run started (`DataDefaults`).
    case defaults(Defaults)

    /// One optimizer step.
    public struct Step: Codable, Equatable, Sendable {
        public var step: Int
        public var epoch: Int
        /// The objective before the update (over the global batch on several ranks).
        public var loss: Double
        public var lr: Double
        /// e^{logit_scale}, the temperature's inverse.
        public var logitScale: Double
        public var samplesPerSecond: Double
        /// Share of the step's wall time spent in collectives (several ranks only).
        public var communicationShare: Double?
        /// Seconds the step waited for the loader, and the step's whole wall time.
        public var dataWaitSeconds: Double?
        public var stepSeconds: Double?

        public init(
            step: Int, epoch: Int, loss: Double, lr: Double, logitScale: Double, samplesPerSecond: Double,
            communicationShare: Double? = nil, dataWaitSeconds: Double? = nil, stepSeconds: Double? = nil
        ) {
            (self.step, self.epoch, self.loss, self.lr) = (step, epoch, loss, lr)
            (self.logitScale, self.samplesPerSecond, self.communicationShare) = (logitScale, samplesPerSecond, communicationShare)
            (self.dataWaitSeconds, self.stepSeconds) = (dataWaitSeconds, stepSeconds)
        }

        enum CodingKeys: String, CodingKey {
            case step, epoch, loss, lr
            case logitScale = "logit_scale", samplesPerSecond = "samples_per_s", communicationShare = "communication_share"
            case dataWaitSeconds = "data_wait_seconds", stepSeconds = "step_seconds"
        }
    }

    /// The end of an epoch (or of a time budget): validation and zero-shot results when asked for.
    public struct Epoch: Codable, Equatable, Sendable {
        /// Epochs done (1-based).
        public var epoch: Int
        public var step: Int
        /// Training seconds so far (loading and steps; no validation or checkpoints).
        public var trainSeconds: Double
        public var valLoss: Double?
        public var imageToTextR1: Double?, imageToTextR5: Double?, imageToTextR10: Double?
        public var textToImageR1: Double?, textToImageR5: Double?, textToImageR10: Double?
        public var zeroshotTop1: Double?, zeroshotTop5: Double?
        /// True when the step limit or the time budget ended the epoch early (a resume continues it).
        public var partial: Bool?
        /// True when the validation loss is the lowest so far (these weights are `checkpoints/best`).
        public var best: Bool?
        /// True when early stopping ends the run here (`TrainingOptions.patience`).
        public var stoppedEarly: Bool?

        public init(epoch: Int, step: Int, trainSeconds: Double) {
            self.epoch = epoch
            self.step = step
            self.trainSeconds = trainSeconds
        }

        enum CodingKeys: String, CodingKey {
            case epoch, step, trainSeconds = "train_seconds", valLoss = "val_loss"
            case imageToTextR1 = "image_to_text_R@1", imageToTextR5 = "image_to_text_R@5", imageToTextR10 = "image_to_text_R@10"
            case textToImageR1 = "text_to_image_R@1", textToImageR5 = "text_to_image_R@5", textToImageR10 = "text_to_image_R@10"
            case zeroshotTop1 = "zeroshot_top1", zeroshotTop5 = "zeroshot_top5", partial, best, stoppedEarly = "stopped_early"
        }
    }

    public struct Skipped: Codable, Equatable, Sendable {
        public var path: String
        public var reason: String
        public var step: Int
        public init(path: String, reason: String, step: Int) { (self.path, self.reason, self.step) = (path, reason, step) }
    }

    public struct SkippedLine: Codable, Equatable, Sendable {
        public var file: String
        public var line: Int
        public var reason: String
        public init(file: String, line: Int, reason: String) { (self.file, self.line, self.reason) = (file, line, reason) }
    }

    public struct Resumed: Codable, Equatable, Sendable {
        public var step: Int
        public var epoch: Int
        /// Settings given on resuming that replace the saved ones ("lr 0.001 → 0.0005").
        public var changes: [String]?
        public init(step: Int, epoch: Int, changes: [String]? = nil) { (self.step, self.epoch, self.changes) = (step, epoch, changes) }
    }

    public struct Defaults: Codable, Equatable, Sendable {
        /// How the data was judged ("small data (6,016 pairs, 6 % repeated captions)").
        public var reason: String
        /// The values chosen ("model mm-small", "batch 64", …).
        public var chosen: [String]
    }

    enum EventKey: String, CodingKey { case event }

    public init(from decoder: Decoder) throws {
        let event = try decoder.container(keyedBy: EventKey.self).decodeIfPresent(String.self, forKey: .event)
        switch event {
        case nil: self = .step(try Step(from: decoder))
        case "epoch": self = .epoch(try Epoch(from: decoder))
        case "skipped": self = .skipped(try Skipped(from: decoder))
        case "skipped_line": self = .skippedLine(try SkippedLine(from: decoder))
        case "resumed": self = .resumed(try Resumed(from: decoder))
        case "defaults": self = .defaults(try Defaults(from: decoder))
        case let other?:
            throw DecodingError.dataCorrupted(.init(codingPath: [EventKey.event], debugDescription: "unknown event \(other)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: EventKey.self)
        switch self {
        case .step(let r): try r.encode(to: encoder)
        case .epoch(let r): try container.encode("epoch", forKey: .event); try r.encode(to: encoder)
        case .skipped(let r): try container.encode("skipped", forKey: .event); try r.encode(to: encoder)
        case .skippedLine(let r): try container.encode("skipped_line", forKey: .event); try r.encode(to: encoder)
        case .resumed(let r): try container.encode("resumed", forKey: .event); try r.encode(to: encoder)
        case .defaults(let r): try container.encode("defaults", forKey: .event); try r.encode(to: encoder)
        }
    }

    /// The step this record was written at (nil for lines about the manifest).
    public var step: Int? {
        switch self {
        case .step(let r): return r.step
        case .epoch(let r): return r.step
        case .skipped(let r): return r.step
        case .resumed(let r): return r.step
        case .skippedLine, .defaults: return nil
        }
    }

    /// One JSON object, keys sorted, no newline.
    public var jsonLine: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! e.encode(self), as: UTF8.self)
    }
}
