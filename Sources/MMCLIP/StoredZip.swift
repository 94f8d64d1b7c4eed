import Foundation

#if !MM_FUZZ_STANDALONE  // the fuzz harness compiles MMFoundation's Files.swift in (Makefile)
    import MMFoundation
#endif

/// Checkpoint reading over MMFoundation's `pread` file: whole ranges straight into the
/// destination (a tensor is held once, not once mapped and once copied), and a file truncated
/// under us is a short read and an error where a map would give SIGBUS.
extension ReadableFile {
    /// Opens a regular file (never waiting on a FIFO); failures are checkpoint errors naming it.
    static func checkpoint(_ path: String) throws -> ReadableFile {
        do { return try ReadableFile(path) } catch let error as FileError {
            throw CheckpointError(file: path, message: error.reason)
        }
    }

    /// Fills `count` bytes from `offset`; callers have checked the range against `size`.
    func readExactly(into dst: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws {
        let n: Int
        do { n = try read(into: dst, count: count, at: Int(offset)) } catch let error as FileError {
            throw CheckpointError(file: path, message: "read failed: \(error.reason)")
        }
        guard n == count else {
            throw CheckpointError(file: path, message: "file shrank while being read (now shorter than \(offset + UInt64(count)) bytes)")
        }
    }

    func bytes(_ count: Int, at offset: UInt64) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        if count > 0 { try out.withUnsafeMutableBytes { try readExactly(into: $0.baseAddress!, count: count, at: offset) } }
        return out
    }
}

/// The members of a zip archive as PyTorch writes them: stored (uncompressed), found through the
/// central directory (ZIP64 when large). Every offset and size is checked against the file size
/// before it is used, so a lying directory is an error, never a huge allocation or a wild read.
///
/// Our own ~150 lines rather than ZIPFoundation: we need only the byte range of each stored
/// member, to `pread` storages straight into parameter buffers; a general zip library would add
/// a dependency, decompression and extraction paths we must not take, and hides the offsets.
struct StoredZip {
    struct Member {
        let name: String
        /// Where the member's bytes start in the file, and how many there are.
        let offset: UInt64
        let size: UInt64
        /// 0 = stored; PyTorch compresses only TorchScript's `code/`, which we never read.
        let method: UInt16
    }

    let file: ReadableFile
    let members: [String: Member]

    /// Longest tail that can hold the end-of-central-directory record (22 bytes + a 65,535-byte comment).
    private static let maxTail: UInt64 = 22 + 65_535

    init(_ file: ReadableFile) throws {
        self.file = file
        let path = file.path
        func bad(_ message: String) -> CheckpointError { CheckpointError(file: path, message: message) }
        let size = UInt64(file.size)
        guard size >= 22 else { throw bad("not a zip archive (\(size) bytes)") }
        let head = try file.bytes(4, at: 0)
        guard head == [0x50, 0x4B, 0x03, 0x04] else { throw bad("not a zip archive (wrong magic)") }

        // The end-of-central-directory record, searched backwards from the end.
        let tailStart = size - min(size, Self.maxTail)
        let tail = try file.bytes(Int(size - tailStart), at: tailStart)
        var eocd: Int?
        var i = tail.count - 22
        while i >= 0 {
            if tail[i] == 0x50, tail[i + 1] == 0x4B, tail[i + 2] == 0x05, tail[i + 3] == 0x06 { eocd = i; break }
            i -= 1
        }
        guard let at = eocd else { throw bad("truncated zip archive: no end of central directory") }
        var entries = UInt64(tail.le16(at + 10))
        var directorySize = UInt64(tail.le32(at + 12))
        var directoryOffset = UInt64(tail.le32(at + 16))
        let eocdOffset = tailStart + UInt64(at)

        // ZIP64: a locator just before the record points at the 64-bit record.
        if at >= 20, tail.le32(at - 20) == 0x0706_4B50 {
            let recordOffset = tail.le64(at - 20 + 8)
            guard recordOffset <= eocdOffset, eocdOffset - recordOffset >= 56 else {
                throw bad("truncated zip archive: ZIP64 end of central directory at \(recordOffset) is outside the file")
            }
            let record = try file.bytes(56, at: recordOffset)
            guard record.le32(0) == 0x0606_4B50 else { throw bad("corrupt zip archive: no ZIP64 record where its locator points") }
            entries = record.le64(32)
            directorySize = record.le64(40)
            directoryOffset = record.le64(48)
        }
        guard directoryOffset <= eocdOffset, directorySize <= eocdOffset - directoryOffset else {
            throw bad("truncated zip archive: central directory [\(directoryOffset), +\(directorySize)) runs past the \(size)-byte file")
        }
        // Each entry takes at least 46 bytes, so the count is bounded by the directory's size.
        guard entries <= directorySize / 46 else {
            throw bad("corrupt zip archive: \(entries) entries cannot fit in a \(directorySize)-byte central directory")
        }
        // PyTorch writes ~100 bytes per member; 64 MB is room for 600,000 tensors.
        guard directorySize <= 64 << 20 else { throw bad("zip central directory of \(directorySize) bytes is larger than any checkpoint's") }
        let directory = try file.bytes(Int(directorySize), at: directoryOffset)

        var members: [String: Member] = [:]
        var p = 0
        for _ in 0..<entries {
            guard p + 46 <= directory.count, directory.le32(p) == 0x0201_4B50 else {
                throw bad("truncated central directory: entry at byte \(p) is cut short or malformed")
            }
            let flags = directory.le16(p + 8), method = directory.le16(p + 10)
            var compressed = UInt64(directory.le32(p + 20)), uncompressed = UInt64(directory.le32(p + 24))
            let nameLength = Int(directory.le16(p + 28)), extraLength = Int(directory.le16(p + 30))
            let commentLength = Int(directory.le16(p + 32))
            var local = UInt64(directory.le32(p + 42))
            let end = p + 46 + nameLength + extraLength + commentLength
            guard end <= directory.count else { throw bad("truncated central directory: entry at byte \(p) runs past its end") }
            let name = String(decoding: directory[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            // ZIP64 extra field: the 64-bit values of exactly the fields saturated above, in order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let tag = directory.le16(e), length = Int(directory.le16(e + 2))
                guard e + 4 + length <= extraEnd else { throw bad("zip member \(name): malformed extra field") }
                if tag == 0x0001 {
                    var q = e + 4
                    func next() throws -> UInt64 {
                        guard q + 8 <= e + 4 + length else { throw bad("zip member \(name): short ZIP64 extra field") }
                        defer { q += 8 }
                        return directory.le64(q)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next() }
                    if compressed == 0xFFFF_FFFF { compressed = try next() }
                    if local == 0xFFFF_FFFF { local = try next() }
                }
                e += 4 + length
            }
            p = end
            guard flags & 1 == 0 else { throw bad("zip member \(name) is encrypted") }
            guard method != 0 || compressed == uncompressed else {
                throw bad("zip member \(name): stored, but its sizes disagree (\(compressed) vs \(uncompressed))")
            }
            // The local header: 30 bytes plus its own name and extra field, then the data.
            guard local <= directoryOffset, directoryOffset - local >= 30 else {
                throw bad("zip member \(name): local header offset \(local) is outside the archive's data")
            }
            let header = try file.bytes(30, at: local)
            guard header.le32(0) == 0x0403_4B50 else { throw bad("zip member \(name): no local header at offset \(local)") }
            let dataOffset = local + 30 + UInt64(header.le16(26)) + UInt64(header.le16(28))
            guard dataOffset <= directoryOffset, compressed <= directoryOffset - dataOffset else {
                throw bad(
                    "truncated zip archive: member \(name) declares \(compressed) bytes at \(dataOffset), past the data's end at \(directoryOffset)")
            }
            guard members.updateValue(Member(name: name, offset: dataOffset, size: compressed, method: method), forKey: name) == nil else {
                throw bad("zip member \(name) appears twice")
            }
        }
        self.members = members
    }

    /// A stored member's bytes (for small members such as `data.pkl`), at most `limit` of them.
    func contents(of member: Member, limit: UInt64) throws -> [UInt8] {
        guard member.method == 0 else {
            throw CheckpointError(
                file: file.path, message: "zip member \(member.name) is compressed (method \(member.method)); PyTorch stores it uncompressed")
        }
        guard member.size <= limit else {
            throw CheckpointError(file: file.path, message: "zip member \(member.name) is \(member.size) bytes, more than the \(limit) allowed")
        }
        return try file.bytes(Int(member.size), at: member.offset)
    }
}

extension Array where Element == UInt8 {
    func le16(_ i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    func le32(_ i: Int) -> UInt32 { UInt32(le16(i)) | UInt32(le16(i + 2)) << 16 }
    func le64(_ i: Int) -> UInt64 { UInt64(le32(i)) | UInt64(le32(i + 4)) << 32 }
}
