import Foundation
import MMTensor
import Testing

/// `mm train` from img2dataset's shards, end to end (the `mm` executable beside this test
/// binary, a micro model, runs of seconds).
@Suite(
    .serialized,
    .enabled(
        if: ShardFixtures.present && FileManager.default.isExecutableFile(atPath: MM.path),
        "needs .build/fixtures/webdataset (`make fixtures-webdataset`) and the mm product built"))
struct ShardTrainingTests {
    static let shards = ShardFixtures.dir + "/jpg/{00000..00005}.tar"

    /// N steps straight = k steps, a stop (SIGTERM mid-epoch), `--resume`, N − k steps: the
    /// final weights are bitwise equal — with a shuffle buffer, and with --dataset-resampled.
    @Test(arguments: [["--shuffle-buffer", "40"], ["--shuffle-buffer", "40", "--dataset-resampled"]])
    func anInterruptedRunResumesBitwise(_ order: [String]) throws {
        let dir = try MM.scratch("resume-\(order.count)")
        let args =
            [
                Self.shards, "--model", dir + "/micro.json", "--batch-size", "16", "--epochs", "2", "--warmup", "3",
                "--train-num-samples", "1600", "--workers", "2"
            ] + order
        let full = try MM.run(args + ["-o", dir + "/full"], in: dir)
        #expect(full.status == 0, "\(full.output)")
        #expect(full.output.contains("1600 samples per epoch (from --train-num-samples)"), "\(full.output)")

        let job = try MM.start(args + ["-o", dir + "/stopped"], in: dir)
        try MM.waitUntil(seconds: 120) { MM.losses(dir + "/stopped").count >= 130 }  // in epoch 2 (100 steps each)
        kill(job.process.processIdentifier, SIGTERM)
        job.process.waitUntilExit()
        let stoppedAt = MM.losses(dir + "/stopped").count
        #expect(job.output().contains("interrupted: checkpoint written"), "\(job.output())")
        #expect(stoppedAt < 200, "the run ended before the stop")

        let resumed = try MM.run(["--resume", dir + "/stopped"], in: dir)
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("step \(stoppedAt)"), "\(resumed.output)")
        #expect(MM.losses(dir + "/stopped") == MM.losses(dir + "/full"), "the losses of the resumed run differ")
        let a = try Safetensors(contentsOf: URL(fileURLWithPath: dir + "/full/checkpoints/epoch_2.safetensors")).tensors
        let b = try Safetensors(contentsOf: URL(fileURLWithPath: dir + "/stopped/checkpoints/epoch_2.safetensors")).tensors
        #expect(Set(a.keys) == Set(b.keys) && !a.isEmpty)
        for (key, t) in a { #expect(t.scalars == b[key]?.scalars, "\(key) differs after resume") }
    }

    /// 2 ranks × 16 from shards take the same steps as 1 process × 32 (shuffle buffer off, and
    /// shards of 16 samples: rank r's shards are the global batch's rows r·16…). Losses to 1e-5
    /// relative, as for manifests (round-off of the gathered loss differs).
    @Test(.enabled(if: MM.mpirun != nil, "needs Open MPI's mpirun"))
    func twoRanksOfBTakeTheStepsOfOneRankOf2B() throws {
        let dir = try MM.scratch("mpi")
        let common = [Self.shards, "--model", dir + "/micro.json", "--epochs", "3", "--warmup", "2", "--shuffle-buffer", "0"]
        let one = try MM.run(common + ["--batch-size", "32", "-o", dir + "/one"], in: dir)
        let two = try MM.run(common + ["--batch-size", "16", "-o", dir + "/two"], ranks: 2, in: dir)
        #expect(one.status == 0, "\(one.output)")
        #expect(two.status == 0, "\(two.output)")
        let (a, b) = (MM.losses(dir + "/one"), MM.losses(dir + "/two"))
        #expect(a.count == 9 && b.count == 9, "\(a) \(b)")
        for (step, (x, y)) in zip(a, b).enumerated() {
            #expect(abs(x - y) <= 1e-5 * abs(x), "step \(step + 1): loss \(x) on one rank, \(y) on two")
        }
    }

    /// A bad shard set stops with one line naming it; damaged shards are skipped, logged and counted.
    @Test func damagedShardsAreLoggedAndTheRunFinishes() throws {
        let dir = try MM.scratch("bad")
        let bad = ShardFixtures.dir + "/bad/{corrupt,empty,gnuname,nocaption,paxname,truncated}.tar"
        let run = try MM.run(
            [
                bad, "--model", dir + "/micro.json", "--batch-size", "4", "--epochs", "1", "--shuffle-buffer", "0",
                "-o", dir + "/run"
            ], in: dir)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("samples per epoch (from counting pass over the tar headers)"), "\(run.output)")
        let log = (try? String(contentsOfFile: dir + "/run/log.jsonl", encoding: .utf8)) ?? ""
        #expect(log.contains("truncated shard") && log.contains("corrupt JPEG") && log.contains("no caption"), "\(log)")
        let missing = try MM.run([ShardFixtures.dir + "/jpg/{00000..00009}.tar", "--model", dir + "/micro.json", "-o", dir + "/m"], in: dir)
        #expect(missing.status != 0 && missing.output.contains("4 shards not found"), "\(missing.output)")
        let scheme = try MM.run(["s3://bucket/{0..1}.tar", "-o", dir + "/s"], in: dir)
        #expect(scheme.status != 0 && scheme.output.contains("s3://bucket/0.tar"), "\(scheme.output)")
    }
}

/// Running the `mm` executable.
enum MM {
    static var path: String {
        let products = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        )
        .deletingLastPathComponent()
        return products.appendingPathComponent("mm").path
    }
    static let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static func scratch(_ name: String) throws -> String {
        let dir = Paths.scratch("train-" + name)
        try """
        {"embed_dim": 32,
         "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32, "mlp_ratio": 2.0},
         "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
        """.write(toFile: dir + "/micro.json", atomically: true, encoding: .utf8)
        return dir
    }

    struct Job {
        let process: Process
        let log: String
        func output() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    static func start(_ arguments: [String], ranks: Int = 1, in dir: String) throws -> Job {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ranks == 1 ? path : mpirun!)
        p.arguments = ranks == 1 ? ["train"] + arguments : ["-np", "\(ranks)", "--oversubscribe", path, "train"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = environment
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let log = dir + "/output-\(UUID().uuidString).txt"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return Job(process: p, log: log)
    }

    static func run(_ arguments: [String], ranks: Int = 1, in dir: String) throws -> (status: Int32, output: String) {
        let job = try start(arguments, ranks: ranks, in: dir)
        job.process.waitUntilExit()
        return (job.process.terminationStatus, job.output())
    }

    static func waitUntil(seconds: Double, _ condition: () -> Bool) throws {
        let end = Date().addingTimeInterval(seconds)
        while !condition() {
            guard Date() < end else { throw CancellationError() }
            usleep(10_000)
        }
    }

    static func losses(_ run: String) -> [Double] {
        ((try? String(contentsOfFile: run + "/log.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss"] as? Double
        }
    }
}

/// Counting the samples of a shard set under `mpirun`: rank 0 alone counts (or reads the cache
/// beside its run folder) and the other ranks take its count.
@Suite(
    .serialized,
    .enabled(if: MM.mpirun != nil && FileManager.default.isExecutableFile(atPath: MM.path), "needs Open MPI's mpirun and the mm product"))
struct ShardCountTests {
    /// Rank 1 starts in a folder whose stale count cache (beside its relative run folder) says
    /// 8 samples where the shards hold 32; it must still take rank 0's count, so that both ranks
    /// take the same 4 steps (with its own count it would stop after 1 and the job would fail).
    @Test func otherRanksTakeRankZerosCount() throws {
        let dir = try MM.scratch("count")
        let jpeg = [UInt8](FileManager.default.contents(atPath: Paths.shapes + "/images/train/000000.jpg")!)
        var shards: [String] = []
        for s in 0..<2 {
            var tar: [UInt8] = []
            for i in 0..<16 {
                tar += TarHeaderTests.member("s\(s)_\(i).jpg", jpeg) + TarHeaderTests.member("s\(s)_\(i).txt", Array("a shape \(i)".utf8))
            }
            tar += [UInt8](repeating: 0, count: 1024)
            shards.append(Paths.write(dir, "\(s).tar", tar))
        }
        let (rank0, rank1) = (dir + "/rank0", dir + "/rank1")
        for d in [rank0, rank1] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        var stale: [String: [Int]] = [:]
        for path in shards { stale[path] = [try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int, 4] }
        try JSONSerialization.data(withJSONObject: stale).write(to: URL(fileURLWithPath: rank1 + "/run.shard-counts.json"))

        let train = [
            MM.path, "train", dir + "/{0..1}.tar", "--model", dir + "/micro.json", "--batch-size", "4", "--epochs", "1",
            "--warmup", "1", "--shuffle-buffer", "0", "--mpi-timeout", "60", "-o", "run"
        ]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: MM.mpirun!)
        p.arguments = ["--oversubscribe", "-np", "1", "-wdir", rank0] + train + [":", "-np", "1", "-wdir", rank1] + train
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = environment
        let output = Pipe()
        p.standardOutput = output
        p.standardError = output
        try p.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(text)")
        #expect(text.contains("32 samples per epoch (from counting pass over the tar headers)"), "\(text)")
        #expect(MM.losses(rank0 + "/run").count == 4, "\(text)")
        let written = try Data(contentsOf: URL(fileURLWithPath: rank0 + "/run.shard-counts.json"))
        let cache = try JSONSerialization.jsonObject(with: written) as? [String: [Int]]
        #expect(cache?.values.map { $0[1] }.sorted() == [16, 16])
    }
}
