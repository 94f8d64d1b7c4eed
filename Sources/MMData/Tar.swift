import Foundation

/// A regular file inside a tar archive: its full name and where its bytes are.
struct TarMember: Equatable {
    /// The member's path (a pax `path` record or a GNU long name when present).
    var name: String
    /// Byte offset of the data in the archive.
    var offset: Int
    var size: Int
}

/// How reading a tar archive ended.
enum TarEnd: Equatable {
    /// The end-of-archive block, or the file ended exactly between members.
    case clean
    /// The file stops inside a header or a member's data (an interrupted download).
    case truncated(at: Int)
    /// A header that fails its checksum or holds an impossible field: reading stops there.
    case badHeader(at: Int, reason: String)
}

/// Reads a tar archive (ustar, pax and GNU long names) member by member, with `pread`: only the
/// headers are read until a member's data is asked for, so a shard is never held in memory.
///
/// Only regular files are returned; directories, links, devices and the like are stepped over,
/// as webdataset does. Every header field is checked before it sizes anything: the checksum,
/// octal (or GNU base-256) sizes that must fit inside the file, pax and long-name records
/// bounded to `maxNameRecord` bytes.
final class TarReader {
    let path: String
    let fileSize: Int
    private let fd: Int32
    private(set) var offset = 0
    private(set) var end: TarEnd?
    private var header = [UInt8](repeating: 0, count: 512)

    /// A pax header or GNU long name longer than this is refused (names are short; this bounds
    /// the allocation a hostile header could ask for).
    static let maxNameRecord = 1 << 20

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DataError.unreadableShard(path: path, reason: String(cString: strerror(errno))) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw DataError.unreadableShard(path: path, reason: reason)
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw DataError.unreadableShard(path: path, reason: "is a directory")
        }
        self.path = path
        self.fd = fd
        fileSize = Int(info.st_size)
    }

    deinit { close(fd) }

    /// Positions the reader at `offset`, which must be a header boundary seen before.
    func seek(to offset: Int) {
        self.offset = offset
        end = nil
    }

    /// The next regular member, or nil at the end (then `end` says how it ended).
    func next() -> TarMember? {
        if end != nil { return nil }
        var longName: String?
        var paxSize: Int?
        while true {
            let start = offset
            if start == fileSize { return finish(.clean) }
            guard start + 512 <= fileSize, readFully(&header, at: start, count: 512) else { return finish(.truncated(at: start)) }
            if header.allSatisfy({ $0 == 0 }) { return finish(.clean) }
            guard checksumMatches() else { return finish(.badHeader(at: start, reason: "header checksum mismatch")) }
            guard var size = numericField(124, 12), size >= 0 else {
                return finish(.badHeader(at: start, reason: "invalid size field"))
            }
            if let paxSize { size = paxSize }  // a pax `size` record overrides the header's
            let dataStart = start + 512
            // Checked against the file before any arithmetic: a hostile size cannot overflow.
            if size > fileSize - dataStart { return finish(.truncated(at: start)) }
            let next = dataStart + ((size + 511) & ~511)
            let type = header[156]
            offset = next

            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "L"):
                guard size <= Self.maxNameRecord else {
                    return finish(.badHeader(at: start, reason: "\(type == UInt8(ascii: "x") ? "pax" : "long-name") record of \(size) bytes"))
                }
                var data = [UInt8](repeating: 0, count: size)
                guard readFully(&data, at: dataStart, count: size) else { return finish(.truncated(at: start)) }
                if type == UInt8(ascii: "L") {
                    let bytes = data.prefix { $0 != 0 }
                    longName = String(decoding: bytes, as: UTF8.self)
                } else {
                    let records = Self.paxRecords(data)
                    if let path = records["path"] { longName = path }
                    if let text = records["size"] {
                        guard let n = Int(text), n >= 0 else { return finish(.badHeader(at: start, reason: "pax size '\(text)'")) }
                        paxSize = n
                    }
                }
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
                let name = longName ?? ustarName()
                return TarMember(name: name, offset: dataStart, size: size)
            case UInt8(ascii: "g"), UInt8(ascii: "K"):
                break  // global pax headers, GNU long link names: they change nothing here
            default:
                // Directories, links, devices, GNU sparse/volume entries: not sample data.
                longName = nil
                paxSize = nil
            }
        }
    }

    /// Reads `member`'s data into `buffer` (resized to fit).
    func read(_ member: TarMember, into buffer: inout [UInt8]) -> Bool {
        if buffer.count != member.size { buffer = [UInt8](repeating: 0, count: member.size) }
        return readFully(&buffer, at: member.offset, count: member.size)
    }

    private func finish(_ how: TarEnd) -> TarMember? {
        end = how
        return nil
    }

    private func readFully(_ buffer: inout [UInt8], at position: Int, count: Int) -> Bool {
        var done = 0
        return buffer.withUnsafeMutableBytes { raw in
            while done < count {
                let n = pread(fd, raw.baseAddress! + done, count - done, off_t(position + done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                done += n
            }
            return true
        }
    }

    /// The checksum field equals the byte sum of the header with that field read as spaces
    /// (unsigned, as POSIX says; historic signed sums are accepted too).
    private func checksumMatches() -> Bool {
        guard let stored = numericField(148, 8) else { return false }
        var unsigned = 0, signed = 0
        for i in 0..<512 {
            let b = (148..<156).contains(i) ? UInt8(ascii: " ") : header[i]
            unsigned += Int(b)
            signed += Int(Int8(bitPattern: b))
        }
        return stored == unsigned || stored == signed
    }

    /// An octal field (NUL/space padded), or GNU's base-256 form (high bit of the first byte).
    private func numericField(_ start: Int, _ length: Int) -> Int? {
        if header[start] & 0x80 != 0 {
            guard header[start] == 0x80 else { return nil }  // negative values are not sizes
            var value = 0
            for i in start + 1..<start + length {
                guard value <= (Int.max >> 8) else { return nil }
                value = value << 8 | Int(header[i])
            }
            return value
        }
        var value = 0, digits = 0, i = start
        while i < start + length && header[i] == UInt8(ascii: " ") { i += 1 }
        while i < start + length, header[i] >= UInt8(ascii: "0"), header[i] <= UInt8(ascii: "7") {
            guard value <= (Int.max >> 3) else { return nil }
            value = value << 3 | Int(header[i] - UInt8(ascii: "0"))
            digits += 1
            i += 1
        }
        while i < start + length {
            guard header[i] == 0 || header[i] == UInt8(ascii: " ") else { return nil }
            i += 1
        }
        return digits > 0 ? value : nil
    }

    private func ustarName() -> String {
        func field(_ start: Int, _ length: Int) -> String {
            let bytes = header[start..<start + length].prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        let name = field(0, 100)
        // ustar (POSIX "ustar\0" and GNU "ustar  ") keep a directory prefix at 345.
        if header[257..<262].elementsEqual("ustar".utf8), header[345] != 0, header[262] == 0 {
            return field(345, 155) + "/" + name
        }
        return name
    }

    /// The records of a pax extended header ("<length> <key>=<value>\n" each); a malformed
    /// record ends the list.
    static func paxRecords(_ data: [UInt8]) -> [String: String] {
        var i = 0, records: [String: String] = [:]
        while i < data.count {
            var length = 0, j = i
            while j < data.count, data[j] >= UInt8(ascii: "0"), data[j] <= UInt8(ascii: "9"), length < data.count {
                length = length * 10 + Int(data[j] - UInt8(ascii: "0"))
                j += 1
            }
            guard j < data.count, data[j] == UInt8(ascii: " "), length > j - i, i + length <= data.count else { return records }
            let record = data[(j + 1)..<(i + length)]
            if let eq = record.firstIndex(of: UInt8(ascii: "=")) {
                var value = record[(eq + 1)...]
                if value.last == UInt8(ascii: "\n") { value = value.dropLast() }
                records[String(decoding: record[record.startIndex..<eq], as: UTF8.self)] = String(decoding: value, as: UTF8.self)
            }
            i += length
        }
        return records
    }
}
