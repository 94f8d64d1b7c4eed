import ArgumentParser
import Dispatch
import Foundation
import MMData
import MMFoundation
import MMImage
import MMTensor

/// `mm preprocess`: image files → the normalised `[N, 3, S, S]` tensor a CLIP vision tower sees,
/// exactly as open_clip's preprocess makes it, written as .npy.
struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Decode and preprocess images as open_clip does; write the [N,3,S,S] tensor as .npy.",
        discussion: """
            JPEG and PNG, recognised from their bytes. The default is open_clip's eval transform \
            (bicubic resize of the shorter side, center crop, OpenAI mean/std), bit-exact with \
            PIL + open_clip. --fast decodes JPEGs with DCT-domain downscaling first (much faster \
            on large photos, slightly different). Files that cannot be read are reported on \
            standard error, their rows are left zero, and the exit status is 1.

              mm preprocess cat.jpg dog.png -o batch.npy
              mm preprocess --list images.txt --size 224 --fast -o batch.npy
              mm preprocess photo.jpg --benchmark --repeat 200 --threads 1
            """
    )

    @Argument(help: "Image files.")
    var files: [String] = []

    @Option(name: .long, help: "A file listing image paths, one a line (added after the arguments).")
    var list: String?

    @Option(name: [.short, .long], help: "Write the tensor here as .npy (float32, [N, 3, size, size]).")
    var output: String?

    @Option(name: .long, help: "Output side in pixels.")
    var size: Int = 224

    @Flag(name: .long, help: "Decode JPEGs with DCT-domain downscaling (the training default).")
    var fast = false

    @Flag(name: .long, help: "Use the training transform (RandomResizedCrop 0.9–1.0) instead of eval.")
    var train = false

    @Option(name: .long, help: "Seed of the training augmentation.")
    var seed: UInt64 = 0

    @Option(name: .long, help: "Per-channel mean, comma-separated (default: OpenAI's).")
    var mean: String?

    @Option(name: .long, help: "Per-channel std, comma-separated (default: OpenAI's).")
    var std: String?

    @Option(name: .long, help: "Decoding threads (default: MM_THREADS or the core count).")
    var threads: Int?

    @Option(name: .long, help: "Images per batch handed to the loader.")
    var batchSize: Int = 64

    @Flag(name: .long, help: "Time the loading only (no output) and print images per second as JSON.")
    var benchmark = false

    @Option(name: .customLong("repeat"), help: "With --benchmark or --memory: process the file list this many times.")
    var passes: Int = 1

    @Flag(name: .long, help: ArgumentHelp("Print resident memory (from /proc/self/statm) as the passes go, as JSON lines.", visibility: .hidden))
    var memory = false

    func validate() throws {
        try OptionBounds.check(size, "--size", OptionBounds.imageSize)
        try OptionBounds.check(batchSize, "--batch-size", OptionBounds.batchSize)
        try OptionBounds.check(passes, "--repeat", OptionBounds.passes)
        try OptionBounds.check(threads, "--threads", OptionBounds.threads)
        if output != nil && (benchmark || memory) { throw ValidationError("--output cannot be combined with --benchmark or --memory") }
        if files.isEmpty && list == nil { throw ValidationError("give image files or --list") }
    }

    func run() throws {
        var paths = files
        if let list {
            guard let text = try? ReadableFile(list, maxSize: 1 << 30).readText() else {
                throw ValidationError("\(list): cannot read the list (missing, not a regular file, or not UTF-8)")
            }
            paths += Text.lines(text).filter { !$0.isEmpty }.map(String.init)
        }
        guard !paths.isEmpty else { throw ValidationError("no image paths given") }

        let normalization = try Normalization(
            mean: parse(mean, "--mean") ?? Normalization.openAI.mean,
            std: parse(std, "--std") ?? Normalization.openAI.std)
        let decode: DecodeMode = fast ? .fast : .exact
        let transform =
            train
            ? ImageTransform.train(size: size, normalization: normalization, decode: decode)
            : ImageTransform.eval(size: size, normalization: normalization, decode: decode)
        let sample = 3 * size * size

        if benchmark || memory {
            try measure(transform, paths)
            return
        }

        // Each image's row by its position in the list; an unreadable one stays zero.
        var all = [Float](repeating: 0, count: paths.count * sample)
        var failed = 0
        let loader = try PairLoader(evaluating: paths, batchSize: batchSize, transform: transform, threads: threads ?? Threads.count, seed: seed)
        while let batch = try loader.next() {
            all.withUnsafeMutableBufferPointer { out in
                for (row, i) in batch.indices.enumerated() {
                    (out.baseAddress! + i * sample).update(from: batch.images.data + row * sample, count: sample)
                }
            }
        }
        for failure in loader.badImages {
            FileHandle.standardError.write(Data("error: \(failure.error.map { "\($0)" } ?? failure.description)\n".utf8))
            failed += 1
        }
        if let output {
            try writeNPY(all, shape: [paths.count, 3, size, size], to: output)
        }
        print(
            "\(paths.count - failed) of \(paths.count) images → [\(paths.count), 3, \(size), \(size)]"
                + (output.map { " in \($0)" } ?? ""))
        if failed > 0 { throw ExitCode(1) }
    }

    /// Times `passes` passes over the list (batches of `batchSize`) and/or logs resident memory.
    private func measure(_ transform: ImageTransform, _ paths: [String]) throws {
        var failures = 0
        var checksum = 0.0
        let threads = self.threads ?? Threads.count
        let start = DispatchTime.now().uptimeNanoseconds
        for pass in 0..<passes {
            let loader = try PairLoader(evaluating: paths, batchSize: batchSize, transform: transform, threads: threads, seed: seed &+ UInt64(pass))
            while let batch = try loader.next() {
                if pass == 0 && batch.count > 0 { checksum += Double(batch.images.data[0]) + Double(batch.images.data[batch.images.count - 1]) }
            }
            failures += loader.badImages.count
            if memory {
                print("{\"pass\": \(pass + 1), \"images\": \((pass + 1) * paths.count), \"failures\": \(failures), \"rss_kib\": \(residentKiB())}")
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let images = passes * paths.count
        if benchmark {
            print(
                "{\"images\": \(images), \"threads\": \(threads), \"fast\": \(fast), \"size\": \(size), "
                    + "\"seconds\": \(seconds), \"images_per_second\": \(Double(images) / seconds), "
                    + "\"failures\": \(failures), \"checksum\": \(checksum)}")
        }
    }

    private func parse(_ text: String?, _ name: String) throws -> SIMD3<Float>? {
        guard let text else { return nil }
        let values = text.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard values.count == 3 else { throw ValidationError("\(name) needs three comma-separated numbers, got '\(text)'") }
        if name == "--std" && values.contains(where: { $0 <= 0 }) { throw ValidationError("--std values must be positive, got '\(text)'") }
        return SIMD3(values[0], values[1], values[2])
    }

    /// Resident set size: the second field of /proc/self/statm, in pages.
    private func residentKiB() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return -1 }
        return pages * sysconf(Int32(_SC_PAGESIZE)) / 1024
    }
}
