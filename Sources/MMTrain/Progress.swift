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
