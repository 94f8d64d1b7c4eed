import Dispatch
import Foundation
import MMCLIP
import MMFoundation

/// A gallery of normalised embeddings with the names they belong to, searched exactly: per block
/// of rows one BLAS product with the queries, then each query's running top k is updated.
///
/// File layout (little-endian): magic `MMINDEX\0`, UInt32 version, UInt32 header length, a JSON
/// header (model fingerprint, dimension, names, modification times) padded with spaces so the
/// rows start at a multiple of 64 bytes, the float32 rows [count, dimension], and a UInt64 FNV-1a
/// checksum of everything before it. `load(from:)` memory-maps the file: the rows stay in the
/// page cache and are streamed through one block buffer by each search, so an index larger than
/// free memory can still be searched.
public struct EmbeddingIndex {
    public static let magic: [UInt8] = Array("MMINDEX\u{0}".utf8)
    public static let version: UInt32 = 1
    /// Rows per block of a search: 32 MB of 512-d rows, small enough to stay out of the way of
    /// other work, large enough that BLAS runs at full speed.
    static let blockBytes = 32 << 20

    struct Header: Codable {
        var model: String
        var dimension: Int
        var names: [String]
        var modified: [Double]?
    }

    /// One search result: the row, its name and its cosine with the query.
    public struct Match: Equatable, Sendable {
        public let index: Int
        public let name: String
        public let score: Float
    }

    /// Identifies the model that made the embeddings; queries must come from the same one.
    public let modelFingerprint: String
    public private(set) var names: [String]
    /// Per name, the file's modification time (seconds since 1970) when it was embedded, if known:
    /// `mm index add` re-embeds only files that changed.
    public private(set) var modified: [Double]?
    public let dimension: Int
    /// The file this index was loaded from, for error messages.
    public let file: String?
    private var rows: Rows

    /// An index of `embeddings` [count, dimension] (unit rows), one per name.
    public init(modelFingerprint: String, names: [String], embeddings: Tensor, modified: [Double]? = nil) {
        precondition(embeddings.rank == 2 && embeddings.shape[0] == names.count, "one embedding row per name")
        precondition(modified == nil || modified!.count == names.count, "one modification time per name")
        self.modelFingerprint = modelFingerprint
        self.names = names
        self.modified = modified
        self.dimension = embeddings.shape[1]
        self.file = nil
        self.rows = .memory(embeddings)
    }

    public var count: Int { names.count }

    /// All rows as one tensor [count, dimension] (a copy when the index is mapped from a file).
    public var embeddings: Tensor {
        switch rows {
        case .memory(let t): return t
        case .mapped(let file, let offset):
            let t = Tensor.zeros([count, dimension])
            UnsafeMutableRawPointer(t.data).copyMemory(from: file.bytes.baseAddress! + offset, byteCount: t.count * 4)
            return t
        }
    }

    /// Adds rows: a name already in the index has its row (and time) replaced, others are appended.
    public mutating func add(names added: [String], embeddings e: Tensor, modified times: [Double]? = nil) {
        precondition(e.rank == 2 && e.shape[0] == added.count && e.shape[1] == dimension, "one row of the index's dimension per name")
        precondition(times == nil || times!.count == added.count, "one modification time per name")
        var row: [String: Int] = [:]
        for (i, name) in names.enumerated() { row[name] = i }
        var values = embeddings.scalars
        var allTimes = modified ?? names.map { _ in -1 }
        for (r, name) in added.enumerated() {
            let vector = UnsafeBufferPointer(start: e.data + r * dimension, count: dimension)
            let time = times?[r] ?? -1
            if let i = row[name] {
                values.replaceSubrange((i * dimension)..<((i + 1) * dimension), with: vector)
                allTimes[i] = time
            } else {
                row[name] = names.count
                names.append(name)
                allTimes.append(time)
                values += vector
            }
        }
        modified = modified == nil && times == nil ? nil : allTimes
        rows = .memory(Tensor(shape: [names.count, dimension], values: values))
    }

    /// A fingerprint of a model's weights: a hash over every parameter's bits, with the config.
    public static func fingerprint(_ model: CLIPModel) -> String {
        var h = FNV1a()
        for (key, t) in model.namedParameters() {
            h.combine(bytes: key.utf8)
            let words = UnsafeRawPointer(t.data).assumingMemoryBound(to: UInt32.self)
            for i in 0..<t.count { h.combine(word: UInt64(words[i])) }
        }
        return "\(FNV1a.hex(h.value))-d\(model.config.embedDim)"
    }

    /// Throws unless the queries' model (its `fingerprint`) is the one that built the index.
    public func requireModel(_ fingerprint: String) throws {
        guard fingerprint == modelFingerprint else {
            throw EvalError("\(file ?? "index"): built with another model (fingerprint \(modelFingerprint), this model has \(fingerprint)); rebuild the index with this checkpoint")
        }
    }

    // MARK: Files

    /// Writes the index atomically (a temporary file, fsync, rename).
    public func save(to url: URL) throws {
        var head = Self.magic
        append(Self.version, to: &head)
        var header = try JSONEncoder().encode(Header(model: modelFingerprint, dimension: dimension, names: names, modified: modified))
        header += [UInt8](repeating: 0x20, count: (64 - (16 + header.count) % 64) % 64)
        append(UInt32(header.count), to: &head)
        head += header
        do { try AtomicFile.write(to: url.path) { out in
            var sum = FNV1a()
            try head.withUnsafeBytes { raw in
                sum.combine(words: raw)
                try out.write(raw)
            }
            // Rows straight from memory or the mapped file, in blocks (one copy at most).
            try withRowBytes { raw in
                var start = 0
                while start < raw.count {
                    let part = UnsafeRawBufferPointer(rebasing: raw[start..<min(raw.count, start + Self.blockBytes)])
                    sum.combine(words: part)
                    try out.write(part)
                    start += part.count
                }
            }
            try withUnsafeBytes(of: sum.value.littleEndian) { try out.write($0) }
        } } catch let error as FileError {
            throw EvalError(error.description)
        }
    }

    /// Maps an index file read-only and verifies it; a wrong magic, version, size or checksum is
    /// an error naming the file. The rows are not copied: searches read them from the map.
    public static func load(from url: URL) throws -> EmbeddingIndex {
        let file = url.path
        let map: MappedFile
        do { map = try MappedFile(file) } catch let error as FileError {
            throw EvalError("\(file): cannot read the index (\(error.reason))")
        }
        let bytes = map.bytes
        guard !bytes.isEmpty else { throw EvalError("\(file): not an mm index (empty file)") }
        func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard bytes.count >= 24, Array(bytes[0..<8]) == magic else { throw EvalError("\(file): not an mm index (no MMINDEX magic)") }
        let version = read(UInt32.self, at: 8)
        guard version == Self.version else { throw EvalError("\(file): index version \(version), this mm reads version \(Self.version)") }
        var sum = FNV1a()
        sum.combine(words: UnsafeRawBufferPointer(rebasing: bytes[0..<(bytes.count - 8)]))
        guard read(UInt64.self, at: bytes.count - 8) == sum.value else {
            throw EvalError("\(file): checksum mismatch, the index is corrupt (rebuild it)")
        }
        let headerLength = Int(read(UInt32.self, at: 12))
        guard 16 + headerLength <= bytes.count - 8,
              let header = try? JSONDecoder().decode(Header.self, from: Data(bytes[16..<(16 + headerLength)])) else {
            throw EvalError("\(file): unreadable index header")
        }
        let start = 16 + headerLength, floats = header.names.count * header.dimension
        guard header.modified == nil || header.modified!.count == header.names.count else {
            throw EvalError("\(file): index header has \(header.modified!.count) modification times for \(header.names.count) names")
        }
        guard header.dimension > 0, bytes.count - 8 - start == floats * 4 else {
            throw EvalError("\(file): index holds \(bytes.count - 8 - start) bytes of embeddings, expected \(floats * 4)")
        }
        return EmbeddingIndex(header: header, file: file, rows: .mapped(map, offset: start))
    }

    private init(header: Header, file: String, rows: Rows) {
        modelFingerprint = header.model
        names = header.names
        modified = header.modified
        dimension = header.dimension
        self.file = file
        self.rows = rows
    }

    // MARK: Search

    /// For each query row [Q, D] (normalised), the k best rows by cosine, best first (ties: the
    /// earlier row first). A mapped index is read in blocks of `blockRows` rows (default: 32 MB).
    public func search(_ queries: Tensor, k: Int, blockRows: Int? = nil) -> [[Match]] {
        precondition(queries.rank == 2 && queries.shape[1] == dimension, "queries must have the index's dimension")
        let q = queries.shape[0], k = min(k, count)
        guard k > 0 else { return Array(repeating: [], count: q) }
        let best = UnsafeMutablePointer<Float>.allocate(capacity: q * k), at = UnsafeMutablePointer<Int>.allocate(capacity: q * k)
        var filled = [Int](repeating: 0, count: q)
        defer { best.deallocate(); at.deallocate() }
        let workers = max(1, min(Threads.count, q))
        forEachBlock(rows: blockRows ?? max(1, Self.blockBytes / (dimension * 4))) { block, first in
            let n = block.shape[0]
            let scores = withoutGradients { Tensor.matmul(queries, block, transposeB: true) }  // [Q, n]
            filled.withUnsafeMutableBufferPointer { filled in
                let filled = filled
                // Each query's running top k is its own: spread them over the cores.
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    for i in stride(from: w, to: q, by: workers) {
                        keepBest(scores.data + i * n, count: n, first: first, k: k, best: best + i * k, at: at + i * k, filled: &filled[i])
                    }
                }
            }
        }
        return (0..<q).map { i in (0..<filled[i]).map { j in Match(index: at[i * k + j], name: names[at[i * k + j]], score: best[i * k + j]) } }
    }

    // MARK: Rows

    /// Where the rows live: a tensor, or a region of a mapped index file.
    private enum Rows {
        case memory(Tensor)
        case mapped(MappedFile, offset: Int)
    }

    /// Calls `body` with consecutive blocks of rows [≤ blockRows, dimension] and the index of
    /// each block's first row. Mapped rows go through one reused buffer (BLAS is reached through
    /// tensors); rows in memory are one block.
    private func forEachBlock(rows blockRows: Int, _ body: (Tensor, Int) -> Void) {
        precondition(blockRows > 0, "blocks need rows")
        switch rows {
        case .memory(let t):
            body(t, 0)
        case .mapped(let file, let offset):
            var buffer: Tensor?
            for first in stride(from: 0, to: count, by: blockRows) {
                let n = min(blockRows, count - first)
                if buffer?.shape[0] != n { buffer = Tensor.zeros([n, dimension]) }
                UnsafeMutableRawPointer(buffer!.data).copyMemory(from: file.bytes.baseAddress! + offset + first * dimension * 4, byteCount: n * dimension * 4)
                body(buffer!, first)
            }
        }
    }

    private func withRowBytes(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        switch rows {
        case .memory(let t): try body(UnsafeRawBufferPointer(start: t.data, count: t.count * 4))
        case .mapped(let file, let offset): try body(UnsafeRawBufferPointer(start: file.bytes.baseAddress! + offset, count: count * dimension * 4))
        }
    }

    private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

/// Merges `count` scores (rows `first…`) into one query's best k, kept sorted best first in
/// `best`/`at` with `filled` entries. A score enters only if it beats the current k-th, so after
/// the first few thousand rows almost every row costs one comparison.
@inline(__always)
private func keepBest(_ scores: UnsafePointer<Float>, count: Int, first: Int, k: Int,
                      best: UnsafeMutablePointer<Float>, at: UnsafeMutablePointer<Int>, filled: inout Int) {
    for j in 0..<count {
        let v = scores[j]
        if filled == k { guard v > best[k - 1] else { continue } } else { filled += 1 }
        var slot = filled - 1
        while slot > 0, best[slot - 1] < v {
            best[slot] = best[slot - 1]
            at[slot] = at[slot - 1]
            slot -= 1
        }
        best[slot] = v
        at[slot] = first + j
    }
}
