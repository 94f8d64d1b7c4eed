import Foundation

/// A file that could not be read or written: one line naming the path.
public enum FileError: Error, CustomStringConvertible, Equatable {
    /// Opening, reading or stat failed (the system's reason).
    case unreadable(path: String, reason: String)
    /// A directory, FIFO, device or socket where a file's contents were expected.
    case notRegularFile(path: String, kind: String)
    /// Larger than the caller's bound for this kind of file.
    case tooLarge(path: String, size: Int, limit: Int)
    /// Creating, writing, syncing or renaming failed (the system's reason).
    case unwritable(path: String, reason: String)

    public var path: String {
        switch self {
        case .unreadable(let p, _), .notRegularFile(let p, _), .tooLarge(let p, _, _), .unwritable(let p, _): return p
        }
    }

    /// What went wrong, without the path (for wrapping in a module's own error).
    public var reason: String {
        switch self {
        case .unreadable(_, let r), .unwritable(_, let r): return r
        case .notRegularFile(_, let kind): return kind == "a directory" ? "is a directory" : "is \(kind), not a regular file"
        case .tooLarge(_, let size, let limit): return "too large (\(size) bytes; the limit is \(limit))"
        }
    }

    public var description: String {
        switch self {
        case .unreadable(let p, let r): return "\(p): cannot read (\(r))"
        case .unwritable(let p, let r): return "\(p): cannot write (\(r))"
        default: return "\(path): \(reason)"
        }
    }
}

func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// A regular file opened for reading. Opening never blocks (a FIFO is refused, not waited on)
/// and nothing is read until asked, so callers can check the size and sniff the first bytes
/// before committing memory. Reads use `pread`: a file truncated under us gives a short read
/// (which the caller reports), where a memory map would die with SIGBUS.
public final class ReadableFile: @unchecked Sendable {
    public let path: String
    /// The size when opened.
    public let size: Int
    public let descriptor: Int32

    /// Opens `path`; with `maxSize`, a larger file is refused before anything is read.
    public init(_ path: String, maxSize: Int? = nil) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileError.unreadable(path: path, reason: errnoText()) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let reason = errnoText()
            close(fd)
            throw FileError.unreadable(path: path, reason: reason)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw FileError.notRegularFile(path: path, kind: Self.kind(st.st_mode))
        }
        let size = Int(st.st_size)
        if let maxSize, size > maxSize {
            close(fd)
            throw FileError.tooLarge(path: path, size: size, limit: maxSize)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.size = size
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// Reads up to `count` bytes at `offset` into `dst`; fewer only at the end of the file.
    public func read(into dst: UnsafeMutableRawPointer, count: Int, at offset: Int) throws -> Int {
        var done = 0
        while done < count {
            let n = pread(descriptor, dst + done, min(count - done, 1 << 30), off_t(offset + done))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw FileError.unreadable(path: path, reason: errnoText())
        }
        return done
    }

    /// The first `count` bytes (fewer if the file is shorter): enough to recognise a format.
    public func prefix(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(0, min(count, size)))
        let n = try out.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: $0.count, at: 0) }
        out.removeLast(out.count - n)
        return out
    }

    /// The whole file as it was when opened (growth after opening is not read).
    public func readAll() throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        if size == 0 { return out }
        let n = try out.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: size, at: 0) }
        out.removeLast(size - n)
        return out
    }

    /// The whole file as text, if it is UTF-8 (a leading byte-order mark is dropped).
    public func readText() throws -> String? {
        var bytes = try readAll()
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        return String(validating: bytes, as: UTF8.self)
    }

    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "not a file"
        }
    }
}

/// A regular file mapped read-only for the lifetime of this object.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer

    public init(_ path: String, maxSize: Int? = nil) throws {
        let file = try ReadableFile(path, maxSize: maxSize)
        self.path = path
        guard file.size > 0 else { bytes = UnsafeRawBufferPointer(start: nil, count: 0); return }
        guard let p = mmap(nil, file.size, PROT_READ, MAP_PRIVATE, file.descriptor, 0), p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw FileError.unreadable(path: path, reason: "cannot map: \(errnoText())")
        }
        bytes = UnsafeRawBufferPointer(start: p, count: file.size)
    }

    deinit { if let p = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: p), bytes.count) } }
}

/// Writable, zero-filled memory of `size` bytes backed by a file in `directory` instead of by
/// RAM and swap: for working data too large to keep resident. The file's blocks are reserved up
/// front (a full disk is an error here, not a crash on first write), and the file is unlinked
/// as soon as it is mapped, so it never outlives the process and nothing needs cleaning up.
public final class ScratchMap: @unchecked Sendable {
    public let bytes: UnsafeMutableRawBufferPointer

    public init(size: Int, in directory: String) throws {
        precondition(size > 0, "a scratch map needs at least one byte")
        var template = Array((directory + "/.mm-scratch.XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw FileError.unwritable(path: directory, reason: "cannot create a scratch file: \(errnoText())") }
        defer { close(fd) }
        let path = String(cString: template)
        unlink(path)
        let reserved = posix_fallocate(fd, 0, off_t(size))
        guard reserved == 0 else {
            throw FileError.unwritable(path: path, reason: "cannot reserve \(size) bytes: \(errnoText(reserved))")
        }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw FileError.unwritable(path: path, reason: "cannot map: \(errnoText())")
        }
        bytes = UnsafeMutableRawBufferPointer(start: p, count: size)
    }

    deinit { munmap(bytes.baseAddress, bytes.count) }
}

/// Where an atomic write puts its bytes until they are complete.
public struct FileWriter {
    public let path: String
    let descriptor: Int32

    public func write(_ src: UnsafeRawPointer, count: Int) throws {
        var done = 0
        while done < count {
            let n = Foundation.write(descriptor, src + done, min(count - done, 1 << 30))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw FileError.unwritable(path: path, reason: n < 0 ? errnoText() : "no progress")
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let base = bytes.baseAddress { try write(base, count: bytes.count) }
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
    public func write(_ data: Data) throws { try data.withUnsafeBytes { try write($0) } }
    public func write(_ text: String) throws { try write(Array(text.utf8)) }
}

/// Every file mm writes goes through here: into a hidden temporary beside the target, synced,
/// renamed over it, and the directory synced — a reader (or a crash) sees the old file or the
/// new one, never half of one. Writing a file onto itself is safe: the source stays readable
/// until the rename.
public enum AtomicFile {
    public static func write(to path: String, _ body: (FileWriter) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        // Hidden, unique, and short enough for NAME_MAX whatever the target's name.
        let temp =
            directory + "/." + String(String.UnicodeScalarView(url.lastPathComponent.unicodeScalars.prefix(50)))
            + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError.unwritable(path: path, reason: "cannot create a temporary file beside it: \(errnoText())") }
        do {
            defer { close(fd) }
            try body(FileWriter(path: path, descriptor: fd))
            // fsync reports any deferred write error, so close's own result adds nothing.
            guard fsync(fd) == 0 else { throw FileError.unwritable(path: path, reason: "fsync failed: \(errnoText())") }
        } catch {
            unlink(temp)
            throw error
        }
        guard rename(temp, path) == 0 else {
            let reason = errnoText()
            unlink(temp)
            throw FileError.unwritable(path: path, reason: "cannot rename the temporary file into place: \(reason)")
        }
        // Make the rename itself durable; the data is already safe, so failure here is not fatal.
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }

    public static func write(_ bytes: [UInt8], to path: String) throws { try write(to: path) { try $0.write(bytes) } }
    public static func write(_ data: Data, to path: String) throws { try write(to: path) { try $0.write(data) } }
    public static func write(_ text: String, to path: String) throws { try write(to: path) { try $0.write(text) } }
}
