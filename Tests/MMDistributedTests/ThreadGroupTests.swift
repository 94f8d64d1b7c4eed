import Foundation
import MMDistributed
import MMTensor
import Testing

/// The collectives and the data-parallel algorithm on the in-process thread transport, against
/// sums written out by hand.
@Suite struct ThreadGroupTests {
    /// Rank r's input of `count` values: distinct per rank and position.
    static func input(rank: Int, count: Int) -> [Float] { (0..<count).map { Float(rank * 1000 + $0) * 0.5 } }

    @Test(arguments: [1, 2, 3])
    func collectivesMatchTheirDefinitions(ranks: Int) throws {
        let n = 5
        let results = try ThreadGroup.run(size: ranks) { group -> ([Float], [Float], [Float], [Int]) in
            var summed = Self.input(rank: group.rank, count: n)
            try summed.withUnsafeMutableBufferPointer { try group.allReduceSum($0) }
            let gathered = try group.allGather(Self.input(rank: group.rank, count: n))
            var mine = [Float](repeating: 0, count: n)
            let all = Self.input(rank: group.rank, count: n * group.size)
            try all.withUnsafeBufferPointer { a in try mine.withUnsafeMutableBufferPointer { try group.reduceScatterSum(a, into: $0) } }
            var shared = group.rank == ranks - 1 ? [7, 8, 9] : [0, 0, 0]
            try shared.withUnsafeMutableBytes { try group.broadcast($0, from: ranks - 1) }
            try group.barrier()
            return (summed, gathered, mine, shared)
        }
        for (rank, (summed, gathered, mine, shared)) in results.enumerated() {
            #expect(summed == (0..<n).map { i in (0..<ranks).reduce(Float(0)) { $0 + Self.input(rank: $1, count: n)[i] } })
            #expect(gathered == (0..<ranks).flatMap { Self.input(rank: $0, count: n) })
            #expect(mine == (0..<n).map { i in (0..<ranks).reduce(Float(0)) { $0 + Self.input(rank: $1, count: n * ranks)[rank * n + i] } })
            #expect(shared == [7, 8, 9])
        }
    }

    /// A rank that never joins makes the others fail with a timeout instead of hanging.
    @Test func anAbsentRankTimesOut() throws {
        let groups = ThreadGroup.make(size: 2, timeout: 0.2)
        #expect(throws: DistributedError.self) { try groups[0].barrier() }
    }

    /// The gathered features' backward is a reduce-scatter: each rank's rows get the gradient
    /// that every rank's loss sends them. Loss of rank r: Σ (r+1)·c ⊙ gathered, so the gradient
    /// of rank s's rows is Σ_r (r+1)·c[block s].
    @Test func gatherBackwardIsReduceScatter() throws {
        let (ranks, rows, width) = (3, 2, 4)
        let c = Tensor(shape: [ranks * rows, width], values: (0..<(ranks * rows * width)).map { Float($0) - 7 })
        let grads = try ThreadGroup.run(size: ranks) { group -> [Float] in
            let parallel = DataParallel(group)
            let local = Tensor(shape: [rows, width], values: Self.input(rank: group.rank, count: rows * width), requiresGrad: true)
            let tape = Tape()
            let loss = tape.record { (parallel.gathered(local) * c).sum().scaled(by: Float(group.rank + 1)) }
            tape.backward(loss)
            try parallel.checkFailure()
            // The forward gathered every rank's rows in rank order.
            let all = withoutGradients { parallel.gathered(local) }
            #expect(all.scalars == (0..<ranks).flatMap { Self.input(rank: $0, count: rows * width) })
            return local.grad!.scalars
        }
        let weight = Float((1...ranks).reduce(0, +))
        for (s, g) in grads.enumerated() {
            #expect(g == (0..<(rows * width)).map { c.scalars[s * rows * width + $0] * weight })
        }
    }

    /// Gradients are averaged over ranks — small ones in the shared bucket, large ones alone —
    /// and the scalars ride along summed.
    @Test func bucketedAverage() throws {
        let sizes = [3, DataParallel.bucketElements + 5, 7]
        let results = try ThreadGroup.run(size: 2) { group -> ([Float], [[Float]]) in
            let parameters = sizes.enumerated().map { k, n in
                let p = Tensor.zeros([n], requiresGrad: true)
                p.grad = Tensor(shape: [n], values: (0..<n).map { Float(($0 + k) % 11) * Float(group.rank + 1) })
                return p
            }
            let scalars = try DataParallel(group).averageGradients(parameters, scalars: [Float(group.rank) + 1, 2])
            return (scalars, parameters.map { Array($0.grad!.scalars.prefix(20)) + Array($0.grad!.scalars.suffix(3)) })
        }
        for (scalars, grads) in results {
            #expect(scalars == [3, 4])
            for (k, n) in sizes.enumerated() {
                let expected = (0..<n).map { Float(($0 + k) % 11) * 1.5 }
                #expect(grads[k] == Array(expected.prefix(20)) + Array(expected.suffix(3)), "parameter \(k) of \(n)")
            }
        }
    }
}
