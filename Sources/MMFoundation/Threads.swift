import Foundation

/// How many threads mm uses for kernels, decoding and tokenising: one setting for the whole
/// process, so an override (say, one per MPI rank) reaches every module.
public enum Threads {
    /// `MM_THREADS`, when set to a positive integer.
    public static let fromEnvironment: Int? = ProcessInfo.processInfo.environment["MM_THREADS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }

    /// `MM_THREADS` if set to a positive integer, else the number of online cores.
    public private(set) static var count: Int = fromEnvironment ?? ProcessInfo.processInfo.activeProcessorCount

    /// Overrides the thread count for this process.
    public static func set(_ n: Int) {
        precondition(n > 0, "thread count must be positive")
        _ = count
        count = n
    }
}
