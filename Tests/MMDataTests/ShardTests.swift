import Foundation
import MMData
import MMImage
import MMTensor
import MMTokenizer
import Testing

/// Shard URL specifications, as open_clip's `expand_urls` takes them.
struct ShardURLTests {
    @Test func bracesKeepZeroPaddingAndSourcesJoin() throws {
        #expect(try ShardURLs.expand("d/{00000..00002}.tar") == ["d/00000.tar", "d/00001.tar", "d/00002.tar"])
        #expect(try ShardURLs.expand("d/{8..10}.tar") == ["d/8.tar", "d/9.tar", "d/10.tar"])
        #expect(try ShardURLs.expand("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"])
        #expect(try ShardURLs.expand("x.tar::y/{098..100}.tar") == ["x.tar", "y/098.tar", "y/099.tar", "y/100.tar"])
        #expect(try ShardURLs.expand("file:///data/{0..1}.tar") == ["/data/0.tar", "/data/1.tar"])
        #expect(try ShardURLs.expand("plain.tar") == ["plain.tar"])
    }

    @Test func otherSchemesAndRunawayRangesAreRefusedByName() {
        for spec in ["s3://bucket/{0..3}.tar", "https://host/a.tar", "pipe:curl -s x", "d/{0..99999999}.tar", "d/{0..3.tar", "::"] {
            do {
                _ = try ShardURLs.expand(spec)
                Issue.record("\(spec) was accepted")
            } catch {
                print("refused \(spec): \(error)")
                #expect(!"\(error)".isEmpty)
            }
        }
        #expect(throws: DataError.self) { try ShardURLs.expand("s3://bucket/a.tar") }
        do { _ = try ShardURLs.expand("s3://bucket/{0..1}.tar") } catch { #expect("\(error)".contains("s3://bucket/0.tar")) }
    }

    @Test func missingShardsAreNamedUnlessSkipped() throws {
        let dir = Paths.scratch("missing-shards")
        Paths.write(dir, "0.tar", [UInt8](repeating: 0, count: 1024))
        #expect(throws: DataError.missingShards([dir + "/1.tar"])) { try ShardSet(dir + "/{0..1}.tar") }
        let set = try ShardSet(dir + "/{0..1}.tar", skipMissing: true)
        #expect(set.shards == [dir + "/0.tar"] && set.missing == [dir + "/1.tar"])
        #expect(set.sampleCount(0) == 0)
    }

    @Test func fewerShardsThanRanksIsAnError() throws {
        let dir = Paths.scratch("few-shards")
        Paths.write(dir, "0.tar", [UInt8](repeating: 0, count: 1024))
        let set = try ShardSet(dir + "/0.tar")
        let order = try ShardOrder(epochSize: 100, batchSize: 2, seed: 0, rank: 1, worldSize: 2)
        #expect(throws: DataError.tooFewShards(shards: 1, ranks: 2)) {
            try PairLoader(training: set, order: order, transform: .train(size: 16), tokenizer: try Tokenizer(contextLength: 8))
        }
    }
}

/// img2dataset's real output (tools/make_webdataset_fixtures.py, `make fixtures-webdataset`)
/// read by mm and by open_clip's own WebDataset pipeline.
@Suite(
    .serialized, .enabled(if: ShardFixtures.present, "needs .build/fixtures/webdataset (`make fixtures-webdataset`, which needs the reference venv)"))
struct ShardFixtureTests {
    static let tokenizer = try! Tokenizer(contextLength: 16)

    /// Every sample, in order, as the evaluation loader gives it.
    static func readAll(_ set: ShardSet, size: Int = 32) throws -> (names: [String], captions: [String], pixels: [Float], skipped: [SkippedImage]) {
        let loader = try PairLoader(
            evaluating: set, batchSize: 10, transform: .eval(size: size, normalization: .unit),
            tokenizer: nil, threads: 2)
        var names: [String] = [], captions: [String] = [], pixels: [Float] = [], skipped: [SkippedImage] = []
        while let b = try loader.next() {
            names += b.names
            captions += b.captions
            pixels += b.images.scalars
            skipped += b.skipped
        }
        return (names, captions, pixels, skipped)
    }

    /// The same (key, caption) pairs as open_clip's `tarfile_to_samples_nothrow` + filter, in the
    /// same order, and eval tensors equal to Pillow + open_clip's transform bit for bit.
    @Test(arguments: ["jpg", "webp"])
    func sameSamplesAndPixelsAsOpenCLIP(format: String) throws {
        let reference = try ShardFixtures.reference(format)
        let set = try ShardSet(ShardFixtures.dir + "/\(format)/{00000..00005}.tar")
        let mm = try Self.readAll(set)
        #expect(mm.skipped.isEmpty, "\(mm.skipped)")
        #expect(mm.names == reference.pairs.map(\.key))
        #expect(mm.captions == reference.pairs.map(\.caption))
        let expected = try ShardFixtures.expected(format)
        #expect(expected.count == mm.pixels.count)
        var worst: Float = 0, differing = 0
        for (a, b) in zip(mm.pixels, expected) where a * 255 != Float(b) {
            worst = max(worst, abs(a * 255 - Float(b)))
            differing += 1
        }
        print("\(format) shards: \(mm.names.count) samples, \(differing) of \(expected.count) values differ from Pillow, max \(worst)")
        #expect(differing == 0)
    }

    /// Epoch size: img2dataset's *_stats.json, else a counting pass over the headers (cached).
    @Test func epochSizeFromStatsElseCounted() throws {
        let set = try ShardSet(ShardFixtures.dir + "/jpg/{00000..00005}.tar")
        let stats = try set.epochSize(given: nil)
        #expect(stats.count == 96 && stats.source == .stats)
        #expect(try set.epochSize(given: 1000).count == 1000)
        let bad = try ShardSet(ShardFixtures.dir + "/bad/{corrupt,empty,gnuname,nocaption,paxname,truncated}.tar")
        let cache = URL(fileURLWithPath: Paths.scratch("counts") + "/counts.json")
        var progress: [Int] = []
        let counted = try bad.epochSize(given: nil, cache: cache) { done, _ in progress.append(done) }
        #expect(counted.source == .counted && progress == Array(1...6))
        #expect(counted.count == (try ShardFixtures.reference("bad")).pairs.count)
        let again = try ShardSet(bad.spec).epochSize(given: nil, cache: cache)
        #expect(again.count == counted.count && again.source == .cache)
    }

    /// Damaged shards: a truncated member, a corrupt JPEG, a sample without caption, an empty
    /// tar, 300-character pax and GNU long names. Each is skipped and counted (or read, for the
    /// long names, as webdataset reads them) and the pass finishes.
    @Test func badShardsAreSkippedAndCounted() throws {
        let reference = try ShardFixtures.reference("bad")
        let set = try ShardSet(ShardFixtures.dir + "/bad/{corrupt,empty,gnuname,nocaption,paxname,truncated}.tar")
        let mm = try Self.readAll(set)
        for s in mm.skipped { print("skipped \(s)") }
        let imageFailures = mm.skipped.filter { $0.error != nil }
        #expect(imageFailures.count == 1 && imageFailures[0].reason.contains("JPEG") && imageFailures[0].path.contains("corrupt.tar"))
        // nocaption.tar's sample, and the sample of truncated.tar whose caption was cut off.
        #expect(mm.skipped.filter { $0.reason.contains("no caption") }.count == 2)
        #expect(mm.skipped.filter { $0.reason.contains("truncated shard") && $0.path.hasSuffix("truncated.tar") }.count == 1)
        #expect(mm.skipped.count == 4)
        // What open_clip's pipeline yields before decoding = what mm loaded + the corrupt image
        // (as multisets: the damaged shards share samples).
        var remaining = reference.pairs.map { "\($0.key)\t\($0.caption)" }
        for pair in zip(mm.names, mm.captions).map({ "\($0)\t\($1)" }) {
            guard let i = remaining.firstIndex(of: pair) else { Issue.record("mm read \(pair), open_clip did not"); continue }
            remaining.remove(at: i)
        }
        print("open_clip only: \(remaining)")
        #expect(remaining.count == 1 && remaining[0].hasPrefix(imageFailures.first.map { String($0.location.split(separator: " ").last!) } ?? "?"))
        #expect(mm.names.contains { $0.count >= 290 }, "the long pax/GNU names were read")
    }

    /// Exact resume: stopping after any batch and starting a new loader at that batch's `next`
    /// gives the remaining batches bit for bit — with a shuffle buffer, and with resampling.
    @Test(arguments: [(20, false), (20, true), (0, false)])
    func resumeContinuesExactly(shuffleBuffer: Int, resampled: Bool) throws {
        let set = try ShardSet(ShardFixtures.dir + "/jpg/{00000..00005}.tar")
        let order = try ShardOrder(epochSize: 96, batchSize: 8, seed: 7, shuffleBuffer: shuffleBuffer, resampled: resampled)
        func run(from start: LoaderPosition = .start) throws -> [PairBatch] {
            let loader = try PairLoader(
                training: set, order: order, transform: .train(size: 24), tokenizer: Self.tokenizer,
                start: start, epochs: 2, threads: 2)
            var out: [PairBatch] = []
            while let b = try loader.next() { out.append(b) }
            return out
        }
        let straight = try run()
        #expect(straight.count == 24)
        let again = try run()
        #expect(zip(straight, again).allSatisfy { $0.images.scalars == $1.images.scalars && $0.names == $1.names })
        let firstEpoch = straight.prefix(12).flatMap(\.names), secondEpoch = straight.suffix(12).flatMap(\.names)
        if shuffleBuffer > 1 || resampled {
            #expect(firstEpoch != secondEpoch, "epochs are ordered differently")
        }
        if !resampled {
            #expect(Set(firstEpoch).count == 96, "one pass over the shards per epoch")
        }
        for k in [1, 5, 11, 12, 17] {
            let resumed = try run(from: straight[k - 1].next)
            #expect(resumed.count == 24 - k)
            for (a, b) in zip(straight[k...], resumed) {
                #expect(a.names == b.names && a.epoch == b.epoch && a.index == b.index, "after \(k): batch \(a.index)")
                #expect(a.images.scalars == b.images.scalars && a.ids.values == b.ids.values, "after \(k): batch \(a.index)")
            }
        }
    }

    /// Ranks read disjoint shards. With the sample shuffle off and shards of exactly b samples,
    /// 2 ranks × b see the global batches 1 rank × 2b sees — the same samples, pixels and tokens,
    /// rank 0's half first (the all-gather's order) — so their losses are those of one process.
    @Test func twoRanksOfBSeeTheGlobalBatchOfOneRankOf2B() throws {
        let set = try ShardSet(ShardFixtures.dir + "/jpg/{00000..00005}.tar")
        func batches(rank: Int, ranks: Int, batch: Int) throws -> [PairBatch] {
            let order = try ShardOrder(epochSize: 96, batchSize: batch, seed: 11, rank: rank, worldSize: ranks, shuffleBuffer: 0)
            let loader = try PairLoader(
                training: set, order: order, transform: .train(size: 24), tokenizer: Self.tokenizer,
                epochs: 2, threads: 2)
            var out: [PairBatch] = []
            while let b = try loader.next() { out.append(b) }
            return out
        }
        let one = try batches(rank: 0, ranks: 1, batch: 32)
        let (r0, r1) = (try batches(rank: 0, ranks: 2, batch: 16), try batches(rank: 1, ranks: 2, batch: 16))
        #expect(one.count == 6 && r0.count == 6 && r1.count == 6)
        for (i, (g, (a, b))) in zip(one, zip(r0, r1)).enumerated() {
            #expect(g.names == a.names + b.names, "global batch \(i)")
            #expect(g.images.scalars == a.images.scalars + b.images.scalars, "global batch \(i) pixels")
            #expect(g.ids.values == a.ids.values + b.ids.values, "global batch \(i) tokens")
        }
        // Within an epoch the two ranks' shards are disjoint.
        for epoch in 0..<2 {
            let a = Set(r0.filter { $0.epoch == epoch }.flatMap(\.names)), b = Set(r1.filter { $0.epoch == epoch }.flatMap(\.names))
            #expect(a.isDisjoint(with: b) && a.count == 48 && b.count == 48, "epoch \(epoch)")
        }
    }
}

enum ShardFixtures {
    static let dir = Paths.root + "/.build/fixtures/webdataset"
    static var present: Bool { FileManager.default.fileExists(atPath: dir + "/done") }

    struct Pair: Codable { var key: String; var caption: String; var shard: String }
    struct Reference: Codable { var pairs: [Pair]; var shards: [String]; var size: Int }

    static func reference(_ folder: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(folder)/reference.json")))
    }

    /// expected_S32.npy: uint8 [N, 3, 32, 32].
    static func expected(_ folder: String) throws -> [UInt8] {
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(folder)/expected_S32.npy")))
        precondition(raw.count > 10 && raw[6] == 1, "npy v1")
        let headerLength = Int(raw[8]) | Int(raw[9]) << 8
        return Array(raw[(10 + headerLength)...])
    }
}

/// Hostile tar headers, written byte by byte: every field is checked before it sizes anything.
struct TarHeaderTests {
    static let jpeg = [UInt8](FileManager.default.contents(atPath: Paths.shapes + "/images/train/000000.jpg")!)

    /// A ustar header for `name` with the given size field (12 bytes) and type.
    static func header(_ name: String, sizeField: [UInt8], type: UInt8 = UInt8(ascii: "0"), breakChecksum: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        for (i, b) in name.utf8.prefix(100).enumerated() { h[i] = b }
        for (i, b) in "0000644\0".utf8.enumerated() { h[100 + i] = b }
        for (i, b) in sizeField.enumerated() { h[124 + i] = b }
        h[156] = type
        for (i, b) in "ustar\0".utf8.enumerated() { h[257 + i] = b }
        h[263] = UInt8(ascii: "0"); h[264] = UInt8(ascii: "0")
        for i in 148..<156 { h[i] = UInt8(ascii: " ") }
        var sum = h.reduce(0) { $0 + Int($1) }
        if breakChecksum { sum += 1 }
        for (i, b) in Self.zeroPadded(String(sum, radix: 8), 6).utf8.enumerated() { h[148 + i] = b }
        h[154] = 0; h[155] = UInt8(ascii: " ")
        return h
    }

    static func zeroPadded(_ s: String, _ width: Int) -> String { String(repeating: "0", count: max(0, width - s.count)) + s }

    static func octal(_ n: Int) -> [UInt8] {
        Array(zeroPadded(String(n, radix: 8), 11).utf8) + [0]
    }

    static func member(_ name: String, _ data: [UInt8]) -> [UInt8] {
        header(name, sizeField: octal(data.count)) + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    static func pax(_ records: [String: String]) -> [UInt8] {
        var body: [UInt8] = []
        for (k, v) in records.sorted(by: { $0.key < $1.key }) {
            let rest = " \(k)=\(v)\n"
            var length = rest.utf8.count + 1
            while String(length).count + rest.utf8.count != length { length += 1 }
            body += Array("\(length)\(rest)".utf8)
        }
        return header("PaxHeader", sizeField: octal(body.count), type: UInt8(ascii: "x")) + body
            + [UInt8](repeating: 0, count: (512 - body.count % 512) % 512)
    }

    static func read(_ tars: [String: [UInt8]], keys: WebDatasetKeys = WebDatasetKeys()) throws
        -> (names: [String], captions: [String], skipped: [String])
    {
        let dir = Paths.scratch("tar-" + UUID().uuidString)
        for (name, bytes) in tars { Paths.write(dir, name, bytes) }
        let set = try ShardSet(tars.keys.sorted().map { dir + "/" + $0 }.joined(separator: "::"), keys: keys)
        let loader = try PairLoader(evaluating: set, batchSize: 4, transform: .eval(size: 16), tokenizer: nil, threads: 1)
        var names: [String] = [], captions: [String] = [], skipped: [String] = []
        while let b = try loader.next() {
            names += b.names
            captions += b.captions
            skipped += b.skipped.map(\.reason)
        }
        return (names, captions, skipped)
    }

    /// Captions from `.txt` (UTF-8 only) or from a field of `.json` (--json-text-key).
    @Test func captionsFromTextOrJSON() throws {
        let shard =
            Self.member("a.jpg", Self.jpeg) + Self.member("a.txt", [0x61, 0xFF, 0x62])
            + Self.member("b.jpg", Self.jpeg) + Self.member("b.json", Array(#"{"caption": "a blue square", "n": 1}"#.utf8))
            + Self.member("c.jpg", Self.jpeg) + Self.member("c.json", Array(#"{"title": 3}"#.utf8))
            + Self.member("d.jpg", Self.jpeg) + Self.member("d.txt", Array("a green star".utf8))
            + [UInt8](repeating: 0, count: 1024)
        let text = try Self.read(["s.tar": shard])
        #expect(text.names == ["d"] && text.captions == ["a green star"])
        #expect(text.skipped.count == 3, "\(text.skipped)")
        #expect(text.skipped.filter { $0.contains("not valid UTF-8") }.count == 1)
        #expect(text.skipped.filter { $0.contains("no caption (.txt)") }.count == 2)
        let json = try Self.read(["s.tar": shard], keys: WebDatasetKeys(jsonText: "caption"))
        #expect(json.names == ["b"] && json.captions == ["a blue square"])
        #expect(json.skipped.filter { $0.contains("no string field 'caption'") }.count == 1)
        #expect(json.skipped.filter { $0.contains("no caption (.json)") }.count == 2, "\(json.skipped)")
    }

    @Test func goodSampleThenHostileHeaders() throws {
        let good = Self.member("a.jpg", Self.jpeg) + Self.member("a.txt", Array("a red circle".utf8))
        let end = [UInt8](repeating: 0, count: 1024)
        var huge = [UInt8](repeating: 0xFF, count: 12); huge[0] = 0x80  // base-256 size near Int.max
        var negative = [UInt8](repeating: 0xFF, count: 12); negative[0] = 0xFF
        let cases: [String: [UInt8]] = [
            "0-good.tar": good + end,
            "1-checksum.tar": good + Self.header("b.jpg", sizeField: Self.octal(10), breakChecksum: true) + end,
            "2-huge.tar": good + Self.header("b.jpg", sizeField: huge) + end,
            "3-negative.tar": good + Self.header("b.jpg", sizeField: negative) + end,
            "4-garbage-size.tar": good + Self.header("b.jpg", sizeField: Array("12x4\0\0\0\0\0\0\0\0".utf8)) + end,
            "5-pax-size.tar": good + Self.pax(["size": "99999999999", "path": "b.jpg"]) + Self.member("b.jpg", Self.jpeg) + end,
            "6-pax-path.tar": Self.pax(["path": String(repeating: "p", count: 250) + "/key.jpg"]) + Self.member("x.jpg", Self.jpeg)
                + Self.pax(["path": String(repeating: "p", count: 250) + "/key.txt"]) + Self.member("x.txt", Array("long".utf8)) + end,
            "7-cut-header.tar": good + Array(Self.header("b.jpg", sizeField: Self.octal(10)).prefix(100))
        ]
        let (names, _, skipped) = try Self.read(cases)
        for s in skipped { print("tar: \(s)") }
        #expect(names == Array(repeating: "a", count: 6) + [String(repeating: "p", count: 250) + "/key"] + ["a"])
        #expect(skipped.filter { $0.contains("checksum") }.count == 1)
        #expect(skipped.filter { $0.contains("invalid size field") }.count == 3)  // huge, negative, garbage
        #expect(skipped.filter { $0.contains("truncated shard") }.count == 2)  // pax size past the end, cut header
        #expect(skipped.count == 6)
    }
}
