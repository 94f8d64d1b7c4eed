import Foundation
import Testing

/// `mm train` as a user runs it, for what only a separate process can show: signals.
@Suite(.serialized) struct InterruptTests {
    /// The `mm` executable built beside this test binary.
    static var mm: String {
        URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
            .deletingLastPathComponent().appendingPathComponent("mm").path
    }

    /// Issue 16 #11: SIGTERM stops a run blocked waiting for data (here every image is a FIFO
    /// that nobody writes) after the grace period for data waits (10 s), with a non-zero
    /// status — never a hang.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: mm), "needs the mm product (swift build -c release)"))
    func aStopRequestEndsARunBlockedOnData() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-interrupt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var manifest = "filepath\ttitle\n"
        for i in 0..<8 {
            let fifo = dir.appendingPathComponent("\(i).jpg").path
            #expect(mkfifo(fifo, 0o600) == 0)
            manifest += "\(fifo)\ta caption \(i)\n"
        }
        try manifest.write(to: dir.appendingPathComponent("pairs.tsv"), atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.mm)
        p.arguments = [
            "train", dir.appendingPathComponent("pairs.tsv").path, "--batch-size", "4", "--steps", "1",
            "-o", dir.appendingPathComponent("run").path
        ]
        let output = Pipe()
        p.standardError = output
        p.standardOutput = output
        try p.run()
        Thread.sleep(forTimeInterval: 3)
        let signalled = Date()
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(30)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        let hung = p.isRunning
        if hung { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(!hung, "mm train still running 30 s after SIGTERM:\n\(text)")
        #expect(p.terminationStatus != 0, "\(text)")
        print(
            "ended \(String(format: "%.2f", Date().timeIntervalSince(signalled))) s after SIGTERM, status \(p.terminationStatus): \(text.split(separator: "\n").last ?? "")"
        )
    }
}

extension InterruptTests {
    /// Issue 16 #4 (CLI side): a resume given a setting it cannot change is refused, naming it.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: mm), "needs the mm product (swift build -c release)"))
    func aResumeRefusesSettingsItCannotChange() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.mm)
        p.arguments = ["train", "--resume", "/nonexistent-run", "--batch-size", "8", "--loss", "siglip"]
        let output = Pipe()
        p.standardError = output
        p.standardOutput = output
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus != 0)
        #expect(text.contains("--loss, --batch-size cannot change when resuming"), "\(text)")
    }
}
