import Foundation
import MMTensor
import Testing

/// Real `mpirun` launches of the `mm` executable on the bundled data, with a micro model so that
/// each run takes seconds. Skipped, with the reason, where Open MPI's launcher is not installed.
@Suite(.serialized, .enabled(if: MPI.available, MPI.missingReason))
struct DataParallelTests {
    static let learningRate: Float = 1e-3

    /// 2 ranks × 32 pairs take the same steps as 1 process × 64 — for InfoNCE, for the sigmoid
    /// loss, and with 2 ranks × 2 accumulated micro-batches of 16: the loss is the global batch's
    /// and the averaged gradients are its gradients. Round-off differs (summation order, thread
    /// splits), so: losses to 1e-5 relative, weights to 2e-5 — except the key bias, whose true
    /// gradient is 0 (softmax is shift-invariant) so that Adam turns round-off into steps of up
    /// to the learning rate.
    /// The contrastive family too: the queue (with every rank's momentum features), multi-positive
    /// targets over gathered keys, and both self-supervised terms over gathered columns (without
    /// accumulation here: those terms are per micro-batch, so k micro-batches of one process are
    /// not one batch of k·N).
    @Test(arguments: [
        ("clip", 1, ""), ("siglip", 1, ""), ("clip", 2, ""), ("clip", 1, "--queue 256 --multi-positive"),
        ("clip", 1, "--image-ssl simclr --text-ssl simcse --text-dropout 0.1")
    ])
    func twoRanksOfHalfTheBatchTakeTheSameStepsAsOne(loss: String, accumulation: Int, extra: String) throws {
        let dir = try MPI.scratch("equivalence-\(loss)-\(accumulation)-\(extra.split(separator: " ").first ?? "")")
        let common =
            ["--loss", loss, "--steps", "20", "--epochs", "1", "--warmup", "5", "--lr", "\(Self.learningRate)"]
            + extra.split(separator: " ").map(String.init)
        let one = try MPI.train(ranks: 1, ["-o", dir + "/one", "--batch-size", "64"] + common, in: dir)
        let two = try MPI.train(
            ranks: 2, ["-o", dir + "/two", "--batch-size", "\(32 / accumulation)", "--accum-freq", "\(accumulation)"] + common,
            in: dir)
        #expect(one.status == 0, "\(one.output)")
        #expect(two.status == 0, "\(two.output)")
        #expect(two.output.contains("2 ranks × 32 = 64 pairs"))

        let (a, b) = (try MPI.losses(dir + "/one"), try MPI.losses(dir + "/two"))
        #expect(a.count == 20 && b.count == 20)
        var worst = 0.0
        for (step, (x, y)) in zip(a, b).enumerated() {
            worst = max(worst, abs(x - y) / abs(x))
            #expect(abs(x - y) <= 1e-6 * abs(x), "step \(step + 1): loss \(x) on one rank, \(y) on two")
        }
        print("mpirun \(loss) ×\(accumulation) \(extra): worst relative loss difference over 20 steps \(worst)")
        try MPI.expectSameWeights(
            dir + "/one/checkpoints/epoch_1.safetensors", dir + "/two/checkpoints/epoch_1.safetensors",
            tolerance: 2e-5, keyBiasTolerance: 20 * Self.learningRate)
    }

    /// Killing rank 1 mid-epoch ends the job within seconds, rank 0 says why, the last
    /// checkpoint is intact, and resuming it gives the uninterrupted run's weights: bitwise with
    /// the same two ranks, to round-off with one.
    @Test func aKilledRankEndsTheJobAndTheRunResumes() throws {
        let dir = try MPI.scratch("kill")
        let args = ["--batch-size", "32", "--epochs", "2", "--warmup", "5", "--lr", "\(Self.learningRate)"]
        let full = try MPI.train(ranks: 2, ["-o", dir + "/full"] + args, in: dir)
        #expect(full.status == 0, "\(full.output)")

        let job = try MPI.start(ranks: 2, ["-o", dir + "/killed"] + args, in: dir)
        // Wait for epoch 1's checkpoint and a few steps of epoch 2, then kill rank 1.
        let stepsPerEpoch = 6016 / 64
        try MPI.waitUntil(seconds: 120) { (try? MPI.losses(dir + "/killed").count) ?? 0 >= stepsPerEpoch + 5 }
        let killedAt = Date()
        try MPI.signal(SIGKILL, rank: 1, training: dir + "/killed")
        job.process.waitUntilExit()
        let took = Date().timeIntervalSince(killedAt)
        let output = job.output()
        #expect(took < 60, "the job took \(took) s to end after rank 1 was killed")
        #expect(job.process.terminationStatus != 0)
        #expect(output.contains("mm rank 0: stopping") || output.contains("mm rank 0: rank 0:"), "rank 0 said nothing:\n\(output)")

        for (name, ranks) in [("same-ranks", 2), ("one-rank", 1)] {
            try FileManager.default.copyItem(atPath: dir + "/killed", toPath: dir + "/" + name)
            let resumed = try MPI.train(ranks: ranks, ["--resume", dir + "/" + name], in: dir)
            #expect(resumed.status == 0, "\(resumed.output)")
            #expect(resumed.output.contains("resuming"))
        }
        let finalWeights = { (run: String) in dir + "/\(run)/checkpoints/epoch_2.safetensors" }
        try MPI.expectSameWeights(finalWeights("full"), finalWeights("same-ranks"), tolerance: 0, keyBiasTolerance: 0)
        try MPI.expectSameWeights(finalWeights("full"), finalWeights("one-rank"), tolerance: 1e-4, keyBiasTolerance: 200 * Self.learningRate)
    }

    /// A rank asked to stop while its peer is stuck (SIGSTOP: alive, never answering) gives up
    /// its collective `Interruption.grace` (10) seconds later instead of at --mpi-timeout (300 s), says
    /// why and ends the job; the last checkpoint (epoch 1's) stays and resumes.
    @Test func aStopEndsTheJobWhenAPeerIsStuck() throws {
        let dir = try MPI.scratch("stuck")
        let args = ["--batch-size", "32", "--epochs", "2", "--warmup", "5", "--lr", "\(Self.learningRate)", "--mpi-timeout", "300"]
        let job = try MPI.start(ranks: 2, ["-o", dir + "/stuck"] + args, in: dir)
        let stepsPerEpoch = 6016 / 64
        try MPI.waitUntil(seconds: 180) { (try? MPI.losses(dir + "/stuck").count) ?? 0 >= stepsPerEpoch + 3 }
        try MPI.signal(SIGSTOP, rank: 1, training: dir + "/stuck")
        let signalled = Date()
        try MPI.signal(SIGTERM, rank: 0, training: dir + "/stuck")
        let deadline = Date().addingTimeInterval(200)
        while job.process.isRunning && Date() < deadline { usleep(50_000) }
        let took = Date().timeIntervalSince(signalled)
        try? MPI.signal(SIGKILL, rank: 1, training: dir + "/stuck")  // should be gone already
        if job.process.isRunning { job.process.terminate() }
        job.process.waitUntilExit()
        let output = job.output()
        // 10 s of grace plus the abort; a loaded machine (the whole suite in parallel) adds tens of seconds.
        #expect(took < 120, "the job took \(took) s to end after the stop request (--mpi-timeout is 300 s)")
        #expect(job.process.terminationStatus != 0)
        #expect(output.contains("mm rank 0: stopped; the other ranks had not joined"), "\(output)")
        print("a stop with a stuck peer ended the job in \(String(format: "%.1f", took)) s")

        let resumed = try MPI.train(ranks: 1, ["--resume", dir + "/stuck"], in: dir)
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("at epoch 2, step \(stepsPerEpoch)"), "\(resumed.output)")
    }

    /// A stop requested mid-epoch (Ctrl-C, or kill): every rank finishes the step, rank 0 writes a
    /// checkpoint with each rank's data position, and one process of twice the batch resumes it
    /// where it stopped.
    @Test func anInterruptedJobResumesMidEpochOnOneProcess() throws {
        let dir = try MPI.scratch("interrupt")
        let args = ["--epochs", "1", "--warmup", "5", "--lr", "\(Self.learningRate)"]
        let full = try MPI.train(ranks: 2, ["-o", dir + "/full", "--batch-size", "32"] + args, in: dir)
        #expect(full.status == 0, "\(full.output)")

        let job = try MPI.start(ranks: 2, ["-o", dir + "/stopped", "--batch-size", "32"] + args, in: dir)
        try MPI.waitUntil(seconds: 120) { (try? MPI.losses(dir + "/stopped").count) ?? 0 >= 10 }
        // Rank 1 alone: a stop asked of any rank stops them all at the same step. (Signalling
        // mpirun, which forwards to every rank, does not work from a test runner that blocks
        // the signals it passes on to its children.)
        try MPI.signal(SIGTERM, rank: 1, training: dir + "/stopped")
        job.process.waitUntilExit()
        let output = job.output()
        #expect(output.contains("interrupted: checkpoint written"), "\(output)")
        let stoppedAt = try MPI.losses(dir + "/stopped").count
        #expect(stoppedAt < 94, "the job ran to the end of the epoch")

        let resumed = try MPI.train(ranks: 1, ["--resume", dir + "/stopped"], in: dir)
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("at epoch 1, step \(stoppedAt)"), "\(resumed.output)")
        try MPI.expectSameWeights(
            dir + "/full/checkpoints/epoch_1.safetensors", dir + "/stopped/checkpoints/epoch_1.safetensors",
            tolerance: 1e-4, keyBiasTolerance: 100 * Self.learningRate)
    }
}

/// Launching `mm train` under `mpirun`.
enum MPI {
    static let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static var available: Bool { mpirun != nil }
    static let missingReason: Comment = "needs Open MPI's mpirun (apt-get install openmpi-bin)"

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    /// The `mm` executable built beside this test binary.
    static var mm: String {
        let products = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        )
        .deletingLastPathComponent()
        return products.appendingPathComponent("mm").path
    }

    /// A model small enough for runs of a few seconds.
    static let microModel = """
        {"embed_dim": 32,
         "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32, "mlp_ratio": 2.0},
         "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
        """

    static func scratch(_ name: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.path + "/mm-mpi-tests-\(getpid())/\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try microModel.write(toFile: dir + "/micro.json", atomically: true, encoding: .utf8)
        return dir
    }

    struct Job {
        let process: Process
        let log: String
        func output() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    /// Starts `mm train` on the bundled data; one rank runs without mpirun.
    static func start(ranks: Int, _ arguments: [String], in dir: String) throws -> Job {
        guard FileManager.default.isExecutableFile(atPath: mm) else {
            throw TestFailure("\(mm) is missing: build the mm product first (swift build -c release)")
        }
        var train = [mm, "train"]
        if !arguments.contains("--resume") { train += [root + "/datasets/shapes/train.tsv", "--model", dir + "/micro.json"] }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ranks == 1 ? mm : mpirun!)
        p.arguments = ranks == 1 ? Array((train + arguments).dropFirst()) : ["-np", "\(ranks)", "--oversubscribe"] + train + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = environment
        let log = dir + "/output-\(UUID().uuidString).txt"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return Job(process: p, log: log)
    }

    static func train(ranks: Int, _ arguments: [String], in dir: String) throws -> (status: Int32, output: String) {
        let job = try start(ranks: ranks, arguments, in: dir)
        job.process.waitUntilExit()
        return (job.process.terminationStatus, job.output())
    }

    /// Signals the process of this rank training into `run` (found by its environment).
    static func signal(_ signal: Int32, rank: Int, training run: String) throws {
        let pids = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init)
        for pid in pids {
            guard let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
                String(decoding: environ, as: UTF8.self).split(separator: "\0").contains("OMPI_COMM_WORLD_RANK=\(rank)"),
                let command = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                String(decoding: command, as: UTF8.self).contains(run)
            else { continue }
            kill(pid, signal)
            return
        }
        throw TestFailure("no process of rank \(rank) found")
    }

    static func waitUntil(seconds: Double, _ condition: () throws -> Bool) throws {
        let end = Date().addingTimeInterval(seconds)
        while try !condition() {
            guard Date() < end else { throw TestFailure("timed out after \(seconds) s") }
            usleep(20_000)
        }
    }

    /// The training losses of a run's log, step by step.
    static func losses(_ run: String) throws -> [Double] {
        try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss"] as? Double
        }
    }

    static func expectSameWeights(_ a: String, _ b: String, tolerance: Float, keyBiasTolerance: Float) throws {
        let x = try Safetensors(contentsOf: URL(fileURLWithPath: a)).tensors
        let y = try Safetensors(contentsOf: URL(fileURLWithPath: b)).tensors
        #expect(Set(x.keys) == Set(y.keys))
        for (key, t) in x {
            guard let u = y[key] else { continue }
            let keyBias = key.hasSuffix("attn.in_proj_bias") ? (t.count / 3)..<(2 * t.count / 3) : 0..<0
            var worst: (difference: Float, index: Int) = (0, 0)
            for i in 0..<t.count where !keyBias.contains(i) {
                let d = abs(t.data[i] - u.data[i])
                if d > worst.difference { worst = (d, i) }
            }
            #expect(worst.difference <= tolerance, "\(key)[\(worst.index)]: \(t.data[worst.index]) vs \(u.data[worst.index])")
            for i in keyBias {
                #expect(abs(t.data[i] - u.data[i]) <= keyBiasTolerance, "\(key)[\(i)] (key bias): \(t.data[i]) vs \(u.data[i])")
            }
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
