import Foundation
import MMFoundation
import MMImage
import MMTensor

/// A set of WebDataset tar shards — data as img2dataset writes it and open_clip reads it — as
/// a sample source. `PairLoader(training:order:…)` and `PairLoader(evaluating:…)` read it the
/// way they read a `Manifest`.
///
/// Shards are named by an open_clip URL specification (see `ShardURLs`). A missing shard is an
/// error unless `skipMissing` is set; then it is left out and listed in `missing`.
public final class ShardSet: @unchecked Sendable {
    /// The specification as given.
    public let spec: String
    /// The shard files, in specification order.
    public let shards: [String]
    /// Named shards that do not exist (only with `skipMissing`).
    public let missing: [String]
    public let keys: WebDatasetKeys

    private let lock = NSLock()
    private var counts: [Int: Int] = [:]

    public init(_ spec: String, keys: WebDatasetKeys = WebDatasetKeys(), skipMissing: Bool = false) throws {
        let all = try ShardURLs.expand(spec)
        var present: [String] = [], missing: [String] = []
        for path in all {
            var info = stat()
            if stat(path, &info) == 0 && (info.st_mode & S_IFMT) != S_IFDIR { present.append(path) } else { missing.append(path) }
        }
        if !missing.isEmpty && !skipMissing { throw DataError.missingShards(missing) }
        if present.isEmpty { throw DataError.badShardSpec(spec: spec, reason: "none of its \(all.count) shards exist") }
        self.spec = spec
        shards = present
        self.missing = missing
        self.keys = keys
    }

    /// Usable samples (with caption and image members) in shard `i`, from one pass over its
    /// headers (cached). An unreadable shard counts as empty.
    public func sampleCount(_ i: Int) -> Int {
        lock.lock()
        if let n = counts[i] { lock.unlock(); return n }
        lock.unlock()
        var n = 0
        if let reader = try? ShardReader(path: shards[i], keys: keys) {
            while reader.next() != nil { n += 1 }
        }
        lock.lock(); counts[i] = n; lock.unlock()
        return n
    }

    /// Where an epoch's size came from, for the log.
    public enum SizeSource: String, Sendable, Codable {
        case given = "--train-num-samples"
        case sizesJSON = "sizes.json"
        case lenFile = "__len__"
        case stats = "img2dataset *_stats.json (successes)"
        case cache = "counting pass (cached)"
        case counted = "counting pass over the tar headers"
    }

    /// The number of samples in one epoch, and where it came from: `given`, else `sizes.json` or
    /// `__len__` in the first shard's folder (as open_clip), else the sum of `successes` over
    /// img2dataset's `NNNNN_stats.json` beside every shard, else one pass over the tar headers
    /// (`progress(done, total)` after each shard), whose per-shard counts are kept in `cache`.
    public func epochSize(given: Int?, cache: URL? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> (count: Int, source: SizeSource) {
        if let given { return (given, .given) }
        let folder = URL(fileURLWithPath: shards[0]).deletingLastPathComponent()
        if let data = Self.smallFile(folder.appendingPathComponent("sizes.json").path),
            let sizes = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            var total = 0
            for shard in shards {
                let name = URL(fileURLWithPath: shard).lastPathComponent
                guard let n = (sizes[name] as? NSNumber)?.intValue ?? (sizes[name] as? String).flatMap(Int.init), n >= 0 else {
                    throw DataError.badShardSpec(spec: folder.appendingPathComponent("sizes.json").path, reason: "has no size for \(name)")
                }
                total += n
            }
            return (total, .sizesJSON)
        }
        if let text = Self.smallFile(folder.appendingPathComponent("__len__").path).flatMap({ String(data: $0, encoding: .utf8) }),
            let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), n >= 0
        {
            return (n, .lenFile)
        }
        if let total = statsTotal() { return (total, .stats) }
        var cached: [String: [Int]] = [:]  // path → [file size, samples]
        if let cache, let data = Self.smallFile(cache.path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: [Int]]
        {
            cached = object
        }
        var total = 0, fromCache = true
        for (i, shard) in shards.enumerated() {
            let size = fileSize(shard)
            if let entry = cached[shard], entry.count == 2, entry[0] == size, entry[1] >= 0 {
                lock.lock(); counts[i] = entry[1]; lock.unlock()
                total += entry[1]
            } else {
                fromCache = false
                let n = sampleCount(i)
                cached[shard] = [size, n]
                total += n
            }
            progress?(i + 1, shards.count)
        }
        if let cache, !fromCache, let data = try? JSONSerialization.data(withJSONObject: cached, options: [.sortedKeys]) {
            try? AtomicFile.write(data, to: cache.path)
        }
        return (total, fromCache ? .cache : .counted)
    }

    private func statsTotal() -> Int? {
        var total = 0
        for shard in shards {
            guard shard.hasSuffix(".tar") else { return nil }
            let stats = String(shard.dropLast(4)) + "_stats.json"
            guard let data = Self.smallFile(stats),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let n = (object["successes"] as? NSNumber)?.intValue, n >= 0
            else { return nil }
            total += n
        }
        return total
    }

    /// A side file's contents: a regular file of at most 64 MiB (never a FIFO waited on, nor
    /// `/dev/zero` read forever), else nil, as a missing one.
    private static func smallFile(_ path: String) -> Data? {
        guard let file = try? ReadableFile(path, maxSize: 64 << 20), let bytes = try? file.readAll() else { return nil }
        return Data(bytes)
    }

    private func fileSize(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : -1
    }
}

/// The order in which one data-parallel rank reads a shard set, epoch by epoch.
///
/// - **Shards.** Epoch `e` shuffles the shard list with a generator seeded from `(seed, e)` (the
///   same on every rank) and rank `r` takes every `worldSize`-th shard from position `r`, as
///   open_clip's `detshuffle2` + `split_by_node`: ranks read disjoint shards. There must be at
///   least as many shards as ranks. With `resampled`, each rank instead draws shards with
///   replacement from the whole set, seeded from `(seed, e, r)` (open_clip's `ResampledShards2`).
///   A rank that reaches the end of its shards before the epoch ends starts them again.
/// - **Samples.** The rank's samples, shard after shard, are shuffled in consecutive blocks of
///   `shuffleBuffer` samples (each block permuted with a generator seeded from `(seed, e, r,
///   block)`, never across the start of a new pass over the rank's shards); `shuffleBuffer` ≤ 1
///   keeps shard order. Only one block is in memory.
/// - **Epochs** have `batchesPerEpoch = epochSize / (batchSize × worldSize)` full batches.
/// - **Resume.** A position in the stream fixes the block it is in; the loader finds the block's
///   start by counting headers (no data read) and re-reads at most that one block.
public struct ShardOrder: Sendable, Equatable {
    /// Samples per epoch over all ranks (see `ShardSet.epochSize`).
    public let epochSize: Int
    public let batchSize: Int
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int
    public let shuffleBuffer: Int
    public let resampled: Bool

    public static let defaultShuffleBuffer = 2000

    public init(
        epochSize: Int, batchSize: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1,
        shuffleBuffer: Int = ShardOrder.defaultShuffleBuffer, resampled: Bool = false
    ) throws {
        precondition(batchSize > 0, "batch size must be positive")
        precondition(worldSize > 0 && rank >= 0 && rank < worldSize, "rank \(rank) outside world size \(worldSize)")
        if batchSize * worldSize > epochSize {
            throw DataError.batchLargerThanData(batchSize: batchSize * worldSize, samples: epochSize)
        }
        self.epochSize = epochSize
        self.batchSize = batchSize
        self.seed = seed
        self.rank = rank
        self.worldSize = worldSize
        self.shuffleBuffer = max(0, shuffleBuffer)
        self.resampled = resampled
    }

    public var batchesPerEpoch: Int { epochSize / (batchSize * worldSize) }

    /// Samples per block: the shuffle buffer, or a read-ahead of 64 when not shuffling.
    var blockSize: Int { shuffleBuffer > 1 ? shuffleBuffer : 64 }
    var shuffles: Bool { shuffleBuffer > 1 }

    /// The shards this rank reads in `epoch` (one pass; resampled: the first `count` draws).
    func shardList(epoch: Int, shardCount: Int) -> [Int] {
        if resampled { return [] }
        var order = Array(0..<shardCount)
        var rng = SeededGenerator(seed: Seeds.shards(seed: seed, epoch: epoch))
        var i = shardCount - 1
        while i > 0 {
            order.swapAt(i, Int(rng.below(UInt64(i + 1))))
            i -= 1
        }
        return stride(from: rank, to: shardCount, by: worldSize).map { order[$0] }
    }
}

extension Seeds {
    static func shards(seed: UInt64, epoch: Int) -> UInt64 {
        mix(mix(seed ^ 0x5348_5244) ^ UInt64(truncatingIfNeeded: epoch))
    }

    static func resample(seed: UInt64, epoch: Int, rank: Int) -> UInt64 {
        mix(mix(mix(seed ^ 0x5253_4D50) ^ UInt64(truncatingIfNeeded: epoch)) ^ UInt64(truncatingIfNeeded: rank))
    }

    static func block(seed: UInt64, epoch: Int, rank: Int, block: Int) -> UInt64 {
        mix(
            mix(mix(mix(seed ^ 0x424C_4B53) ^ UInt64(truncatingIfNeeded: epoch)) ^ UInt64(truncatingIfNeeded: rank))
                ^ UInt64(truncatingIfNeeded: block))
    }
}

/// A rank's stream of shard samples for the loader: the raw stream (its shards in order, their
/// usable samples in order) cut into blocks, each read into memory and permuted.
final class ShardFeed: SampleFeed {
    let set: ShardSet
    let order: ShardOrder?

    // The raw stream: which visit (shard of the epoch's list) is open, and how far in.
    private var epoch = -1
    private var list: [Int] = []
    private var resampler: SeededGenerator?
    private var draws: [Int] = []
    private var visit = 0
    private var reader: ShardReader?
    private var rawPosition = 0
    private var emptyVisits = 0
    private var finished = false

    // The block in memory.
    private var blockIndex = -1
    private var block: [FeedSample] = []
    private var blockOrder: [Int] = []
    private var skips: [SkippedImage] = []

    init(_ set: ShardSet, order: ShardOrder?) throws {
        if let order, !order.resampled, set.shards.count < order.worldSize {
            throw DataError.tooFewShards(shards: set.shards.count, ranks: order.worldSize)
        }
        self.set = set
        self.order = order
    }

    var streamLength: Int? { nil }

    /// Larger members are skipped unread: a hostile size must not become an allocation.
    static let maxImageBytes = 1 << 28, maxCaptionBytes = 1 << 24

    func drainSkips() -> [SkippedImage] {
        defer { skips = [] }
        return skips
    }

    var blockSize: Int { order?.blockSize ?? 64 }

    func samples(epoch: Int, from start: Int, count: Int) throws -> [FeedSample] {
        var out: [FeedSample] = []
        out.reserveCapacity(count)
        var p = start
        while out.count < count {
            let b = p / blockSize
            if b != blockIndex || epoch != self.epoch { try load(block: b, epoch: epoch) }
            let offset = p - b * blockSize
            if offset >= block.count { break }  // the end of a finite (evaluation) stream
            out.append(block[blockOrder[offset]])
            p += 1
        }
        return out
    }

    /// Reads block `b` of `epoch` into memory, moving the raw stream to its start first.
    private func load(block b: Int, epoch: Int) throws {
        let target = b * blockSize
        if epoch != self.epoch || target < rawPosition {
            restart(epoch: epoch)
        }
        // Forward to the block's start without reading data (a resume, or a skipped block).
        while rawPosition < target {
            if reader == nil {
                guard try openNextVisit() else { break }
                // Whole shards are skipped by their counts.
                let n = set.sampleCount(currentShard)
                emptyVisits = n == 0 ? emptyVisits + 1 : 0
                if rawPosition + n <= target {
                    rawPosition += n
                    reader = nil
                    continue
                }
                samplesInVisit = 0
            }
            if reader!.next() == nil { reader = nil; continue }
            rawPosition += 1
            samplesInVisit += 1
        }
        // Anything the headers skipped on the way was logged when it was first read.
        reportedSkips = reader?.skips.count ?? 0
        var samples: [FeedSample] = [], rounds: [Int] = []
        samples.reserveCapacity(blockSize)
        while samples.count < blockSize, let sample = try nextRaw() {
            samples.append(sample)
            rounds.append(currentRound)
        }
        block = samples
        blockIndex = b
        blockOrder = Array(0..<samples.count)
        if let order, order.shuffles {
            // Shuffle within each pass over the rank's shards, never across: a pass keeps its
            // own stream positions, so an epoch of one pass's length sees every sample once.
            var rng = SeededGenerator(seed: Seeds.block(seed: order.seed, epoch: epoch, rank: order.rank, block: b))
            var start = 0
            while start < samples.count {
                var end = start + 1
                while end < samples.count && rounds[end] == rounds[start] { end += 1 }
                var i = end - 1
                while i > start {
                    blockOrder.swapAt(i, start + Int(rng.below(UInt64(i - start + 1))))
                    i -= 1
                }
                start = end
            }
        }
    }

    private func restart(epoch: Int) {
        self.epoch = epoch
        visit = 0
        reader = nil
        rawPosition = 0
        emptyVisits = 0
        finished = false
        draws = []
        if let order {
            list = order.shardList(epoch: epoch, shardCount: set.shards.count)
            resampler = order.resampled ? SeededGenerator(seed: Seeds.resample(seed: order.seed, epoch: epoch, rank: order.rank)) : nil
        } else {
            list = Array(set.shards.indices)
            resampler = nil
        }
    }

    private var currentShard = 0

    /// Opens the shard of the next visit; false at the end of a finite stream.
    private func openNextVisit() throws -> Bool {
        let shard: Int
        if var rng = resampler {
            while draws.count <= visit { draws.append(Int(rng.below(UInt64(set.shards.count)))) }
            resampler = rng
            shard = draws[visit]
            if emptyVisits > 10 * set.shards.count + 100 { throw DataError.noShardSamples(spec: set.spec, rank: order?.rank ?? 0) }
        } else {
            if order == nil && visit >= list.count { finished = true; return false }
            if emptyVisits > list.count { throw DataError.noShardSamples(spec: set.spec, rank: order?.rank ?? 0) }
            shard = list[visit % list.count]
        }
        currentShard = shard
        currentRound = resampler != nil ? visit : visit / max(1, list.count)
        visit += 1
        do {
            reader = try ShardReader(path: set.shards[shard], keys: set.keys)
        } catch {
            skips.append(SkippedImage(index: -1, line: 0, location: set.shards[shard], path: set.shards[shard], reason: "\(error)"))
            reader = nil
            emptyVisits += 1
            return try openNextVisit()
        }
        return true
    }

    private var currentRound = 0
    private var samplesInVisit = 0
    private var reportedSkips = 0

    /// The next sample of the raw stream with its bytes read, or nil at the end of a finite stream.
    private func nextRaw() throws -> FeedSample? {
        while true {
            if reader == nil {
                guard try openNextVisit() else { return nil }
                samplesInVisit = 0
                reportedSkips = 0
            }
            let shardReader = reader!
            guard let sample = shardReader.next() else {
                skips += shardReader.skips.dropFirst(reportedSkips).map {
                    SkippedImage(index: -1, line: 0, location: $0.shard, path: $0.shard, reason: $0.description)
                }
                if samplesInVisit == 0 { emptyVisits += 1 } else { emptyVisits = 0 }
                reader = nil
                continue
            }
            samplesInVisit += 1
            rawPosition += 1
            let path = set.shards[currentShard]
            let id = Int(
                bitPattern: UInt(Seeds.mix(UInt64(currentShard) << 32 | UInt64(sample.ordinal)) ^ UInt64(currentRound) &* 0x9E37_79B9_7F4A_7C15))
            var imageBytes: [UInt8] = [], captionBytes: [UInt8] = []
            var failure: String?
            if sample.image.size > Self.maxImageBytes || sample.caption.size > Self.maxCaptionBytes {
                failure = "member too large (image \(sample.image.size) bytes, caption \(sample.caption.size) bytes)"
            } else if !shardReader.reader.read(sample.image, into: &imageBytes) || !shardReader.reader.read(sample.caption, into: &captionBytes) {
                failure = "cannot read the sample's members"
            }
            var caption: String?
            if failure == nil {
                switch CaptionReader.caption(captionBytes, keys: set.keys) {
                case .success(let text): caption = text
                case .failure(let error): failure = error.description
                }
            }
            return FeedSample(
                id: id, image: .bytes(imageBytes, name: "\(path):\(sample.key).\(sample.imageExtension)"), caption: caption,
                line: 0, location: "\(path) sample \(sample.key)", name: sample.key, failure: failure)
        }
    }
}
