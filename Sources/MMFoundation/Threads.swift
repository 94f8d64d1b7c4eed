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

    /// Runs `body` on a new detached thread named `name`, or throws when the thread cannot be
    /// created. Every thread mm starts itself starts here: Foundation's `Thread.start` ignores
    /// pthread_create's error, so a thread refused by `ulimit -u` silently never runs and whoever
    /// waits for it waits forever.
    public static func spawn(_ name: String, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) throws {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        if let stackSize { pthread_attr_setstacksize(&attributes, stackSize) }
        let start = Unmanaged.passRetained(Start(name: name, body: body))
        var thread = pthread_t()
        let code = pthread_create(
            &thread, &attributes,
            { raw in
                let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
                Thread.current.name = start.name
                start.body()
                return nil
            }, start.toOpaque())
        if code != 0 {
            start.release()
            throw ThreadError(name: name, code: code)
        }
    }

    /// Throws unless `n` threads can run at once in this process (one is the caller). Dispatch's
    /// pool, which runs the parallel kernels, retries a refused thread forever: checking before
    /// the work starts turns a process or user thread limit into an error instead of a hang.
    public static func checkAvailable(_ n: Int) throws {
        let release = DispatchSemaphore(value: 0), exited = DispatchSemaphore(value: 0)
        var started = 0
        defer {
            for _ in 0..<started { release.signal() }
            for _ in 0..<started { exited.wait() }
        }
        for i in stride(from: 1, to: n, by: 1) {
            try spawn("mm-check-\(i)") {
                release.wait()
                exited.signal()
            }
            started += 1
        }
    }

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) { (self.name, self.body) = (name, body) }
    }
}

/// A thread the system refused to create.
public struct ThreadError: Error, CustomStringConvertible, Equatable {
    public let name: String
    /// pthread_create's error number (EAGAIN: the thread limit or memory).
    public let code: Int32

    public init(name: String, code: Int32) { (self.name, self.code) = (name, code) }

    public var description: String {
        "cannot start thread \(name): \(String(cString: strerror(code))) (the process or user thread limit, ulimit -u, or memory is exhausted: raise the limit, or use fewer threads with --workers or MM_THREADS)"
    }
}
