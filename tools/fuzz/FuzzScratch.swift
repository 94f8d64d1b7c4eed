// Shared by every harness (compiled into each): a per-process scratch file on a RAM-backed
// folder, for readers that take a path.
import Foundation

final class FuzzScratch {
    let base: String

    init(name: String) {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        base = "\(dir)/mm-fuzz-\(name)-\(getpid())"
    }

    func url(suffix: String = "") -> URL { URL(fileURLWithPath: base + suffix) }

    /// Writes the input to the scratch file and returns its URL.
    func write(_ data: UnsafePointer<UInt8>, _ size: Int) -> URL {
        let fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot create \(base)")
        var done = 0
        while done < size {
            let n = Foundation.write(fd, data + done, size - done)
            precondition(n > 0, "cannot write \(base)")
            done += n
        }
        close(fd)
        return URL(fileURLWithPath: base)
    }
}
