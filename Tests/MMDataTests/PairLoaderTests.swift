import Foundation
import MMData
import MMImage
import MMTensor
import MMTokenizer
import Testing

@Suite struct PairLoaderTests {
    static let tokenizer = try! Tokenizer(contextLength: 32)
    /// Augmentation with every random part on, so determinism covers all of it.
    static let train = ImageTransform.train(
        size: 32, augmentation: Augmentation(scale: 0.5...1.0, colorJitter: ColorJitter(), grayscaleProbability: 0.2))

    /// The first `count` training pairs of the shapes set (a manifest beside the real one).
    static func subset(_ count: Int) throws -> Manifest {
        let lines = try String(contentsOfFile: Paths.shapes + "/train.tsv", encoding: .utf8).split(separator: "\n").prefix(count + 1)
        return try Manifest(parsing: Array((lines.joined(separator: "\n") + "\n").utf8), path: Paths.shapes + "/subset.tsv")
    }

    static func collect(_ loader: PairLoader, _ count: Int) throws -> [PairBatch] {
        var out: [PairBatch] = []
        while out.count < count, let b = try loader.next() { out.append(b) }
        return out
    }

    static func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

    /// nil when equal, else where they first differ (short failure messages for big arrays).
    static func difference<T: Equatable>(_ a: [T], _ b: [T]) -> String? {
        if a == b { return nil }
        if a.count != b.count { return "counts \(a.count) vs \(b.count)" }
        let i = a.indices.first { a[$0] != b[$0] }!
        return "element \(i): \(a[i]) vs \(b[i])"
    }

    static func expectSame(_ a: [PairBatch], _ b: [PairBatch], _ label: String) {
        #expect(a.count == b.count, "\(label): batch counts")
        for (x, y) in zip(a, b) {
            #expect(x.epoch == y.epoch && x.index == y.index && x.next == y.next, "\(label): positions")
            #expect(x.indices == y.indices, "\(label): epoch \(x.epoch) batch \(x.index) indices")
            #expect(difference(x.ids.values, y.ids.values) == nil && x.captions == y.captions, "\(label): epoch \(x.epoch) batch \(x.index) ids")
            #expect(x.skipped == y.skipped, "\(label): epoch \(x.epoch) batch \(x.index) skipped")
            #expect(difference(bits(x.images), bits(y.images)) == nil, "\(label): epoch \(x.epoch) batch \(x.index) pixels")
        }
    }

    @Test func batchesHoldTheOrderedSamplesTokenised() throws {
        let manifest = try Self.subset(40)
        let order = try EpochOrder(sampleCount: 40, batchSize: 8, seed: 11)
        let loader = try PairLoader(training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer, epochs: 2)
        #expect(loader.threads == Threads.count && loader.prefetch == 2)
        let batches = try Self.collect(loader, 100)
        #expect(batches.count == 10)
        #expect(try loader.next()?.count == nil)
        for b in batches {
            #expect(b.images.shape == [8, 3, 32, 32] && b.ids.shape == [8, 32])
            #expect(b.indices == order.batch(b.index, epoch: b.epoch))
            #expect(b.captions == b.indices.map { manifest.captions![$0] })
            #expect(Self.difference(b.ids.values, Self.tokenizer.tokenize(b.captions, contextLength: 32, threads: 1)) == nil)
            #expect(b.skipped.isEmpty)
        }
        #expect(batches.map(\.epoch) == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
        #expect(batches[4].next == .start.with(epoch: 1))
        // Augmented: different from the plain eval crop, and different in the next epoch.
        let eval = ImagePipeline(transform: .eval(size: 32))
        let plain = try eval.process(path: manifest.images[batches[0].indices[0]])
        #expect(Self.difference(Array(batches[0].images.scalars.prefix(3 * 32 * 32)), plain.scalars) != nil)
    }

    @Test func sameSeedSameBatchesWhateverTheThreads() throws {
        let manifest = try Self.subset(48)
        let order = try EpochOrder(sampleCount: 48, batchSize: 16, seed: 7)
        let a = try Self.collect(PairLoader(training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer, epochs: 2), 100)
        let b = try Self.collect(
            PairLoader(
                training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer,
                epochs: 2, threads: 1, prefetch: 1), 100)
        let c = try Self.collect(
            PairLoader(
                training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer,
                epochs: 2, threads: 3, prefetch: 4), 100)
        let d = try Self.collect(
            PairLoader(
                training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer,
                epochs: 2, background: true), 100)
        #expect(a.count == 6)
        Self.expectSame(a, b, "2 threads vs 1")
        Self.expectSame(a, c, "2 threads vs 3")
        Self.expectSame(a, d, "normal vs background priority")

        let other = try Self.collect(
            PairLoader(
                training: manifest, order: EpochOrder(sampleCount: 48, batchSize: 16, seed: 8),
                transform: Self.train, tokenizer: Self.tokenizer, epochs: 1), 1)
        #expect(other[0].indices != a[0].indices)
        // The same sample in another epoch gets another augmentation.
        let sample = a[0].indices[0]
        let slot = a[3].indices.firstIndex(of: sample) ?? a[4].indices.firstIndex(of: sample) ?? a[5].indices.firstIndex(of: sample)
        let later = [a[3], a[4], a[5]].first { $0.indices.contains(sample) }!
        let plane = 3 * 32 * 32
        #expect(Self.difference(Array(a[0].images.scalars.prefix(plane)), Array(later.images.scalars[slot! * plane..<(slot! + 1) * plane])) != nil)
    }

    @Test func augmentationFollowsTheSampleNotTheSlot() throws {
        // Same seed, batches of 8 and of 16: the same stream cut differently puts each sample
        // in another batch and slot, with the same pixels.
        let manifest = try Self.subset(32)
        let small = try Self.collect(
            PairLoader(
                training: manifest, order: EpochOrder(sampleCount: 32, batchSize: 8, seed: 4),
                transform: Self.train, tokenizer: Self.tokenizer, epochs: 1), 100)
        let large = try Self.collect(
            PairLoader(
                training: manifest, order: EpochOrder(sampleCount: 32, batchSize: 16, seed: 4),
                transform: Self.train, tokenizer: Self.tokenizer, epochs: 1), 100)
        #expect(small.flatMap(\.indices) == large.flatMap(\.indices))
        #expect(Self.difference(small.flatMap { Self.bits($0.images) }, large.flatMap { Self.bits($0.images) }) == nil)
        #expect(Self.difference(small.flatMap(\.ids.values), large.flatMap(\.ids.values)) == nil)
    }

    @Test func resumeMatchesTheStraightRun() throws {
        let manifest = try Self.subset(40)
        let order = try EpochOrder(sampleCount: 40, batchSize: 8, seed: 5)
        let straight = try Self.collect(
            PairLoader(training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer, epochs: 3), 100)
        #expect(straight.count == 15)
        for k in [2, 4, 7, 12] {
            let resumed = try Self.collect(
                PairLoader(
                    training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer,
                    start: straight[k].next, epochs: 3), 100)
            Self.expectSame(Array(straight[(k + 1)...]), resumed, "resume after batch \(k)")
        }
        let atEpoch = try Self.collect(
            PairLoader(
                training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer,
                start: order.position(epoch: 1, batch: 2), epochs: 2), 100)
        Self.expectSame(Array(straight[7..<10]), atEpoch, "start at epoch 1 batch 2")

        #expect(throws: DataError.self) {
            try PairLoader(
                training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer,
                start: LoaderPosition(epoch: 0, batch: 5, cursor: 40))
        }
    }

    @Test func badImagesAreSkippedAndBatchesRefilled() throws {
        let manifest = try Manifest(path: Paths.shapes + "/bad.tsv", options: .init(skipBad: true))
        #expect(manifest.count == 69)
        let badLines: Set = [7, 17, 27, 37, 67]
        let order = try EpochOrder(sampleCount: 69, batchSize: 16, seed: 2)
        #expect(order.batchesPerEpoch == 4)
        let loader = try PairLoader(training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer, epochs: 3)
        let batches = try Self.collect(loader, 100)
        #expect(batches.count == 12)
        for epoch in 0..<3 {
            let epochBatches = batches.filter { $0.epoch == epoch }
            #expect(epochBatches.allSatisfy { $0.count == 16 && $0.images.shape[0] == 16 })
            let seen = epochBatches.flatMap(\.indices)
            // 64 good images, 5 bad: every good one exactly once, no bad one.
            #expect(Set(seen).count == 64)
            #expect(seen.allSatisfy { !badLines.contains(manifest.lines[$0]) })
            // A bad image after the 64th good one in the epoch's order is never reached.
            let skipped = epochBatches.flatMap(\.skipped)
            #expect(Set(skipped.map(\.line)).isSubset(of: badLines) && skipped.count == Set(skipped.map(\.line)).count, "epoch \(epoch)")
        }
        #expect(Set(batches.flatMap(\.skipped).map(\.line)) == badLines)
        let bad = loader.badImages
        #expect(bad.map(\.line) == [7, 17, 27, 37, 67])
        #expect(
            bad.map { String($0.path.split(separator: "/").last!) } == [
                "truncated.jpg", "empty.jpg", "not_an_image.jpg", "missing.jpg", "truncated.png"
            ])
        #expect(bad[1].description.contains("empty file") && bad[3].description.contains("cannot read"))
        #expect(bad[0].description.hasPrefix("line 7: ") && bad[0].description.contains("truncated JPEG"))

        // A batch that skipped images has its tokens and pixels in the refilled order.
        for b in batches where !b.skipped.isEmpty {
            #expect(
                Self.difference(b.ids.values, Self.tokenizer.tokenize(b.indices.map { manifest.captions![$0] }, contextLength: 32, threads: 1)) == nil
            )
        }
        // Resuming after a batch that skipped images continues exactly.
        let k = batches.firstIndex { !$0.skipped.isEmpty && $0.index < 3 }!
        let resumed = try Self.collect(
            PairLoader(
                training: manifest, order: order, transform: Self.train, tokenizer: Self.tokenizer,
                start: batches[k].next, epochs: 3), 100)
        Self.expectSame(Array(batches[(k + 1)...]), resumed, "resume after a batch with skips")
    }

    @Test func evaluationKeepsOrderAndTheLastPartialBatch() throws {
        let manifest = try Manifest(path: Paths.shapes + "/bad.tsv", options: .init(skipBad: true))
        let transform = ImageTransform.eval(size: 32)
        let loader = try PairLoader(evaluating: manifest, batchSize: 10, transform: transform, tokenizer: Self.tokenizer)
        let batches = try Self.collect(loader, 100)
        #expect(batches.map(\.count) == [10, 10, 10, 10, 10, 10, 4])
        #expect(batches.last!.images.shape == [4, 3, 32, 32] && batches.last!.ids.shape == [4, 32])
        let seen = batches.flatMap(\.indices)
        #expect(seen == (0..<69).filter { ![7, 17, 27, 37, 67].contains(manifest.lines[$0]) })
        #expect(batches.flatMap(\.skipped).map(\.line) == [7, 17, 27, 37, 67])
        #expect(batches.map(\.index) == Array(0..<7))

        // Pixels are the plain pipeline's, sample by sample.
        let pipeline = ImagePipeline(transform: transform)
        let plane = 3 * 32 * 32
        for b in [batches[0], batches[6]] {
            for (slot, i) in b.indices.enumerated() {
                let expected = try pipeline.process(path: manifest.images[i])
                #expect(
                    Self.difference(Array(b.images.scalars[slot * plane..<(slot + 1) * plane]).map(\.bitPattern), expected.scalars.map(\.bitPattern))
                        == nil)
            }
        }
    }

    @Test func evaluationOfImagesWithoutCaptions() throws {
        let manifest = try Manifest(path: Paths.shapes + "/val_labels.tsv", options: .init(captionKey: nil, labelKey: "label"))
        let loader = try PairLoader(evaluating: manifest, batchSize: 100, transform: .eval(size: 16), tokenizer: Self.tokenizer, threads: 2)
        let batches = try Self.collect(loader, 100)
        #expect(batches.map(\.count) == [100, 100, 100, 100, 100, 12])
        #expect(batches[0].ids.shape == [100, 0] && batches[0].captions.isEmpty)
        #expect(batches.flatMap(\.indices) == Array(0..<512))

        #expect(throws: DataError.noCaptions(path: manifest.path)) {
            try PairLoader(
                training: manifest, order: EpochOrder(sampleCount: 512, batchSize: 8, seed: 0),
                transform: Self.train, tokenizer: Self.tokenizer)
        }
    }

    /// Samples the consumer already has (cached features) are tokenised but never read: here
    /// their files do not even exist, yet nothing is skipped and their image rows are zeros,
    /// while the other samples decode as without `skipsImage`.
    @Test func samplesWhoseImagesAreNotNeededAreNotRead() throws {
        let dir = Paths.scratch("skips-image")
        let shapes = try Self.subset(32)
        var lines = ["filepath\ttitle"]
        for i in 0..<32 {
            // Odd samples name files that are missing: only their captions can be loaded.
            lines.append((i % 2 == 0 ? shapes.images[i] : dir + "/missing-\(i).png") + "\t" + shapes.captions![i])
        }
        let manifest = try Manifest(path: Paths.write(dir, "pairs.tsv", lines.joined(separator: "\n") + "\n"))
        let order = try EpochOrder(sampleCount: 32, batchSize: 8, seed: 3)
        let eval = ImageTransform.eval(size: 32)
        let skipping = try Self.collect(
            PairLoader(
                training: manifest, order: order, transform: eval, tokenizer: Self.tokenizer, epochs: 2, threads: 2,
                skipsImage: { $0 % 2 == 1 }), 100)
        let all = try Self.collect(PairLoader(training: shapes, order: order, transform: eval, tokenizer: Self.tokenizer, epochs: 2, threads: 2), 100)
        #expect(skipping.count == 8 && all.count == 8)
        let plane = 3 * 32 * 32
        for (x, y) in zip(skipping, all) {
            #expect(x.skipped.isEmpty && x.indices == y.indices && x.ids.values == y.ids.values, "epoch \(x.epoch) batch \(x.index)")
            let (a, b) = (x.images.scalars, y.images.scalars)
            for (row, sample) in x.indices.enumerated() {
                let pixels = Array(a[(row * plane)..<((row + 1) * plane)])
                let wanted = sample % 2 == 1 ? [Float](repeating: 0, count: plane) : Array(b[(row * plane)..<((row + 1) * plane)])
                #expect(pixels == wanted, "sample \(sample)")
            }
        }
    }

    @Test func tooManyFailuresInARowStop() throws {
        var text = "filepath\ttitle\n"
        for i in 0..<30 { text += "missing/\(i).jpg\tgone\n" }
        for i in 0..<10 { text += "images/train/\(String(format: "%06d", i)).jpg\tfine\n" }
        let manifest = try Manifest(parsing: Array(text.utf8), path: Paths.shapes + "/missing.tsv")
        let loader = try PairLoader(evaluating: manifest, batchSize: 8, transform: .eval(size: 16), tokenizer: nil)
        let error = #expect(throws: DataError.self) { try loader.next() }
        #expect(error?.description.hasPrefix("8 images failed to load in a row (last: line 9: ") == true, "\(String(describing: error))")
        #expect(throws: DataError.self) { try loader.next() }

        // Too few loadable images to fill a training batch from the whole stream.
        var few = "filepath\ttitle\n"
        for i in 0..<12 { few += (i % 3 == 0 ? "images/train/\(String(format: "%06d", i)).jpg" : "missing/\(i).jpg") + "\tx\n" }
        let sparse = try Manifest(parsing: Array(few.utf8), path: Paths.shapes + "/sparse.tsv")
        let training = try PairLoader(
            training: sparse, order: EpochOrder(sampleCount: 12, batchSize: 6, seed: 1),
            transform: Self.train, tokenizer: Self.tokenizer, maxFailuresInARow: 100)
        let tooFew = #expect(throws: DataError.self) { try training.next() }
        #expect(tooFew?.description.contains("too few left to fill a batch of 6") == true, "\(String(describing: tooFew))")
    }

    /// A file list (what `mm preprocess` and `Embedder.embed(imageFiles:)` load): rows in list
    /// order, bad files listed and never stopping it, the same pixels for any thread count, and
    /// the seed moving the augmentation — each sample its own draw.
    @Test func fileListsKeepOrderListBadFilesAndIgnoreThreads() throws {
        var files = Array(try Self.subset(10).images)
        files.insert("/nonexistent/a.jpg", at: 3)
        files.insert(Paths.shapes + "/train.tsv", at: 7)  // not an image
        files.append(files[0])
        func run(threads: Int, seed: UInt64) throws -> [PairBatch] {
            try Self.collect(PairLoader(evaluating: files, batchSize: 5, transform: Self.train, threads: threads, seed: seed), 100)
        }
        let one = try run(threads: 1, seed: 4), three = try run(threads: 3, seed: 4), other = try run(threads: 2, seed: 5)
        Self.expectSame(one, three, "1 vs 3 threads")
        let kept = files.indices.filter { $0 != 3 && $0 != 7 }
        #expect(one.flatMap(\.indices) == kept && one.flatMap(\.names) == kept.map { files[$0] })
        #expect(one.map(\.count) == [5, 5, 1])
        #expect(one.flatMap(\.skipped).map(\.index) == [3, 7] && one.flatMap(\.skipped).allSatisfy { $0.error != nil })
        #expect(Self.bits(one[0].images) != Self.bits(other[0].images), "another seed, other crops")
        let plane = 3 * 32 * 32, first = Array(one[0].images.scalars[0..<plane]), last = Array(one[2].images.scalars[0..<plane])
        #expect(first != last, "the same file twice draws two crops")

        // More bad files in a row than a batch holds: listed, and the good one still loads.
        let bad = Array(repeating: "/nonexistent/x.jpg", count: 12) + [files[0]]
        let batches = try Self.collect(PairLoader(evaluating: bad, batchSize: 4, transform: .eval(size: 16)), 100)
        #expect(batches.flatMap(\.indices) == [12] && batches.flatMap(\.skipped).count == 12)

        // Bad files after the last batch: no batch carries them, `badImages` lists them all.
        let trailing = try PairLoader(evaluating: [files[0], "/nonexistent/y.jpg"], batchSize: 1, transform: .eval(size: 16))
        #expect(try Self.collect(trailing, 100).flatMap(\.indices) == [0])
        #expect(trailing.badImages.map(\.index) == [1])
    }

    @Test func stopEndsTheThreads() throws {
        let manifest = try Self.subset(64)
        let loader = try PairLoader(
            training: manifest, order: EpochOrder(sampleCount: 64, batchSize: 8, seed: 1),
            transform: Self.train, tokenizer: Self.tokenizer)
        _ = try loader.next()
        loader.stop()
        #expect(try loader.next()?.count == nil)
    }
}

extension LoaderPosition {
    func with(epoch: Int) -> LoaderPosition { LoaderPosition(epoch: epoch, batch: batch, cursor: cursor) }
}
