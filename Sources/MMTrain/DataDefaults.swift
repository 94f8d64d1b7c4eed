import Foundation

/// The settings a run chooses from its training data when it starts, so that a run with no
/// options learns small data well and large data as open_clip's recipe does (issue 17). A pure
/// function of the number of training pairs; `TrainingRun` applies it once and saves the result
/// in the run's configuration, so a resumed run continues with the same values.
///
/// The rule (N = training pairs, t = where N lies between 10,000 and 100,000 pairs on a log
/// scale, clamped to [0, 1]):
/// - model: `mm-small-rn` below 30,000 pairs (a small ResNet image tower: convolutions learn
///   shapes from a few thousand images where a ViT of the same cost does not), `mm-tiny` from
///   there on;
/// - global batch 64·2ᵗ (64 → 128, a multiple of 8): more, smaller steps when the data is small;
/// - epochs: as many as bring the run near `smallDataSamples` samples seen, between 10 (today's)
///   and 35 (`maxEpochs`);
/// - peak learning rate from `smallLearningRate` to 5e-4 (geometrically in t);
/// - warm-up: `warmupFraction` of the run's steps, at most 100 steps (today's fixed value, which
///   was longer than a whole small run);
/// - weight decay 0.2 (open_clip's) at every size;
/// - below 100,000 pairs, when the run's length is left to the data (no epochs or steps given),
///   early stopping: without a validation manifest, `heldOutShare` of the
///   images (10 %, at most `maxHeldOutPairs` pairs; none below `minPairsToHoldOut` pairs) are
///   kept out of training as validation, and the run ends when the validation loss has not
///   improved for `patience` epochs. The best epoch's weights are kept (`checkpoints/best`):
///   a small set overfits at a length no rule of N predicts (digits peaks at epoch 12–14 of 35,
///   shapes still improves at 33).
/// From 100,000 pairs on every value is today's open_clip-like one (`TrainingOptions()`).
/// Multi-positive targets for repeated captions are not a default: with the plain objective
/// they change nothing (identical captions give identical text embeddings, so their columns
/// carry equal logits, and the loss and its gradient are the plain InfoNCE's — measured bitwise
/// equal on the digits set, where every caption repeats).
public struct DataDefaults: Codable, Sendable, Equatable {
    /// A setting the data may choose (each one the user did not set).
    public enum Setting: String, Codable, Sendable, CaseIterable {
        case model, batchSize = "batch_size", epochs, learningRate = "lr", warmup, weightDecay = "wd"
        case holdOut = "hold_out", patience
    }

    /// Training pairs the values were chosen for.
    public var pairs: Int
    public var model: String
    /// The global batch (all ranks together).
    public var batchSize: Int
    public var epochs: Int
    public var learningRate: Float
    /// Warm-up as a share of the run's steps (at most `maxWarmup` steps).
    public var warmupFraction: Double
    public var weightDecay: Float
    /// The share of the images held out as validation when no validation manifest is given (nil:
    /// none; optional as it is absent from runs of earlier versions).
    public var heldOutShare: Double?
    /// Epochs without a better validation loss before the run ends (nil: never).
    public var patience: Int?

    public static let smallPairs = 10_000.0, largePairs = 100_000.0
    public static let smallModelBelow = 30_000
    public static let smallDataSamples = 200_000
    public static let smallLearningRate: Float = 1e-3
    public static let maxWarmup = 100
    /// Past about 35 epochs the ResNet overfits a small set (digits, 1,256 pairs: 91 % after 25
    /// epochs, 81 % after 50; docs/training.md, "Third pass").
    public static let maxEpochs = 35
    public static let earlyStoppingPatience = 5
    public static let minPairsToHoldOut = 1_000, maxHeldOutPairs = 2_000

    /// The values for `pairs` training pairs.
    public init(pairs: Int) {
        let large = TrainingOptions()
        let t = min(max(Foundation.log(Double(max(pairs, 1)) / Self.smallPairs) / Foundation.log(Self.largePairs / Self.smallPairs), 0), 1)
        self.pairs = pairs
        model = pairs < Self.smallModelBelow ? "mm-small-rn" : "mm-tiny"
        batchSize = 8 * Int((Double(large.batchSize / 16) * Foundation.pow(2, t)).rounded())
        epochs = min(max(Int((Double(Self.smallDataSamples) / Double(max(pairs, 1))).rounded()), large.epochs), Self.maxEpochs)
        learningRate = Float(Double(Self.smallLearningRate) * Foundation.pow(Double(large.learningRate / Self.smallLearningRate), t))
        warmupFraction = 0.05
        weightDecay = large.weightDecay
        let small = Double(pairs) < Self.largePairs
        heldOutShare = small && pairs >= Self.minPairsToHoldOut ? min(0.1, Double(Self.maxHeldOutPairs) / Double(pairs)) : nil
        patience = small ? Self.earlyStoppingPatience : nil
    }

    /// Warm-up steps of a run of `totalSteps` steps.
    public func warmupSteps(totalSteps: Int) -> Int { min(Self.maxWarmup, Int((warmupFraction * Double(totalSteps)).rounded())) }

    /// How the data was judged, for the log: "small data (6,016 pairs)".
    public var reason: String {
        let kind = pairs < Int(Self.smallPairs) ? "small" : pairs < Int(Self.largePairs) ? "mid-size" : "large"
        return "\(kind) data (\(pairs.formatted()) pairs)"
    }
}

extension RunConfiguration {
    /// Sets each setting of `fromData` from `defaults` (the batch per rank: the global batch over
    /// `ranks`, rounded up) and records what was chosen; returns the values set, as logged
    /// ("model mm-small", "batch 64", …). Settings outside `fromData` keep their values.
    public mutating func choose(_ defaults: DataDefaults, ranks: Int) -> [String] {
        var said: [String] = []
        let chosen = fromData
        if chosen.contains(.model) && model.pretrained == nil && model.name == nil {
            model.name = defaults.model
            said.append("model \(defaults.model)")
        }
        if chosen.contains(.batchSize) {
            training.batchSize = max(2, (defaults.batchSize + ranks - 1) / ranks)
            said.append("batch \(training.batchSize * ranks)")
        }
        if chosen.contains(.epochs) {
            training.epochs = defaults.epochs
            said.append("\(defaults.epochs) epochs")
        }
        if chosen.contains(.learningRate) {
            training.learningRate = defaults.learningRate
            said.append("lr \(defaults.learningRate)")
        }
        if chosen.contains(.weightDecay) {
            training.weightDecay = defaults.weightDecay
            said.append("wd \(defaults.weightDecay)")
        }
        if chosen.contains(.warmup) {
            let perStep = training.batchSize * ranks * training.accumFreq
            let total = min(training.epochs * max(defaults.pairs / perStep, 1), training.maxSteps ?? .max)
            training.warmup = defaults.warmupSteps(totalSteps: total)
            said.append("warm-up \(training.warmup) steps (\(Int(defaults.warmupFraction * 100)) %, at most \(DataDefaults.maxWarmup))")
        }
        // Early stopping is part of choosing the run's length (a length given is kept), and needs
        // validation: a manifest given, or a share of a manifest's images held out.
        let length = chosen.contains(.epochs) && training.maxSteps == nil
        if length, chosen.contains(.holdOut), data.val == nil, data.shards == nil, let share = defaults.heldOutShare {
            data.holdOut = share
            said.append("validation: \(String(format: "%.3g", share * 100)) % of the images held out")
        }
        let validated = data.val != nil || (data.holdOut ?? 0) > 0
        if length, chosen.contains(.patience), let patience = defaults.patience, validated {
            training.patience = patience
            said.append("early stopping after \(patience) epochs without a better validation loss")
        }
        fromData = []
        dataDefaults = defaults
        return said
    }
}
