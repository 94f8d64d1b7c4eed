import Foundation
import MMCLIP
import MMDistributed
import MMTrain
import Testing

/// A run through the library API, in process, on the bundled shapes data with a micro model:
/// configuration → `TrainingRun` → `train()`, resume, and what the run folder must refuse.
@Suite(.serialized) struct TrainingRunTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A scratch folder with a micro model config and a 96-pair manifest (absolute image paths).
    static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try """
        {"embed_dim": 32,
         "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32, "mlp_ratio": 2.0},
         "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
        """.write(to: dir.appendingPathComponent("micro.json"), atomically: true, encoding: .utf8)
        let shapes = root.appendingPathComponent("datasets/shapes")
        for (name, count) in [("train.tsv", 96), ("test_labels.tsv", 32)] {
            let lines = try String(contentsOf: shapes.appendingPathComponent(name), encoding: .utf8).split(separator: "\n")
            let rows = lines.dropFirst().prefix(count).map { line -> String in
                let fields = line.split(separator: "\t", maxSplits: 1)
                return shapes.appendingPathComponent(String(fields[0])).path + "\t" + fields[1]
            }
            try ([String(lines[0])] + rows).joined(separator: "\n").appending("\n").write(
                to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        return dir
    }

    static func configuration(_ dir: URL, epochs: Int = 2) -> RunConfiguration {
        var training = TrainingOptions()
        training.epochs = epochs
        training.batchSize = 16
        training.warmup = 2
        training.learningRate = 1e-3
        return RunConfiguration(
            data: .init(
                pairs: dir.appendingPathComponent("train.tsv").path, val: dir.appendingPathComponent("train.tsv").path,
                zeroshotLabels: root.appendingPathComponent("datasets/shapes/labels.txt").path,
                zeroshotData: dir.appendingPathComponent("test_labels.tsv").path),
            model: .init(name: dir.appendingPathComponent("micro.json").path),
            training: training)
    }

    static func train(_ run: TrainingRun) throws -> TrainingOutcome {
        run.trainer.showsProgress = false
        return try run.train()
    }

    static func stepLosses(_ folder: RunFolder) -> [Int] {
        folder.readLog().compactMap { if case .step(let s) = $0 { return s.step } else { return nil } }
    }

    @Test func trainsThroughTheLibraryAndResumesExactly() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let straight = try TrainingRun(Self.configuration(dir), folder: dir.appendingPathComponent("straight"))
        let outcome = try Self.train(straight)
        #expect(!outcome.interrupted && straight.trainer.position.epoch == 2 && straight.trainer.position.step == 12)

        // The log is typed: 12 steps, then per epoch validation and zero-shot numbers.
        let log = straight.folder.readLog()
        #expect(Self.stepLosses(straight.folder) == Array(1...12))
        let epochs = log.compactMap { if case .epoch(let e) = $0 { return e } else { return nil } }
        #expect(epochs.map(\.epoch) == [1, 2])
        #expect(epochs.allSatisfy { $0.valLoss != nil && $0.imageToTextR1 != nil && $0.zeroshotTop1 != nil && $0.zeroshotTop5 != nil })
        // The folder's configuration is the one given, plus what the run learnt of its data.
        var saved = try straight.folder.readConfiguration()
        #expect(saved.data.pairsIdentity?.hasPrefix("96 samples") == true)
        saved.data.pairsIdentity = nil
        saved.training.ranks = nil
        #expect(saved == Self.configuration(dir))
        _ = try CLIPModel.load(from: straight.folder.epochCheckpoint(2))

        // A run stopped mid-epoch (as by Ctrl-C), then resumed: bitwise the straight run.
        let folder = dir.appendingPathComponent("resumed")
        let stopped = try TrainingRun(Self.configuration(dir), folder: folder)
        stopped.trainer.afterStep = { if $0.position.step == 4 { $0.requestStop() } }
        #expect(try Self.train(stopped).interrupted)
        let resumed = try TrainingRun.resume(folder)
        #expect(resumed.isResumed && resumed.changes.isEmpty && resumed.trainer.position.step == 5 && resumed.trainer.position.batch == 5)
        _ = try Self.train(resumed)
        for ((key, a), (_, b)) in zip(straight.trainer.model.namedParameters(), resumed.trainer.model.namedParameters()) {
            #expect(a.scalars == b.scalars, "\(key) differs after resume")
        }
        #expect(Self.stepLosses(resumed.folder) == Array(1...12))
        #expect(resumed.folder.readLog().contains { if case .resumed(let r) = $0 { return r.step == 5 } else { return false } })
    }

    /// Issue 16 #4: what a resume may change is applied, logged and saved.
    @Test func aResumeAppliesAndLogsItsChanges() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = dir.appendingPathComponent("run")
        _ = try Self.train(try TrainingRun(Self.configuration(dir, epochs: 1), folder: folder))
        let resumed = try TrainingRun.resume(folder, changes: ResumeChanges(epochs: 2, learningRate: 5e-4))
        #expect(resumed.changes == ["epochs 1 → 2", "lr 0.001 → 0.0005"])
        #expect(resumed.trainer.options.learningRate == 5e-4 && resumed.trainer.options.epochs == 2)
        _ = try Self.train(resumed)
        #expect(resumed.trainer.position.epoch == 2)
        #expect(resumed.folder.readLog().contains { if case .resumed(let r) = $0 { return r.changes == resumed.changes } else { return false } })
        #expect(try resumed.folder.readConfiguration().training.epochs == 2)
    }

    /// Issue 17: early stopping ends the run once the validation loss has not improved for
    /// `patience` epochs and keeps the best epoch as `checkpoints/best`, which `-c RUN` loads; the
    /// stopped run resumes with nothing left to do. Weights that cannot move (lr 1e-30; a ViT, so
    /// no batch statistics) give the same validation loss every epoch: epoch 1 stays the best.
    @Test func earlyStoppingKeepsTheBestEpoch() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir, epochs: 6)
        c.training.learningRate = 1e-30
        c.training.patience = 2
        let run = try TrainingRun(c, folder: dir.appendingPathComponent("run"))
        _ = try Self.train(run)
        let p = run.trainer.position
        #expect(p.epoch == 3 && p.stoppedEarly == true && p.bestEpoch == 1 && p.step == 18)
        let epochs = run.folder.readLog().compactMap { if case .epoch(let e) = $0 { return e } else { return nil } }
        #expect(epochs.map(\.epoch) == [1, 2, 3] && epochs.map { $0.valLoss } == Array(repeating: epochs[0].valLoss, count: 3))
        #expect(epochs.map { $0.best == true } == [true, false, false] && epochs.map { $0.stoppedEarly == true } == [false, false, true])
        #expect(try Data(contentsOf: run.folder.best) == Data(contentsOf: run.folder.epochCheckpoint(1)))
        // `-c RUN` loads the best epoch, not the last: make the last one another model.
        let other = CLIPModel(run.trainer.model.config, seed: 99)
        try other.save(to: run.folder.epochCheckpoint(3))
        let loaded = try CLIPModel.load(from: run.folder.url).model
        let key = "text_projection"
        let value = { (m: CLIPModel) in m.namedParameters().first { $0.key == key }!.tensor.scalars }
        #expect(value(loaded) == value(run.trainer.model) && value(loaded) != value(other))
        let resumed = try TrainingRun.resume(run.folder.url)
        _ = try Self.train(resumed)
        #expect(resumed.trainer.position == p && Self.stepLosses(resumed.folder).count == 18)
    }

    /// Without a validation manifest a share of the images is held out: not trained on, validated on.
    @Test func aHeldOutShareValidates() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir, epochs: 1)
        c.data.val = nil
        c.data.holdOut = 0.25
        let run = try TrainingRun(c, folder: dir.appendingPathComponent("run"))
        #expect(run.sampleCount > 48 && run.sampleCount < 96)
        _ = try Self.train(run)
        let epochs = run.folder.readLog().compactMap { if case .epoch(let e) = $0 { return e } else { return nil } }
        #expect(epochs.count == 1 && epochs[0].valLoss != nil && epochs[0].best == true)
        c.data.val = "v.tsv"
        #expect(throws: TrainingError.self) { try c.validate() }
    }

    /// Issue 16 #6: a folder holding a run is not trained into again unless asked to overwrite.
    @Test func aRunFolderThatHoldsARunIsRefusedUnlessOverwritten() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir, epochs: 1)
        c.training.maxSteps = 1
        let folder = dir.appendingPathComponent("run")
        _ = try Self.train(try TrainingRun(c, folder: folder))
        let before = try Data(contentsOf: folder.appendingPathComponent("log.jsonl"))
        #expect(throws: TrainingError.runFolderNotEmpty(path: folder.path)) { _ = try TrainingRun(c, folder: folder) }
        #expect(try Data(contentsOf: folder.appendingPathComponent("log.jsonl")) == before)
        _ = try Self.train(try TrainingRun(c, folder: folder, overwrite: true))
        #expect(Self.stepLosses(RunFolder(folder)) == [1])
    }

    /// Issue 16 #4: the manifest is part of the run; a changed one is refused on resume.
    @Test func aChangedManifestIsRefusedOnResume() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir, epochs: 1)
        c.training.maxSteps = 1
        let folder = dir.appendingPathComponent("run")
        _ = try Self.train(try TrainingRun(c, folder: folder))
        let pairs = dir.appendingPathComponent("train.tsv")
        let lines = try String(contentsOf: pairs, encoding: .utf8).split(separator: "\n")
        try (lines.dropLast(16).joined(separator: "\n") + "\n").write(to: pairs, atomically: true, encoding: .utf8)
        #expect { _ = try TrainingRun.resume(folder) } throws: { error in
            if case .manifestChanged(let path, _, let now)? = error as? TrainingError { return path == pairs.path && now.hasPrefix("80 samples") }
            return false
        }
    }

    /// Issue 16 #15: values no run can use are refused before anything is written.
    @Test(arguments: [("steps", 0 as Float), ("lr", .nan), ("lr", .infinity), ("lr", -1), ("epochs", 0)])
    func unusableValuesAreRefusedUpFront(option: String, value: Float) throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir)
        switch option {
        case "steps": c.training.maxSteps = Int(value)
        case "epochs": c.training.epochs = Int(value)
        default: c.training.learningRate = value
        }
        let folder = dir.appendingPathComponent("run")
        #expect(throws: TrainingError.self) { _ = try TrainingRun(c, folder: folder) }
        #expect(!FileManager.default.fileExists(atPath: folder.path))
    }

    /// Issue 16 #15: a corrupt run file is named in the error.
    @Test func aCorruptRunFileIsNamed() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir, epochs: 1)
        c.training.maxSteps = 1
        let folder = dir.appendingPathComponent("run")
        _ = try Self.train(try TrainingRun(c, folder: folder))
        let file = folder.appendingPathComponent("run.json")
        try Data("{\"data\": 3".utf8).write(to: file)
        #expect { _ = try TrainingRun.resume(folder) } throws: { error in
            if case .unreadableFile(let path, _)? = error as? TrainingError { return path == file.path }
            return false
        }
    }

    /// A run folder's files that are not what they claim — a FIFO or /dev/zero as run.json or
    /// log.jsonl, a saved value no run can use, non-finite weights in `latest` — are refused at
    /// once, naming the file (before: a read blocked forever, /dev/zero was read until memory ran
    /// out, a NaN `latest` resumed into "done", a saved epochs of -5 was blamed on --epochs).
    @Test func aHostileRunFolderIsRefusedNamingTheFile() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir, epochs: 1)
        c.training.maxSteps = 1
        let folder = dir.appendingPathComponent("run")
        _ = try Self.train(try TrainingRun(c, folder: folder))
        let run = RunFolder(folder), saved = try Data(contentsOf: run.configuration), latest = try Data(contentsOf: run.latest)
        func refused(_ file: URL, _ detail: String) {
            #expect(Comment(rawValue: detail)) { _ = try TrainingRun.resume(folder) } throws: { error in
                guard let error = error as? TrainingError else { return false }
                switch error {
                case .unreadableFile(let path, _), .stateMismatch(let path, _): return path == file.path
                default: return false
                }
            }
        }
        for make in [{ mkfifo(run.configuration.path, 0o600) }, { symlink("/dev/zero", run.configuration.path) }] {
            try FileManager.default.removeItem(at: run.configuration)
            #expect(make() == 0)
            refused(run.configuration, "run.json not a regular file")
        }
        try FileManager.default.removeItem(at: run.configuration)
        var object = try JSONSerialization.jsonObject(with: saved) as! [String: Any]
        var training = object["training"] as! [String: Any]
        training["epochs"] = -5
        object["training"] = training
        try JSONSerialization.data(withJSONObject: object).write(to: run.configuration)
        refused(run.configuration, "saved epochs -5")
        try saved.write(to: run.configuration)

        try FileManager.default.removeItem(at: run.log)
        #expect(mkfifo(run.log.path, 0o600) == 0)
        refused(run.log, "log.jsonl a FIFO")
        try FileManager.default.removeItem(at: run.log)

        var bytes = [UInt8](latest)
        let headerEnd = 8 + Int(bytes[0..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian })
        for i in stride(from: headerEnd, to: bytes.count - 3, by: 4) { (bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]) = (0, 0, 0xC0, 0x7F) }
        try Data(bytes).write(to: run.latest)
        refused(run.latest, "NaN weights in latest")
    }

    /// Issue 16 #7: divergence never overwrites the last good checkpoint, and a resume with a
    /// lower learning rate continues from it.
    @Test func divergenceKeepsTheLastGoodCheckpoint() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = dir.appendingPathComponent("run")
        _ = try Self.train(try TrainingRun(Self.configuration(dir, epochs: 1), folder: folder))
        let latest = RunFolder(folder).latest
        let good = try Data(contentsOf: latest)
        let wild = try TrainingRun.resume(folder, changes: ResumeChanges(epochs: 3, learningRate: 1e30))
        #expect { _ = try Self.train(wild) } throws: { error in
            if case .diverged(_, _, let lastGood)? = error as? TrainingError { return lastGood == latest.path }
            return false
        }
        #expect(try Data(contentsOf: latest) == good)
        let calm = try TrainingRun.resume(folder, changes: ResumeChanges(epochs: 2, learningRate: 1e-4))
        #expect(calm.trainer.position.epoch == 1)
        _ = try Self.train(calm)
        #expect(calm.trainer.position.epoch == 2)
    }

    /// Issue 16 #8: a killed run's temporary checkpoint files and log lines past its last
    /// checkpoint are cleaned up when it resumes.
    @Test func aResumeCleansUpAfterAKilledRun() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = RunFolder(dir.appendingPathComponent("run"))
        _ = try Self.train(try TrainingRun(Self.configuration(dir, epochs: 1), folder: folder.url))
        let stale = folder.checkpoints.appendingPathComponent(".latest.safetensors.4242.17.tmp")
        try Data(count: 1000).write(to: stale)
        // Steps logged after the last checkpoint (then killed): the resumed run logs them again.
        folder.append(.step(.init(step: 7, epoch: 1, loss: 1, lr: 1, logitScale: 1, samplesPerSecond: 1)))
        folder.append(.step(.init(step: 8, epoch: 1, loss: 1, lr: 1, logitScale: 1, samplesPerSecond: 1)))
        let resumed = try TrainingRun.resume(folder.url, changes: ResumeChanges(epochs: 2))
        #expect(!FileManager.default.fileExists(atPath: stale.path))
        _ = try Self.train(resumed)
        #expect(Self.stepLosses(folder) == Array(1...12))
    }

    /// Run folders of earlier versions (options.json + invocation.json) still resume.
    @Test func anOlderRunFolderResumes() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = RunFolder(dir.appendingPathComponent("run"))
        _ = try Self.train(try TrainingRun(Self.configuration(dir, epochs: 1), folder: folder.url))
        let c = try folder.readConfiguration()
        let e = JSONEncoder()
        try e.encode(c.training).write(to: folder.url.appendingPathComponent("options.json"))
        let data = try JSONSerialization.jsonObject(with: e.encode(c.data)) as! [String: Any]
        let model = try JSONSerialization.jsonObject(with: e.encode(c.model)) as! [String: Any]
        try JSONSerialization.data(withJSONObject: data.merging(model) { a, _ in a }.filter { $0.key != "pairsIdentity" })
            .write(to: folder.url.appendingPathComponent("invocation.json"))
        try FileManager.default.removeItem(at: folder.configuration)
        let resumed = try TrainingRun.resume(folder.url, changes: ResumeChanges(epochs: 2))
        #expect(resumed.configuration.data == c.data && resumed.configuration.model == c.model)
        _ = try Self.train(resumed)
        #expect(resumed.trainer.position.epoch == 2)
    }

    /// The library run on two in-process ranks (threads) with the real loaders and epoch order:
    /// 2 × 8 pairs take the same steps as 1 × 16, with a queue and multi-positive targets.
    @Test func twoThreadRanksTrainLikeOneProcess() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Self.configuration(dir, epochs: 2)
        c.data.val = nil
        c.data.zeroshotLabels = nil
        c.data.zeroshotData = nil
        c.training.contrastive = ContrastiveOptions()
        c.training.contrastive!.queueSize = 24
        c.training.contrastive!.multiPositive = true
        let one = try TrainingRun(c, folder: dir.appendingPathComponent("one"))
        _ = try Self.train(one)
        c.training.batchSize = 8
        let folder = dir.appendingPathComponent("two")
        let positions = try ThreadGroup.run(size: 2) { group -> TrainingPosition in
            let run = try TrainingRun(c, folder: folder, group: group)
            _ = try Self.train(run)
            return run.trainer.position
        }
        #expect(positions.allSatisfy { $0.step == one.trainer.position.step && $0.epoch == one.trainer.position.epoch })
        let losses = { (folder: RunFolder) in folder.readLog().compactMap { if case .step(let s) = $0 { return s.loss } else { return nil } } }
        let (a, b) = (losses(one.folder), losses(RunFolder(folder)))
        #expect(a.count == 12 && b.count == 12)
        for (step, (x, y)) in zip(a, b).enumerated() {
            #expect(abs(x - y) <= 1e-6 * abs(x), "step \(step + 1): loss \(x) on one process, \(y) on two ranks")
        }
        #expect(try RunFolder(folder).readConfiguration().training.ranks == 2)

        // Rank 0 alone validates; every rank hears when it stops the run early.
        c.training.learningRate = 1e-30
        c.training.patience = 1
        c.data.holdOut = 0.25
        c.training.epochs = 5
        let stopped = try ThreadGroup.run(size: 2) { group -> TrainingPosition in
            let run = try TrainingRun(c, folder: dir.appendingPathComponent("stopped"), group: group)
            _ = try Self.train(run)
            return run.trainer.position
        }
        #expect(stopped.allSatisfy { $0.epoch == 2 && $0.stoppedEarly == true })
    }
}
