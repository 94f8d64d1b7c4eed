import Foundation
import MMCLIP

/// The processes of a data-parallel run, one per rank. `MMDistributed` provides the MPI one;
/// every call is collective: all ranks make the same calls in the same order.
public protocol ProcessGroup: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Element-wise sum over all ranks, in place.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Every rank's `local` bytes (the same count on all), concatenated in rank order.
    func allGather(_ local: UnsafeRawBufferPointer, into all: UnsafeMutableRawBufferPointer) throws
    /// `all` summed over ranks; this rank keeps its block of `all.count / size` elements.
    func reduceScatterSum(_ all: UnsafeBufferPointer<Float>, into local: UnsafeMutableBufferPointer<Float>) throws
    /// Rank `root`'s bytes, on every rank.
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws
    /// Returns once every rank has called it.
    func barrier() throws
}

extension ProcessGroup {
    /// Rank 0's `value`, on every rank (JSON on the wire; other ranks may pass anything).
    public func broadcast<T: Codable>(_ value: T) throws -> T {
        var bytes = rank == 0 ? [UInt8](try JSONEncoder().encode(value)) : []
        var length = bytes.count
        try withUnsafeMutableBytes(of: &length) { try broadcast($0, from: 0) }
        if rank != 0 { bytes = [UInt8](repeating: 0, count: length) }
        try bytes.withUnsafeMutableBytes { try broadcast($0, from: 0) }
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    }
}

/// What the trainer does differently on several ranks: the loss of this rank's rows against
/// the whole gathered batch, gradients averaged over ranks, and state sent out from rank 0.
///
/// Each rank computes open_clip's *local loss*: its n rows of image→text and text→image logits
/// against all N = n·ranks gathered columns. Gathered features carry gradients back to their
/// owners (the gather's backward is a reduce-scatter, as `gather_with_grad`), so averaging the
/// ranks' gradients gives exactly the gradient of the loss over the global batch.
final class DataParallel {
    let group: ProcessGroup
    /// A collective that failed inside the tape (where nothing can throw); checked after each step.
    private var failure: Error?
    /// Wall time spent in collectives (transfers, and waiting for slower ranks), for the log.
    private(set) var communicationSeconds: Double = 0

    init(_ group: ProcessGroup) { self.group = group }

    var isLeader: Bool { group.rank == 0 }

    func checkFailure() throws {
        if let failure { throw failure }
    }

    // MARK: - The loss over the global batch

    /// Every rank's rows of `local`, stacked in rank order.
    func gathered(_ local: Tensor) -> Tensor {
        let ranks = group.size, count = local.count
        return Tensor.custom(shape: [local.shape[0] * ranks] + local.shape.dropFirst(), inputs: [local], forward: { out in
            do {
                try timed {
                    try group.allGather(UnsafeRawBufferPointer(start: local.data, count: count * 4),
                                        into: UnsafeMutableRawBufferPointer(start: out, count: count * ranks * 4))
                }
            } catch {
                failure = failure ?? error
                out.update(repeating: 0, count: count * ranks)
            }
        }, backward: { [self] gradient, inputs in
            guard let dLocal = inputs[0] else { return }
            let mine = Tensor.zeros([count])
            do {
                try timed {
                    try group.reduceScatterSum(UnsafeBufferPointer(start: gradient, count: count * ranks),
                                               into: UnsafeMutableBufferPointer(start: mine.data, count: count))
                }
            } catch {
                failure = failure ?? error
            }
            for i in 0..<count { dLocal[i] += mine.data[i] }
        })
    }

    /// Symmetric InfoNCE of this rank's pairs against the gathered batch (mean over its rows).
    func infoNCE(image: Tensor, text: Tensor, logitScale: Tensor) -> Tensor {
        let targets = diagonal(image.shape[0])
        let scale = logitScale.exp()
        let perImage = Tensor.matmul(image, gathered(text), transposeB: true) * scale
        let perText = Tensor.matmul(text, gathered(image), transposeB: true) * scale
        return (perImage.crossEntropy(targets: targets) + perText.crossEntropy(targets: targets)).scaled(by: 0.5)
    }

    /// The sigmoid loss of this rank's images against every gathered text, divided by its rows:
    /// the ranks' mean is the global batch's loss.
    func sigmoid(image: Tensor, text: Tensor, logitScale: Tensor, logitBias: Tensor) -> Tensor {
        let n = image.shape[0], columns = n * group.size
        let logits = Tensor.matmul(image, gathered(text), transposeB: true) * logitScale.exp() + logitBias
        var signs = [Float](repeating: -1, count: n * columns)
        for (i, j) in diagonal(n).values.enumerated() { signs[i * columns + Int(j)] = 1 }
        return (logits * Tensor(shape: [n, columns], values: signs)).logSigmoid().sum().scaled(by: -1 / Float(n))
    }

    /// Where this rank's pairs sit in the gathered batch.
    private func diagonal(_ n: Int) -> IntTensor {
        IntTensor(shape: [n], values: (0..<n).map { Int32(group.rank * n + $0) })
    }

    // MARK: - After backward

    /// Parameters smaller than this share one all-reduce; larger ones are reduced in place.
    static let bucketElements = 1 << 20

    /// Averages the parameters' gradients over ranks and sums `scalars` (loss, stop flag, …) in
    /// the same round; returns the summed scalars. Small gradients travel together in one bucket.
    func averageGradients(_ parameters: [Tensor], scalars: [Float]) throws -> [Float] {
        try checkFailure()
        let grads = parameters.map { p -> Tensor in
            if p.grad == nil { p.grad = Tensor.zeros(p.shape) }
            return p.grad!
        }
        let small = grads.filter { $0.count < Self.bucketElements }, large = grads.filter { $0.count >= Self.bucketElements }
        let bucket = Tensor.zeros([scalars.count + small.reduce(0) { $0 + $1.count }])
        bucket.data.update(from: scalars, count: scalars.count)
        var offset = scalars.count
        for g in small {
            (bucket.data + offset).update(from: g.data, count: g.count)
            offset += g.count
        }
        try timed {
            try group.allReduceSum(UnsafeMutableBufferPointer(start: bucket.data, count: bucket.count))
            for g in large { try group.allReduceSum(UnsafeMutableBufferPointer(start: g.data, count: g.count)) }
        }

        let inverse = 1 / Float(group.size)
        offset = scalars.count
        for g in small {
            let from = bucket.data + offset
            for i in 0..<g.count { g.data[i] = from[i] * inverse }
            offset += g.count
        }
        for g in large { for i in 0..<g.count { g.data[i] *= inverse } }
        return Array(UnsafeBufferPointer(start: bucket.data, count: scalars.count))
    }

    private func timed(_ body: () throws -> Void) rethrows {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        try body()
    }

    // MARK: - Shared state

    /// Rank 0's values of `tensors`, on every rank.
    func broadcast(_ tensors: [Tensor]) throws {
        for t in tensors {
            try group.broadcast(UnsafeMutableRawBufferPointer(start: t.data, count: t.count * 4), from: 0)
        }
    }

    /// Every rank's `value`, in rank order.
    func allGather(_ value: Int) throws -> [Int] {
        var mine = value
        var all = [Int](repeating: 0, count: group.size)
        try withUnsafeBytes(of: &mine) { local in
            try all.withUnsafeMutableBytes { try group.allGather(local, into: $0) }
        }
        return all
    }
}
