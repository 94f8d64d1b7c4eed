import Foundation
import Testing

/// `mm train` under a real thread limit (RLIMIT_NPROC, as `ulimit -u` sets it). Root is exempt
/// from the limit, so the run is made as `nobody` (setpriv), which has no other processes: the
/// limit is then exactly the threads this process may have. OpenBLAS's own pool is kept out
/// (OPENBLAS_NUM_THREADS=1) so that the count is mm's alone.
@Suite(.serialized) struct ThreadLimitTests {
    static var canLimit: Bool {
        getuid() == 0 && ["/usr/bin/setpriv", "/usr/bin/prlimit"].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
            && FileManager.default.isExecutableFile(atPath: InterruptTests.mm)
    }

    /// Issue 16 #14: for every limit from 1 to 12 threads, the run either finishes or stops within
    /// seconds with one line saying a thread could not be started — never a hang (Foundation's
    /// `Thread` ignores the failure; Dispatch's pool retries it forever). Both outcomes occur.
    @Test(.enabled(if: canLimit, "needs root, setpriv and prlimit (to run mm as nobody under RLIMIT_NPROC)"))
    func aRunUnderAThreadLimitFinishesOrSaysSo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-nproc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        var outcomes: [Int: Int32] = [:]
        for limit in 1...12 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = [
                "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/prlimit", "--nproc=\(limit)", InterruptTests.mm, "train",
                root + "/datasets/shapes/val.tsv", "--model", "mm-tiny", "--steps", "2", "--batch-size", "8", "--warmup", "1",
                "--workers", "2", "--val", root + "/datasets/shapes/val.tsv", "-o", dir + "/run\(limit)"
            ]
            var environment = ProcessInfo.processInfo.environment
            environment["OPENBLAS_NUM_THREADS"] = "1"
            environment["MM_THREADS"] = "2"
            p.environment = environment
            let output = Pipe()
            p.standardOutput = output
            p.standardError = output
            try p.run()
            let deadline = Date().addingTimeInterval(120)
            while p.isRunning && Date() < deadline { usleep(50_000) }
            let hung = p.isRunning
            if hung { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(!hung, "limit \(limit): still running after 120 s:\n\(text)")
            if p.terminationStatus != 0 {
                #expect(p.terminationReason == .exit && p.terminationStatus == 1, "limit \(limit): \(text)")
                #expect(text.split(separator: "\n").last?.contains("cannot start thread") == true, "limit \(limit): \(text)")
            }
            outcomes[limit] = p.terminationStatus
        }
        print("thread limit → exit status: \(outcomes.sorted { $0.key < $1.key })")
        #expect(outcomes[1] == 1, "one thread (this one) must be too few")
        #expect(outcomes[12] == 0, "twelve threads must be enough")
    }
}
