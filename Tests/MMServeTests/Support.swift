import Foundation
import MMTestSupport

/// The `mm` binary, a briefly trained model and an index over the shapes test images, made once
/// per test process and shared by the suites; and a running `mm serve` per test.
enum Fixture {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var mm: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("mm").path
    }
    static let folder: String = {
        let dir = FileManager.default.temporaryDirectory.path + "/mm-serve-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Fixture.folder) }
        return dir
    }()

    /// The small-data default model (`mm-small-rn`, a ResNet image tower), trained on the shapes
    /// train split with the class name as caption: in about 150 CPU seconds it tells the 8 colours
    /// and the 8 shapes apart. Training options: see `train`.
    static let model: Result<String, Error> = Result {
        let dir = folder + "/model"
        let run = try command([
            mm, "train", root.path + "/datasets/shapes/train_labeled.tsv", "--caption-key", "label",
            "--model", "mm-small-rn", "--steps", String(trainingSteps), "--batch-size", "128", "--lr", "2e-3",
            "--warmup", "20", "--epochs", "100", "--workers", "1", "-o", dir
        ])
        guard run.status == 0 else { throw FixtureError("mm train failed: \(run.output.suffix(2000))") }
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").filter { $0.hasSuffix(".safetensors") }.sorted()
        guard let last = checkpoints.first(where: { $0.hasPrefix("latest") }) ?? checkpoints.last else {
            throw FixtureError("no checkpoint in \(dir)")
        }
        return dir + "/checkpoints/" + last
    }
    static let trainingSteps = 450

    /// The index: every shapes test image with its caption (from test.tsv as a captions file), and
    /// the 64 class names as text rows.
    static let gallery: Result<String, Error> = Result {
        let checkpoint = try model.get()
        let out = folder + "/gallery.mmi"
        let run = try command([
            mm, "index", "build", "-c", checkpoint, "--captions", root.path + "/datasets/shapes/test.tsv",
            "--texts", root.path + "/datasets/shapes/labels.txt", "-o", out
        ])
        guard run.status == 0 else { throw FixtureError("mm index build failed: \(run.output.suffix(2000))") }
        return out
    }

    /// Runs a command to its end; output is stdout and stderr together.
    static func command(_ arguments: [String], timeout: TimeInterval = 900) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.currentDirectoryURL = root
        let file = folder + "/out-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: file, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        try handle.close()
        let output = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: file)
        return (p.terminationStatus, output)
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A running `mm serve` on 127.0.0.1 and a free port, stopped (SIGTERM) by `stop()`.
final class RunningServer {
    let process = Process()
    let port: Int
    private let log: String

    init(_ extra: [String] = []) throws {
        let checkpoint = try Fixture.model.get(), gallery = try Fixture.gallery.get()
        log = Fixture.folder + "/serve-\(UUID().uuidString).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: Fixture.mm)
        process.arguments = ["serve", "--index", "gallery=\(gallery)", "-c", checkpoint, "--port", "0"] + extra
        process.standardOutput = pipe
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        // The first line says where it listens.
        var line = Data()
        let reader = pipe.fileHandleForReading
        let deadline = Date().addingTimeInterval(120)
        while !line.contains(UInt8(ascii: "\n")) && Date() < deadline && process.isRunning {
            let byte = reader.readData(ofLength: 1)
            if byte.isEmpty { break }
            line += byte
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: "http://127.0.0.1:"), let port = Int(text[range.upperBound...].prefix { $0.isNumber }) else {
            process.terminate()
            throw FixtureError("mm serve did not start: \(text) \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        self.port = port
    }

    /// Sends SIGTERM and waits; the exit status (0 after a graceful shutdown).
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Plain HTTP/1.1 over a socket: full control of what is sent (bad bodies, slow clients).
enum HTTP {
    struct Reply {
        let status: Int
        let headers: String
        let body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> Any { try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) }
    }

    static func connect(_ port: Int, timeout: Int = 30) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { close(fd); throw FixtureError("cannot connect to port \(port)") }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Sends all of `bytes`; false when the server closed the connection first.
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    /// Reads one response (Content-Length bodies), nil when the connection closed or timed out first.
    static func receive(_ fd: Int32) -> Reply? {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        func headerEnd() -> Int? {
            guard data.count >= 4 else { return nil }
            for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 { return i }
            return nil
        }
        while true {
            if let end = headerEnd() {
                let head = String(decoding: data[..<end], as: UTF8.self)
                let length =
                    head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if data.count >= end + 4 + length {
                    let status = Int(head.split(separator: " ")[1]) ?? 0
                    return Reply(status: status, headers: head, body: Array(data[(end + 4)..<(end + 4 + length)]))
                }
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return nil }
            data += buffer[0..<n]
        }
    }

    static func request(_ port: Int, _ method: String, _ path: String, body: [UInt8] = [], headers: [String] = []) throws -> Reply {
        let fd = try connect(port)
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        for h in headers { head += h + "\r\n" }
        // The body goes in 1 MB pieces, stopping as soon as the server answers (an early 413).
        var sent = send(fd, Array((head + "\r\n").utf8))
        var at = 0
        while sent && at < body.count {
            sent = send(fd, Array(body[at..<min(body.count, at + (1 << 20))]))
            at += 1 << 20
            var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if Glibc.poll(&poll, 1, 0) > 0 { break }
        }
        guard let reply = receive(fd) else { throw FixtureError("\(method) \(path): no response") }
        return reply
    }

    static func post(_ port: Int, _ path: String, json: Any) throws -> Reply {
        try request(port, "POST", path, body: Array(try JSONSerialization.data(withJSONObject: json)))
    }
}
