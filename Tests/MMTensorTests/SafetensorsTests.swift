import Foundation
import MMTensor
import MMTestSupport
import Testing

// Safetensors reading and writing: round trips, files written by the Python library
// (fixtures from tools/check_safetensors.py make-fixtures), files mm writes checked by the Python
// library (tools/check_safetensors.py verify), and every kind of broken file.

private func fixture(_ name: String) throws -> URL {
    let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    return dir.appendingPathComponent("safetensors/\(name)")
}

/// A fresh directory, removed by `body`'s caller through `defer`.
private func scratchDirectory() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-safetensors-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// A file with the given header text and data bytes; `length` overrides the header-length field.
private func rawFile(_ dir: URL, _ header: String, data: [UInt8] = [], length: UInt64? = nil) throws -> URL {
    let url = dir.appendingPathComponent("raw-\(UUID().uuidString).safetensors")
    var bytes = withUnsafeBytes(of: (length ?? UInt64(header.utf8.count)).littleEndian) { Array($0) }
    bytes += Array(header.utf8) + data
    try Data(bytes).write(to: url)
    return url
}

/// The SafetensorsError loading `url` throws, or nil (recording an issue) when it loads or
/// throws something else.
private func loadError(_ url: URL, sourceLocation: SourceLocation = #_sourceLocation) -> SafetensorsError? {
    do {
        _ = try Safetensors(contentsOf: url)
        Issue.record("\(url.lastPathComponent) loaded, expected an error", sourceLocation: sourceLocation)
    } catch let error as SafetensorsError {
        // Every message is one line naming the file.
        #expect(error.description.contains(url.path), sourceLocation: sourceLocation)
        #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

private func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

/// Nil when `got` and `want` (float32 bit patterns) are bit-identical, except that any NaN
/// matches any NaN (converters differ in the payload they keep); else where they first differ.
private func floatMismatch(_ got: [UInt32], _ want: [UInt32]) -> String? {
    let same = { (x: UInt32, y: UInt32) in x == y || (Float(bitPattern: x).isNaN && Float(bitPattern: y).isNaN) }
    let n = min(got.count, want.count)
    let i = (0..<n).first { !same(got[$0], want[$0]) } ?? n
    if i == n && got.count == want.count { return nil }
    let show = { (v: [UInt32]) in v[i..<min(i + 4, v.count)].map { "\(Float(bitPattern: $0))" }.joined(separator: ", ") }
    return "\(got.count) vs \(want.count) values; first difference at index \(i): got [\(show(got))], want [\(show(want))]"
}

private func sample(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed
    let n = shape.reduce(1, *)
    let values = (0..<n).map { _ -> Float in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1234.5
    }
    return Tensor(shape: shape, values: values)
}

private let specials: [Float] = [
    0, -0.0, 1, -2.5, .infinity, -.infinity, .nan,
    .leastNonzeroMagnitude, .greatestFiniteMagnitude, .leastNormalMagnitude / 3
]

private func sampleFile() -> Safetensors {
    Safetensors(
        tensors: [
            "visual.proj": Tensor(shape: [2, 5], values: specials),
            "token_embedding.weight": sample([7, 3], seed: 1),
            "logit_scale": Tensor.scalar(4.6052),
            "resblocks.0.attn.in_proj_weight": sample([3, 2, 4], seed: 2),
            "empty": Tensor.zeros([0, 4])
        ],
        ids: [
            "labels": IntTensor(shape: [2, 3], values: [49406, 320, 49407, 0, -1, .max]),
            "count": IntTensor(shape: [], values: [.min])
        ],
        metadata: ["format": "pt", "note": "quoted \"text\", back\\slash, newline\n, tab\t, ünïcödé ✓ \u{1}"])
}

private func expectSame(_ a: Safetensors, _ b: Safetensors, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.tensors.keys.sorted() == b.tensors.keys.sorted(), sourceLocation: sourceLocation)
    for (key, t) in a.tensors {
        guard let u = b.tensors[key] else { continue }
        #expect(t.shape == u.shape, "\(key) shape", sourceLocation: sourceLocation)
        let mismatch = bits(t) == bits(u) ? nil : floatMismatch(bits(t), bits(u)) ?? "NaN payloads differ"
        #expect(mismatch == nil, "\(key)", sourceLocation: sourceLocation)
    }
    #expect(a.ids == b.ids, sourceLocation: sourceLocation)
    #expect(a.metadata == b.metadata, sourceLocation: sourceLocation)
}

// MARK: - Round trips and layout

@Test func roundTripKeepsTensorsIdsAndMetadata() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("model.safetensors")
    let original = sampleFile()
    try original.write(to: url)
    expectSame(original, try Safetensors(contentsOf: url))

    // Layout: header length a multiple of 8, padded with spaces, F32 keys then I32 keys by name.
    let bytes = [UInt8](try Data(contentsOf: url))
    let n = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    #expect(n % 8 == 0)
    let header = String(decoding: bytes[8..<8 + n], as: UTF8.self)
    let order = [
        "__metadata__", "empty", "logit_scale", "resblocks.0.attn.in_proj_weight",
        "token_embedding.weight", "visual.proj", "count", "labels"
    ]
    let positions = order.map { header.range(of: "\"\($0)\":")?.lowerBound }
    #expect(
        positions.allSatisfy { $0 != nil } && positions.map { $0! } == positions.map { $0! }.sorted(),
        "header order: \(header)")
    #expect(bytes.count == 8 + n + 4 * (10 + 21 + 1 + 24 + 0 + 6 + 1))

    // Writing the same contents again gives the same bytes.
    let again = dir.appendingPathComponent("again.safetensors")
    try original.write(to: again)
    #expect(try Data(contentsOf: again) == Data(bytes))
}

@Test func emptyFileRoundTrips() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("empty.safetensors")
    try Safetensors().write(to: url)
    #expect(try Data(contentsOf: url) == Data([8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8)))
    expectSame(Safetensors(), try Safetensors(contentsOf: url))
}

@Test func largeTensorRoundTripsThroughTheThreadedReader() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("large.safetensors")
    let original = Safetensors(tensors: ["w": sample([1201, 503], seed: 3)])  // > 2 × 2^18 floats
    try original.write(to: url)
    expectSame(original, try Safetensors(contentsOf: url))
}

/// A 600k-element F16 tensor is converted in two threads and many staging blocks; every element
/// must come out as the single-element conversion gives it (including the seams between blocks).
@Test func largeF16ConvertsAcrossThreadsAndBlocks() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let count = 600_001
    let halves = (0..<count).map { UInt16(truncatingIfNeeded: $0 &* 40503) }
    let header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[\(count)],\"data_offsets\":[0,\(2 * count)]}}"
    let url = try rawFile(dir, header, data: halves.withUnsafeBytes { Array($0) })
    let t = try #require(try Safetensors(contentsOf: url).tensors["h"])
    #expect(t.shape == [count])
    let mismatch = floatMismatch(bits(t), halves.map { Float(Float16(bitPattern: $0)).bitPattern })
    #expect(mismatch == nil)
}

// MARK: - Files written by the Python library

@Test func readsPythonFixtureWithEveryDtype() throws {
    let data = try Data(contentsOf: try fixture("mixed.json"))
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let expected = try #require(json["tensors"] as? [String: [String: Any]])
    let file = try Safetensors(contentsOf: try fixture("mixed.safetensors"))

    #expect(file.metadata == json["metadata"] as? [String: String])
    for (key, spec) in expected {
        let shape = try #require(spec["shape"] as? [Int])
        let values = try #require(spec["values"] as? [NSNumber])
        if (spec["dtype"] as? String)?.hasPrefix("I") == true {
            let ids = try #require(file.ids[key], "missing ids \(key)")
            #expect(ids.shape == shape, "\(key)")
            #expect(ids.values == values.map(\.int32Value), "\(key)")
        } else {
            let t = try #require(file.tensors[key], "missing tensor \(key)")
            #expect(t.shape == shape, "\(key)")
            let mismatch = floatMismatch(bits(t), values.map(\.uint32Value))
            #expect(mismatch == nil, "\(key)")
        }
    }
    // The long keys, checked against torch's own float32 conversion stored beside them.
    for key in ["f16.large", "bf16.large"] {
        let t = try #require(file.tensors[key])
        let want = try #require(file.tensors[key + ".expected"])
        #expect(t.shape == want.shape && t.count > 65_536)
        let mismatch = floatMismatch(bits(t), bits(want))
        #expect(mismatch == nil, "\(key) vs torch's conversion")
    }
    #expect(Set(file.tensors.keys).union(file.ids.keys).count == expected.count + 4)
}

@Test func refusesI64IdsOutsideInt32() throws {
    let url = try fixture("i64_overflow.safetensors")
    #expect(loadError(url) == .outOfRange(file: url.path, key: "ids", index: 1, value: 1 << 31))
}

// MARK: - Files read by the Python library

@Test(.enabled(if: ReferenceVenv.available, Comment(rawValue: ReferenceVenv.missingReason)))
func pythonSafetensorsReadsWhatWeWrite() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("mm.safetensors")
    let file = sampleFile()
    try file.write(to: url)

    var listing: [String: Any] = [:]
    for (key, t) in file.tensors { listing[key] = ["dtype": "F32", "shape": t.shape, "values": bits(t)] }
    for (key, i) in file.ids { listing[key] = ["dtype": "I32", "shape": i.shape, "values": i.values] }
    let expected = dir.appendingPathComponent("expected.json")
    try JSONSerialization.data(withJSONObject: ["metadata": file.metadata, "tensors": listing]).write(to: expected)

    let result = try ReferenceVenv.run(["tools/check_safetensors.py", "verify", url.path, expected.path])
    print(result.output, terminator: "")
    #expect(result.status == 0, "\(result.output)")
}

// MARK: - Broken files

@Test func truncatedFilesNameTheMissingTensor() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("cut.safetensors")
    try Safetensors(tensors: ["a": sample([4], seed: 4), "b": sample([3], seed: 5)]).write(to: url)
    let full = try Data(contentsOf: url)
    try full.prefix(full.count - 3).write(to: url)
    #expect(loadError(url) == .truncated(file: url.path, key: "b", needed: UInt64(full.count), size: UInt64(full.count - 3)))

    try full.prefix(5).write(to: url)
    #expect(loadError(url) == .truncated(file: url.path, key: nil, needed: 8, size: 5))

    // Cut inside the header: the length field now points past the end.
    try full.prefix(30).write(to: url)
    let length = UInt64(full[0]) | UInt64(full[1]) << 8
    #expect(loadError(url) == .headerLength(file: url.path, length: length, fileSize: 30))
}

@Test func headerLengthBeyondTheFile() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let header = "{}"
    let url = try rawFile(dir, header, length: 3)
    #expect(loadError(url) == .headerLength(file: url.path, length: 3, fileSize: 10))
    let huge = try rawFile(dir, header, length: 1 << 62)
    #expect(loadError(huge) == .headerLength(file: huge.path, length: 1 << 62, fileSize: 10))
}

@Test func invalidJSONHeaders() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let cases = [
        "{\"a\":{\"dtype\":\"F32\",", "not json", "[1,2]", "{\"a\" 1}", "{} x", "{\"a\":\"\\q\"}",
        "{\"a\":01}", String(repeating: "[", count: 10_000), "{\"\u{1}\":1}", "{\"a\":tru}",
        "{\"\\ud800\":1}"
    ]
    for header in cases {
        let url = try rawFile(dir, header)
        guard case .invalidHeader(let file, _)? = loadError(url) else {
            Issue.record("header \(header.prefix(40)) did not give invalidHeader")
            continue
        }
        #expect(file == url.path)
    }
    // Not UTF-8.
    let url = dir.appendingPathComponent("latin1.safetensors")
    try Data([4, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x22, 0xE9, 0x22]).write(to: url)
    guard case .invalidHeader? = loadError(url) else { Issue.record("non-UTF-8 header accepted"); return }
}

@Test func headersThatLieAboutOffsets() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let data = [UInt8](repeating: 0, count: 24)
    func entry(_ key: String, dtype: String = "F32", _ shape: [Int], _ begin: Int, _ end: Int) -> String {
        "\"\(key)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":[\(begin),\(end)]}"
    }
    func check(
        _ entries: [String], _ expected: (String) -> SafetensorsError, data: [UInt8] = data,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let url = try rawFile(dir, "{" + entries.joined(separator: ",") + "}", data: data)
        #expect(loadError(url, sourceLocation: sourceLocation) == expected(url.path), sourceLocation: sourceLocation)
    }

    // The honest header, to show the others fail only for their lie.
    let honest = try rawFile(dir, "{" + entry("a", [2, 1], 0, 8) + "," + entry("b", [4], 8, 24) + "}", data: data)
    #expect(try Safetensors(contentsOf: honest).tensors.count == 2)

    try check([entry("a", [2, 3], 0, 20), entry("b", [1], 20, 24)]) {
        .sizeMismatch(file: $0, key: "a", dtype: "F32", shape: [2, 3], bytes: 20)
    }
    try check([entry("a", [4], 0, 16), entry("b", [4], 8, 24)]) { .overlap(file: $0, key: "b", other: "a") }
    try check([entry("a", [2], 0, 8), entry("b", [3], 12, 24)]) { .gap(file: $0, key: "b", begin: 12, expected: 8) }
    try check([entry("a", [2], 4, 12), entry("b", [3], 12, 24)]) { .gap(file: $0, key: "a", begin: 4, expected: 0) }
    try check([entry("a", [2], 0, 8), entry("b", [2], 8, 16)]) { .trailingBytes(file: $0, count: 8) }
    let header = "{" + entry("a", [2], 0, 8) + "," + entry("b", [1000], 8, 4008) + "}"
    try check([entry("a", [2], 0, 8), entry("b", [1000], 8, 4008)]) {
        .truncated(file: $0, key: "b", needed: UInt64(8 + header.utf8.count + 4008), size: UInt64(8 + header.utf8.count + 24))
    }
    try check([entry("a", [2], 16, 8), entry("b", [4], 8, 24)]) {
        .invalidEntry(file: $0, key: "a", reason: "data_offsets [16, 8] run backwards")
    }
    try check([entry("a", [3], 0, 12), entry("a", [3], 12, 24)]) { .duplicateKey(file: $0, key: "a") }
    try check([entry("a", dtype: "U8", [24], 0, 24)]) { .unsupportedDType(file: $0, key: "a", dtype: "U8") }
    try check([entry("a", dtype: "Q7", [6], 0, 24)]) { .unsupportedDType(file: $0, key: "a", dtype: "Q7") }
    try check(["\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,24]}"]) {
        .invalidEntry(file: $0, key: "a", reason: "missing \"shape\"")
    }
    try check(["\"__metadata__\":{\"k\":1}", entry("a", [6], 0, 24)]) {
        .invalidEntry(file: $0, key: "__metadata__", reason: "the value of \"k\" is not a string")
    }
    // Offsets and shapes too big for any file must not overflow.
    try check([
        entry("a", [6], 0, 24), "\"b\":{\"dtype\":\"F64\",\"shape\":[2147483647,2147483647,2147483647],\"data_offsets\":[24,18446744073709551615]}"
    ]) {
        .invalidEntry(file: $0, key: "b", reason: "shape [2147483647, 2147483647]… has too many elements")
    }
    try check([entry("a", [6], 0, 24), "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,99999999999999999999]}"]) {
        .invalidEntry(file: $0, key: "b", reason: "\"data_offsets\" is not a pair of non-negative integers")
    }
}

@Test func missingFileAndDirectoryAreIOErrors() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let missing = dir.appendingPathComponent("nope.safetensors")
    guard case .io? = loadError(missing) else { Issue.record("missing file"); return }
    guard case .io? = loadError(dir) else { Issue.record("directory"); return }
}

/// Every truncation and many single-byte corruptions of a valid file either load or throw a
/// SafetensorsError; a crash would end the test run.
@Test func corruptedFilesNeverCrash() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("fuzz.safetensors")
    try Safetensors(
        tensors: ["a": sample([3, 2], seed: 6)], ids: ["i": IntTensor(shape: [2], values: [1, 2])],
        metadata: ["k": "v"]
    ).write(to: url)
    let valid = [UInt8](try Data(contentsOf: url))
    var mutants: [[UInt8]] = (0..<valid.count).map { Array(valid[..<$0]) }
    var state: UInt64 = 7
    for position in 0..<valid.count {
        for _ in 0..<6 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            var m = valid
            m[position] = UInt8(truncatingIfNeeded: state >> 56)
            mutants.append(m)
        }
    }
    var loaded = 0, refused = 0
    for m in mutants {
        try Data(m).write(to: url)
        do { _ = try Safetensors(contentsOf: url); loaded += 1 } catch is SafetensorsError { refused += 1 }
    }
    #expect(loaded + refused == mutants.count)
    #expect(refused > valid.count)
}

// MARK: - Atomic writes

@Test func writesAreAtomic() throws {
    let dir = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("ckpt.safetensors")
    let first = sampleFile()
    try first.write(to: url)
    try Safetensors(tensors: ["x": Tensor.scalar(2)]).write(to: url)  // replaces the first
    #expect(try Safetensors(contentsOf: url).tensors.keys.sorted() == ["x"])
    try first.write(to: url)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["ckpt.safetensors"])

    // Refused before anything is written: the old file stays whole.
    let clash = Safetensors(tensors: ["k": Tensor.scalar(1)], ids: ["k": IntTensor(shape: [], values: [1])])
    #expect(throws: SafetensorsError.duplicateKey(file: url.path, key: "k")) { try clash.write(to: url) }
    let reserved = Safetensors(tensors: ["__metadata__": Tensor.scalar(1)])
    #expect(throws: SafetensorsError.self) { try reserved.write(to: url) }
    expectSame(first, try Safetensors(contentsOf: url))

    // Fails after the data is written (the target is a non-empty directory, so the rename
    // fails): the temporary file is removed and the target untouched.
    let blocked = dir.appendingPathComponent("blocked")
    try FileManager.default.createDirectory(at: blocked, withIntermediateDirectories: false)
    try Data([1]).write(to: blocked.appendingPathComponent("inside"))
    let renameError = #expect(throws: SafetensorsError.self) { try first.write(to: blocked) }
    guard case .io(let file, _)? = renameError else { Issue.record("rename over a directory: \(String(describing: renameError))"); return }
    #expect(file == blocked.path)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["blocked", "ckpt.safetensors"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: blocked.path) == ["inside"])

    // A name at the file-system limit still leaves room for the temporary file's.
    let long = dir.appendingPathComponent(String(repeating: "é", count: 120) + ".safetensors")
    try first.write(to: long)
    expectSame(first, try Safetensors(contentsOf: long))
    try FileManager.default.removeItem(at: long)

    // A directory that does not exist.
    let nowhere = dir.appendingPathComponent("missing/ckpt.safetensors")
    let error = #expect(throws: SafetensorsError.self) { try first.write(to: nowhere) }
    guard case .io(let file, _)? = error else { Issue.record("write into a missing directory: \(String(describing: error))"); return }
    #expect(file == nowhere.path)
}
