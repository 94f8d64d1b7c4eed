import MMData
import Testing

@Suite struct EpochOrderTests {
    @Test func permutationIsAPureFunctionOfSeedAndEpoch() throws {
        let order = try EpochOrder(sampleCount: 1000, batchSize: 32, seed: 42)
        let p0 = order.permutation(epoch: 0)
        #expect(p0.sorted() == Array(0..<1000))
        #expect(p0 != Array(0..<1000))
        // Rebuilt from scratch (as on resume), the same; another epoch or seed, different.
        #expect(try EpochOrder(sampleCount: 1000, batchSize: 32, seed: 42).permutation(epoch: 0) == p0)
        #expect(order.permutation(epoch: 1) != p0)
        #expect(order.permutation(epoch: 1).sorted() == Array(0..<1000))
        #expect(try EpochOrder(sampleCount: 1000, batchSize: 32, seed: 43).permutation(epoch: 0) != p0)
        // The batch size does not change the shuffle, only how it is cut.
        #expect(try EpochOrder(sampleCount: 1000, batchSize: 7, seed: 42).permutation(epoch: 0) == p0)
    }

    @Test func permutationLooksUniform() throws {
        // Where sample 0 lands over many epochs: roughly uniform over 8 positions.
        let order = try EpochOrder(sampleCount: 8, batchSize: 1, seed: 1)
        var counts = [Int](repeating: 0, count: 8)
        for epoch in 0..<8000 { counts[order.permutation(epoch: epoch).firstIndex(of: 0)!] += 1 }
        #expect(counts.allSatisfy { abs($0 - 1000) < 150 }, "\(counts)")
    }

    @Test func lastPartialBatchIsDropped() throws {
        let order = try EpochOrder(sampleCount: 103, batchSize: 10, seed: 5)
        #expect(order.batchesPerEpoch == 10 && order.droppedPerEpoch == 3)
        let p = order.permutation(epoch: 2)
        let batches = (0..<10).map { order.batch($0, epoch: 2) }
        #expect(batches.allSatisfy { $0.count == 10 })
        #expect(batches.flatMap { $0 } == Array(p.prefix(100)))

        #expect(throws: DataError.batchLargerThanData(batchSize: 104, samples: 103)) {
            try EpochOrder(sampleCount: 103, batchSize: 104, seed: 5)
        }
        #expect(throws: DataError.batchLargerThanData(batchSize: 128, samples: 103)) {
            try EpochOrder(sampleCount: 103, batchSize: 64, seed: 5, rank: 1, worldSize: 2)
        }
    }

    @Test(arguments: [2, 3])
    func shardsTogetherSeeTheSingleRankBatch(world: Int) throws {
        let count = 1001, batch = 8, seed: UInt64 = 9
        let single = try EpochOrder(sampleCount: count, batchSize: world * batch, seed: seed)
        let shards = try (0..<world).map { try EpochOrder(sampleCount: count, batchSize: batch, seed: seed, rank: $0, worldSize: world) }
        #expect(shards.allSatisfy { $0.batchesPerEpoch == single.batchesPerEpoch && $0.globalBatchSize == single.batchSize })
        for epoch in 0..<2 {
            for k in 0..<single.batchesPerEpoch {
                let global = single.batch(k, epoch: epoch)
                let parts = shards.map { $0.batch(k, epoch: epoch) }
                // Rank r holds every world-th sample of the global batch, starting at r.
                var interleaved: [Int] = []
                for j in 0..<batch { for r in 0..<world { interleaved.append(parts[r][j]) } }
                #expect(interleaved == global, "epoch \(epoch) batch \(k)")
            }
        }
        // The streams of all ranks partition the epoch.
        let p = single.permutation(epoch: 0)
        let all = shards.flatMap { s in (0..<s.streamLength).map { s.sample(at: $0, in: p) } }
        #expect(all.sorted() == Array(0..<count))
    }

    @Test func resumePositionOfAnEpoch() throws {
        let order = try EpochOrder(sampleCount: 50, batchSize: 8, seed: 3)
        #expect(order.position(epoch: 2, batch: 3) == LoaderPosition(epoch: 2, batch: 3, cursor: 24))
        let p = order.permutation(epoch: 2)
        #expect(order.batch(3, epoch: 2) == (24..<32).map { order.sample(at: $0, in: p) })
    }
}
