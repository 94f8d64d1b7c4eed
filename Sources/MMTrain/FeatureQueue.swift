import Foundation
import MMCLIP

/// MoCo's queue of negatives, one per modality: a ring buffer of the K most recent momentum
/// features (unit rows, [K, D]) with their multi-positive keys. `enqueue` writes at `pointer`
/// and wraps around, overwriting the oldest rows; until it is full only the first `count` rows
/// are in use. Its whole state round-trips through a checkpoint (`tensors` / `metadata`).
public final class FeatureQueue {
    public let capacity: Int
    public let dimension: Int
    public let image: Tensor
    public let text: Tensor
    /// Keys of the queued samples (caption hash; label or −1).
    public private(set) var captionKeys: [Int64]
    public private(set) var labelKeys: [Int64]
    /// The row the next enqueued sample goes to.
    public private(set) var pointer = 0
    /// Rows filled so far (≤ capacity).
    public private(set) var count = 0

    public init(capacity: Int, dimension: Int) {
        precondition(capacity > 0 && dimension > 0, "queue of \(capacity) × \(dimension)")
        self.capacity = capacity
        self.dimension = dimension
        image = .zeros([capacity, dimension])
        text = .zeros([capacity, dimension])
        captionKeys = [Int64](repeating: -1, count: capacity)
        labelKeys = [Int64](repeating: -1, count: capacity)
    }

    /// Appends the rows of `image` and `text` ([B, D]) in order; with B > capacity only the
    /// last `capacity` rows remain, as if enqueued one by one.
    public func enqueue(image newImage: Tensor, text newText: Tensor, keys: PositiveKeys) {
        precondition(
            newImage.shape == newText.shape && newImage.rank == 2 && newImage.shape[1] == dimension,
            "enqueue of \(newImage.shape) / \(newText.shape) into a queue of dimension \(dimension)")
        let b = newImage.shape[0]
        precondition(keys.count == b, "\(keys.count) keys for \(b) rows")
        // Rows beyond the capacity would be overwritten within this call: skip them, but move
        // the pointer as if they had been written.
        pointer = (pointer + max(0, b - capacity)) % capacity
        for row in max(0, b - capacity)..<b {
            (image.data + pointer * dimension).update(from: newImage.data + row * dimension, count: dimension)
            (text.data + pointer * dimension).update(from: newText.data + row * dimension, count: dimension)
            captionKeys[pointer] = keys.caption[row]
            labelKeys[pointer] = keys.label?[row] ?? -1
            pointer = (pointer + 1) % capacity
        }
        count = min(capacity, count + b)
    }

    /// The filled rows as extra negatives for the loss (nil while empty).
    public var contents: ContrastiveLoss.Queued? {
        guard count > 0 else { return nil }
        let used = Array(0..<count)
        return ContrastiveLoss.Queued(
            image: count == capacity ? image : image.slice(axis: 0, 0..<count).detached(),
            text: count == capacity ? text : text.slice(axis: 0, 0..<count).detached(),
            keys: PositiveKeys(caption: used.map { captionKeys[$0] }, label: used.map { labelKeys[$0] }))
    }

    // MARK: - Checkpoint state

    struct State: Codable {
        var capacity: Int, dimension: Int, pointer: Int, count: Int
        var captionKeys: [Int64], labelKeys: [Int64]
    }

    static let imageKey = "queue.image", textKey = "queue.text", metadataKey = "feature_queue"

    var tensors: [String: Tensor] { [Self.imageKey: image, Self.textKey: text] }

    /// The bookkeeping beside the two tensors.
    var state: State {
        get {
            State(capacity: capacity, dimension: dimension, pointer: pointer, count: count, captionKeys: captionKeys, labelKeys: labelKeys)
        }
        set {
            precondition(newValue.capacity == capacity && newValue.dimension == dimension, "queue state of another shape")
            (pointer, count, captionKeys, labelKeys) = (newValue.pointer, newValue.count, newValue.captionKeys, newValue.labelKeys)
        }
    }

    var metadata: String { String(decoding: try! JSONEncoder().encode(state), as: UTF8.self) }

    /// Restores the state saved by `tensors` and `metadata`; `source` names the file in errors.
    func restore(tensors: [String: Tensor], metadata: String?, source: String) throws {
        guard let metadata, let state = try? JSONDecoder().decode(State.self, from: Data(metadata.utf8)),
            let savedImage = tensors[Self.imageKey], let savedText = tensors[Self.textKey]
        else {
            throw TrainingError.stateMismatch(
                file: source, detail: "no feature queue (\(Self.imageKey), \(Self.textKey), \(Self.metadataKey)), which this run's queue option needs"
            )
        }
        guard state.capacity == capacity, state.dimension == dimension, savedImage.shape == image.shape, savedText.shape == text.shape,
            state.captionKeys.count == capacity, state.labelKeys.count == capacity,
            (0..<capacity).contains(state.pointer), (0...capacity).contains(state.count)
        else {
            throw TrainingError.stateMismatch(file: source, detail: "its feature queue is \(savedImage.shape), this run's is \(image.shape)")
        }
        image.data.update(from: savedImage.data, count: image.count)
        text.data.update(from: savedText.data, count: text.count)
        captionKeys = state.captionKeys
        labelKeys = state.labelKeys
        pointer = state.pointer
        count = state.count
    }
}
