import Foundation

/// The processes (or threads) of a data-parallel run, one per rank. Every call is collective:
/// all ranks make the same calls in the same order. Transports: `MPIGroup` (MMDistributedMPI,
/// over Open MPI) and `ThreadGroup` (threads of one process, for tests and library users).
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

    /// Every rank's `values` (the same count on all), concatenated in rank order.
    public func allGather<T: BitwiseCopyable>(_ values: [T]) throws -> [T] {
        guard size > 1 else { return values }
        var all = [T](unsafeUninitializedCapacity: values.count * size) { _, count in count = values.count * size }
        try values.withUnsafeBytes { local in try all.withUnsafeMutableBytes { try allGather(local, into: $0) } }
        return all
    }
}

/// A collective that failed or was abandoned by the other ranks.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// The other ranks did not take part in `operation` within `seconds`: one died or a host is unreachable.
    case timedOut(rank: Int, operation: String, seconds: Double)
    /// The transport reported an error during `operation`.
    case failed(rank: Int?, operation: String, message: String)
    /// A stop was requested (SIGINT/SIGTERM) and the other ranks still had not joined `operation`
    /// `seconds` later: one is gone or stuck, so this one stops waiting for it.
    case interrupted(rank: Int, operation: String, seconds: Double)

    public var description: String {
        switch self {
        case let .timedOut(rank, operation, seconds):
            return "rank \(rank): the other ranks did not answer for \(Int(seconds)) s during \(operation); a rank died or a host is unreachable"
        case let .failed(rank, operation, message):
            return "\(rank.map { "rank \($0): " } ?? "")\(operation) failed: \(message) (another rank probably died)"
        case let .interrupted(rank, operation, seconds):
            return
                "rank \(rank): stopped; the other ranks had not joined the \(operation) \(Int(seconds)) s after the stop request (a rank is gone or stuck)"
        }
    }
}
