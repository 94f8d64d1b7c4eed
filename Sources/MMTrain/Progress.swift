import Foundation

/// A live progress line on a terminal (redrawn in place), or plain periodic lines otherwise.
final class Progress {
    private let total: Int
    private let label: String
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private let start = Date()
    private var lastPlain = Date.distantPast
    private let enabled: Bool
    /// Work already done before this process started (after a resume): not part of the rate.
    private let initial: Int

    init(label: String, total: Int, initial: Int = 0, enabled: Bool = true) {
        self.label = label
        self.total = total
        self.initial = initial
        self.enabled = enabled
    }

    /// Shows `done` of `total` with the given fields; plain output at most every 10 s.
    func update(_ done: Int, _ fields: [(String, String)]) {
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > initial ? elapsed / Double(done - initial) * Double(total - done) : 0
        let text = fields.map { "\($0) \($1)" }.joined(separator: "  ")
        if isTerminal {
            let width = 24, filled = total > 0 ? width * done / total : 0
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            write("\r\u{1B}[2K\(label) \(bar) \(done)/\(total)  \(text)  ETA \(Self.clock(eta))")
        } else if Date().timeIntervalSince(lastPlain) >= 10 || done == total {
            lastPlain = Date()
            write("\(label) \(done)/\(total)  \(text)  ETA \(Self.clock(eta))\n")
        }
    }

    func finish() { if isTerminal { write("\n") } }

    func message(_ line: String) {
        write((isTerminal ? "\r\u{1B}[2K" : "") + line + "\n")
    }

    private func write(_ s: String) { if enabled { FileHandle.standardError.write(Data(s.utf8)) } }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// Turns SIGINT/SIGTERM into a flag the training loop polls, so that it can write a checkpoint
/// before exiting. A second signal exits at once. A first signal that finds the loop waiting for
/// data and the wait still unfinished `dataGrace` seconds later (a blocked read — a FIFO, a hung
/// mount — never returns to the loop) ends the process too, with the last checkpoint as it was.
enum Interruption {
    nonisolated(unsafe) private static var flag: sig_atomic_t = 0
    /// Counts the waits for data; odd while one is in progress.
    nonisolated(unsafe) private static var waits: sig_atomic_t = 0
    /// How long a wait for data may outlast a stop request.
    static let dataGrace: Double = 10
    /// Printed by the handler itself: a rank blocked in a collective whose peer died may be
    /// killed before it can say anything else.
    nonisolated(unsafe) private static var notice: (text: UnsafeMutablePointer<CChar>, length: Int)?
    nonisolated(unsafe) private static var watching = false

    static func install(notice line: String? = nil) {
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
            watching = true
            Thread.detachNewThread(watchDataWaits)
        }
    }

    /// After a stop request, ends the process if one wait for data lasts longer than `dataGrace`.
    private static func watchDataWaits() {
        var stuck: (wait: sig_atomic_t, since: Date)?
        while true {
            usleep(200_000)
            let wait = waits
            guard flag != 0, wait % 2 == 1 else { stuck = nil; continue }
            if stuck?.wait != wait { stuck = (wait, Date()) }
            if Date().timeIntervalSince(stuck!.since) >= dataGrace {
                FileHandle.standardError.write(Data("mm: stopped while waiting for data; the last checkpoint stays as it was\n".utf8))
                _exit(130)
            }
        }
    }

    static var requested: Bool { flag != 0 }

    /// Runs `body`, a wait for data, so that after a stop request it cannot block forever.
    static func whileWaiting<R>(_ body: () throws -> R) rethrows -> R {
        waits &+= 1
        defer { waits &+= 1 }
        return try body()
    }
}
