import Foundation

/// The PyTorch/open_clip environment made by `make venv` (`.venv-ref/`), for tests that run the
/// reference implementation. Tests that need it are disabled, with this reason, when it is absent.
public enum ReferenceVenv {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    public static let python = root.appendingPathComponent(".venv-ref/bin/python")
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: python.path) }
    public static let missingReason = "needs the reference venv .venv-ref (run `make venv`)"

    /// Runs a script under tools/ (relative to the repository) and returns its status and output.
    public static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = python
        p.arguments = arguments
        p.currentDirectoryURL = root
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }
}
