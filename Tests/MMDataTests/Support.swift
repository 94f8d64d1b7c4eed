import Foundation

/// The repository's bundled shapes dataset and scratch files for the tests.
enum Paths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let shapes = root + "/datasets/shapes"

    /// This test process's scratch folder, removed when the process exits (its runs and shards
    /// take about 500 MB).
    static let folder: String = {
        atexit { try? FileManager.default.removeItem(atPath: Paths.folder) }
        return FileManager.default.temporaryDirectory.path + "/mm-data-tests-\(getpid())"
    }()

    /// A fresh directory for one test's files.
    static func scratch(_ name: String) -> String {
        let dir = folder + "/" + name
        try? FileManager.default.removeItem(atPath: dir)
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes `bytes` to `dir/name` and returns the path.
    @discardableResult
    static func write(_ dir: String, _ name: String, _ bytes: [UInt8]) -> String {
        let path = dir + "/" + name
        try! Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @discardableResult
    static func write(_ dir: String, _ name: String, _ text: String) -> String { write(dir, name, Array(text.utf8)) }
}
