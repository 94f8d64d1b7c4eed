import CMPI
import Foundation
import MMDistributed
import MMFoundation

/// The ranks of an `mpirun` launch, over Open MPI's MPI_COMM_WORLD.
///
/// Collectives are issued non-blocking and waited on by polling, so that a wait (a) leaves the
/// core to the other ranks on the host after a short spin, instead of busy-polling while rank 0
/// validates or writes a checkpoint, (b) ends with an error after `timeout` seconds instead of
/// hanging forever when a peer has vanished without its connection being reset, and (c) ends
/// with an error `Interruption.grace` seconds after SIGINT/SIGTERM if the peers have not joined.
public final class MPIGroup: ProcessGroup {
    public let rank: Int
    public let size: Int
    /// Ranks on this host, which share its cores.
    public let localSize: Int
    public let timeout: TimeInterval

    /// Whether this process was started by `mpirun` (Open MPI or PMIx set these).
    public static var isLaunchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// Joins the job; call once per process.
    public init(timeout: TimeInterval = 600) throws {
        self.timeout = timeout
        try Self.check(mm_mpi_init(), "MPI_Init", rank: nil)
        _ = mm_mpi_errors_return()
        var value: Int32 = 0
        try Self.check(mm_mpi_rank(&value), "MPI_Comm_rank", rank: nil)
        rank = Int(value)
        try Self.check(mm_mpi_size(&value), "MPI_Comm_size", rank: rank)
        size = Int(value)
        try Self.check(mm_mpi_local_size(&value), "MPI_Comm_split_type", rank: rank)
        localSize = Int(value)
    }

    /// Leaves the job normally (every rank must get here).
    public func finalize() { _ = mm_mpi_finalize() }

    /// Ends every rank of the job at once (after an error that leaves the others waiting). When
    /// the launcher itself is unreachable, MPI_Abort can block: this process exits regardless.
    public func abort(code: Int32) -> Never {
        do {
            try Threads.spawn("mm-abort") {
                sleep(10)
                _exit(code)
            }
        } catch {
            alarm(10)  // no thread to spare: SIGALRM's default action ends the process
        }
        _ = mm_mpi_abort(code)
        _exit(code)
    }

    // MARK: - ProcessGroup

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try collective("all-reduce of \(buffer.count) floats") { mm_mpi_iallreduce_sum(nil, buffer.baseAddress, Int32(buffer.count), &$0) }
    }

    public func allGather(_ local: UnsafeRawBufferPointer, into all: UnsafeMutableRawBufferPointer) throws {
        precondition(all.count == local.count * size, "all-gather into \(all.count) bytes of \(local.count) × \(size)")
        try collective("all-gather of \(local.count) bytes") {
            mm_mpi_iallgather(local.baseAddress, Int32(local.count), all.baseAddress, &$0)
        }
    }

    public func reduceScatterSum(_ all: UnsafeBufferPointer<Float>, into local: UnsafeMutableBufferPointer<Float>) throws {
        precondition(all.count == local.count * size, "reduce-scatter of \(all.count) floats into \(local.count) × \(size)")
        try collective("reduce-scatter of \(all.count) floats") {
            mm_mpi_ireduce_scatter_sum(all.baseAddress, local.baseAddress, Int32(local.count), &$0)
        }
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws {
        try collective("broadcast of \(bytes.count) bytes") { mm_mpi_ibroadcast(bytes.baseAddress, Int32(bytes.count), Int32(root), &$0) }
    }

    public func barrier() throws {
        try collective("barrier") { mm_mpi_ibarrier(&$0) }
    }

    // MARK: - Waiting

    /// Starts a non-blocking collective and waits for it.
    private func collective(_ what: String, _ start: (inout MPI_Request?) -> Int32) throws {
        var request: MPI_Request?
        try Self.check(start(&request), what, rank: rank)
        let began = DispatchTime.now().uptimeNanoseconds
        var stopSeen: Double?  // seconds into the wait when a stop request was first seen
        var done: Int32 = 0
        while true {
            try Self.check(mm_mpi_test(&request, &done), what, rank: rank)
            if done != 0 { return }
            let waited = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
            if waited > timeout {
                throw DistributedError.timedOut(rank: rank, operation: what, seconds: timeout)
            }
            if Interruption.requested {
                let since = stopSeen ?? waited
                stopSeen = since
                if waited - since > Interruption.grace {
                    throw DistributedError.interrupted(rank: rank, operation: what, seconds: Interruption.grace)
                }
            }
            // Spin while the others are likely mid-transfer; then poll gently.
            if waited > 0.02 { usleep(waited > 1 ? 2000 : 200) }
        }
    }

    private static func check(_ code: Int32, _ what: String, rank: Int?) throws {
        guard code != mm_mpi_success() else { return }
        var text = [CChar](repeating: 0, count: 512)
        mm_mpi_error_string(code, &text, Int32(text.count))
        let message = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw DistributedError.failed(rank: rank, operation: what, message: message)
    }
}
