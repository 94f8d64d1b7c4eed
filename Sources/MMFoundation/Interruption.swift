import Foundation

/// Turns SIGINT/SIGTERM into a flag that long work polls (the training loop, to write a
/// checkpoint before exiting; a collective wait of an MPI rank). A second signal exits at once.
/// A blocking wait must not outlast a stop request by more than `grace`: a wait for data that is
/// still unfinished then (a blocked read — a FIFO, a hung mount — never returns to the loop) ends
/// the process, with the last checkpoint as it was; a collective wait gives up with an error.
public enum Interruption {
    nonisolated(unsafe) private static var flag: sig_atomic_t = 0
    /// Counts the waits for data; odd while one is in progress.
    nonisolated(unsafe) private static var waits: sig_atomic_t = 0
    /// How long a blocking wait may outlast a stop request.
    public static let grace: Double = 10
    /// Printed by the handler itself: a rank blocked in a collective whose peer died may be
    /// killed before it can say anything else.
    nonisolated(unsafe) private static var notice: (text: UnsafeMutablePointer<CChar>, length: Int)?
    nonisolated(unsafe) private static var watching = false

    /// Installs the handlers (and, once, the thread that watches waits for data).
    public static func install(notice line: String? = nil) throws {
        if let line, notice == nil { notice = (strdup(line + "\n")!, line.utf8.count + 1) }
        // A launcher may have started us with these blocked; they must reach the handler.
        var mask = sigset_t()
        sigemptyset(&mask)
        for sig in [SIGINT, SIGTERM] { sigaddset(&mask, sig) }
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { _ in
                if Interruption.flag != 0 { _exit(130) }
                Interruption.flag = 1
                if let (text, length) = Interruption.notice { _ = write(STDERR_FILENO, text, length) }
            }
        }
        if !watching {
            try Threads.spawn("mm-interrupt") { watchDataWaits() }
            watching = true
        }
    }

    /// After a stop request, ends the process if one wait for data lasts longer than `grace`.
    private static func watchDataWaits() {
        var stuck: (wait: sig_atomic_t, since: Date)?
        while true {
            usleep(200_000)
            let wait = waits
            guard flag != 0, wait % 2 == 1 else { stuck = nil; continue }
            if stuck?.wait != wait { stuck = (wait, Date()) }
            if Date().timeIntervalSince(stuck!.since) >= grace {
                FileHandle.standardError.write(Data("mm: stopped while waiting for data; the last checkpoint stays as it was\n".utf8))
                _exit(130)
            }
        }
    }

    /// Whether SIGINT or SIGTERM arrived (after `install`).
    public static var requested: Bool { flag != 0 }

    /// Runs `body`, a wait for data, so that after a stop request it cannot block forever.
    public static func whileWaiting<R>(_ body: () throws -> R) rethrows -> R {
        waits &+= 1
        defer { waits &+= 1 }
        return try body()
    }
}
