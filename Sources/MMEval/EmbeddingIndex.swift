import Dispatch
import Foundation
import MMCLIP

/// A gallery of normalised embeddings with the names they belong to, searched exactly
/// (one BLAS product, then a partial selection of the k best per query).
///
/// File layout (little-endian): magic `MMINDEX\0`, UInt32 version, UInt32 header length, a JSON
/// header (model fingerprint, dimension, names), the float32 rows [count, dimension], and a
/// UInt64 FNV-1a checksum of everything before it. Beyond memory, the same layout split into
/// shards could be memory-mapped and searched shard by shard, merging the per-shard top k.
public struct EmbeddingIndex {
    public static let magic: [UInt8] = Array("MMINDEX\u{0}".utf8)
    public static let version: UInt32 = 1

    struct Header: Codable {
        var model: String
        var dimension: Int
        var names: [String]
        var modified: [Double]?
    }

    /// Identifies the model that made the embeddings; queries must come from the same one.
    public let modelFingerprint: String
    public let names: [String]
    /// [count, dimension], unit rows.
    public let embeddings: Tensor
    /// Per name, the file's modification time (seconds since 1970) when it was embedded, if known:
    /// `mm index add` re-embeds only files that changed.
    public let modified: [Double]?

    public init(modelFingerprint: String, names: [String], embeddings: Tensor, modified: [Double]? = nil) {
        precondition(embeddings.rank == 2 && embeddings.shape[0] == names.count, "one embedding row per name")
        precondition(modified == nil || modified!.count == names.count, "one modification time per name")
        self.modelFingerprint = modelFingerprint
        self.names = names
        self.embeddings = embeddings
        self.modified = modified
    }

    public var count: Int { names.count }
    public var dimension: Int { embeddings.shape[1] }

    /// A fingerprint of a model's weights: a hash over every parameter's bits, with the config.
    public static func fingerprint(_ model: CLIPModel) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for (key, t) in model.namedParameters() {
            for byte in key.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
            let words = UnsafeRawPointer(t.data).assumingMemoryBound(to: UInt32.self)
            for i in 0..<t.count { h = (h ^ UInt64(words[i])) &* 0x0000_0100_0000_01b3 }
        }
        return String(format: "%016llx-d%d", h, model.config.embedDim)
    }

    // MARK: Files

    public func write(to url: URL) throws {
        var bytes = Self.magic
        append(Self.version, to: &bytes)
        let header = try JSONEncoder().encode(Header(model: modelFingerprint, dimension: dimension, names: names, modified: modified))
        append(UInt32(header.count), to: &bytes)
        bytes += header
        bytes.reserveCapacity(bytes.count + embeddings.count * 4 + 8)
        bytes += UnsafeRawBufferPointer(start: embeddings.data, count: embeddings.count * 4)
        append(checksum(bytes[...]), to: &bytes)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        try Data(bytes).write(to: temporary)
        _ = try? FileManager.default.removeItem(at: url)
        try FileManager.default.moveItem(at: temporary, to: url)
    }

    /// Reads and verifies an index file; a wrong magic, version, size or checksum is an error
    /// naming the file.
    public init(contentsOf url: URL) throws {
        let file = url.path
        guard let data = FileManager.default.contents(atPath: file) else { throw EvalError("\(file): cannot read the index") }
        let bytes = [UInt8](data)
        guard bytes.count >= 24, Array(bytes[0..<8]) == Self.magic else { throw EvalError("\(file): not an mm index (no MMINDEX magic)") }
        let version = Self.read(UInt32.self, bytes, at: 8)
        guard version == Self.version else { throw EvalError("\(file): index version \(version), this mm reads version \(Self.version)") }
        let stored = Self.read(UInt64.self, bytes, at: bytes.count - 8)
        guard stored == checksum(bytes[0..<(bytes.count - 8)]) else { throw EvalError("\(file): checksum mismatch, the index is corrupt (rebuild it)") }
        let headerLength = Int(Self.read(UInt32.self, bytes, at: 12))
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
        let t = Tensor.zeros([header.names.count, header.dimension])
        bytes.withUnsafeBytes { raw in UnsafeMutableRawPointer(t.data).copyMemory(from: raw.baseAddress! + start, byteCount: floats * 4) }
        self.init(modelFingerprint: header.model, names: header.names, embeddings: t, modified: header.modified)
    }

    // MARK: Search

    /// For each query row [Q, D] (normalised), the k best rows as (index, cosine), best first.
    public func search(_ queries: Tensor, k: Int) -> [[(index: Int, score: Float)]] {
        precondition(queries.rank == 2 && queries.shape[1] == dimension, "queries must have the index's dimension")
        guard count > 0 else { return Array(repeating: [], count: queries.shape[0]) }
        let scores = withoutGradients { Tensor.matmul(queries, embeddings, transposeB: true) }  // [Q, N]
        let q = queries.shape[0], n = count, s = scores.data
        var results = [[(index: Int, score: Float)]](repeating: [], count: q)
        // The selections are independent per query: spread them over the cores.
        let workers = max(1, min(Threads.count, q))
        results.withUnsafeMutableBufferPointer { out in
            let out = out
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for i in stride(from: w, to: q, by: workers) {
                    let row = s + i * n
                    out[i] = topIndices(row, count: n, k: k).map { ($0, row[$0]) }
                }
            }
        }
        return results
    }

    // MARK: Bytes

    private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: bytes[offset..<(offset + MemoryLayout<T>.size)]) }
        return T(littleEndian: v)
    }
}

/// 64-bit FNV-1a over bytes, eight at a time (one multiply per word keeps large files fast).
func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    bytes.withUnsafeBytes { raw in
        let words = raw.count / 8
        for i in 0..<words { h = (h ^ raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x0000_0100_0000_01b3 }
        for i in (words * 8)..<raw.count { h = (h ^ UInt64(raw[i])) &* 0x0000_0100_0000_01b3 }
    }
    return h
}
