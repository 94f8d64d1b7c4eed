import Foundation
import MMTensor

/// The data-parallel algorithm over any `ProcessGroup`: features gathered with a differentiable
/// all-gather (its backward is a reduce-scatter, as open_clip's `gather_features` with
/// `gather_with_grad`), gradients averaged in buckets, and state sent out from rank 0.
///
/// With each rank's loss the mean over its own rows against every rank's columns, averaging the
/// ranks' gradients gives exactly the gradient of the loss over the global batch.
public final class DataParallel {
    public let group: ProcessGroup
    /// A collective that failed inside the tape (where nothing can throw); see `checkFailure`.
    private var failure: Error?
    /// Wall time spent in collectives (transfers, and waiting for slower ranks), for the log.
    public private(set) var communicationSeconds: Double = 0

    public init(_ group: ProcessGroup) { self.group = group }

    public var rank: Int { group.rank }
    public var size: Int { group.size }
    public var isLeader: Bool { group.rank == 0 }

    /// Throws the first collective failure of `gathered` / `gatheredValues` since the last call.
    public func checkFailure() throws {
        defer { failure = nil }
        if let failure { throw failure }
    }

    // MARK: - Gathering

    /// Every rank's rows of `local`, stacked in rank order. Differentiable: the backward sums the
    /// gradient over ranks and hands each rank its rows' part (a reduce-scatter). A failed
    /// collective gives zeros and is thrown by the next `checkFailure`.
    public func gathered(_ local: Tensor) -> Tensor {
        let ranks = group.size, count = local.count
        return Tensor.custom(
            shape: [local.shape[0] * ranks] + local.shape.dropFirst(), inputs: [local],
            forward: { out in
                do {
                    try timed {
                        try group.allGather(
                            UnsafeRawBufferPointer(start: local.data, count: count * 4),
                            into: UnsafeMutableRawBufferPointer(start: out, count: count * ranks * 4))
                    }
                } catch {
                    failure = failure ?? error
                    out.update(repeating: 0, count: count * ranks)
                }
            },
            backward: { [self] gradient, inputs in
                guard let dLocal = inputs[0] else { return }
                let mine = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
                defer { mine.deallocate() }
                mine.update(repeating: 0)
                do {
                    try timed { try group.reduceScatterSum(UnsafeBufferPointer(start: gradient, count: count * ranks), into: mine) }
                } catch {
                    failure = failure ?? error
                }
                for i in 0..<count { dLocal[i] += mine[i] }
            })
    }

    /// Every rank's `values`, in rank order (not differentiable; a failure is thrown by the next
    /// `checkFailure`, the result then holds this rank's values repeated).
    public func gatheredValues<T: BitwiseCopyable>(_ values: [T]) -> [T] {
        do {
            return try timed { try group.allGather(values) }
        } catch {
            failure = failure ?? error
            return Array([[T]](repeating: values, count: group.size).joined())
        }
    }

    // MARK: - After backward

    /// Parameters smaller than this share one all-reduce; larger ones are reduced in place.
    public static let bucketElements = 1 << 20

    /// Averages the parameters' gradients over ranks and sums `scalars` (loss, stop flags, …) in
    /// the same round; returns the summed scalars. Small gradients travel together in one bucket.
    public func averageGradients(_ parameters: [Tensor], scalars: [Float]) throws -> [Float] {
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

    private func timed<R>(_ body: () throws -> R) rethrows -> R {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        return try body()
    }

    // MARK: - Shared state

    /// Rank 0's values of `tensors`, on every rank.
    public func broadcast(_ tensors: [Tensor]) throws {
        for t in tensors {
            try group.broadcast(UnsafeMutableRawBufferPointer(start: t.data, count: t.count * 4), from: 0)
        }
    }
}
