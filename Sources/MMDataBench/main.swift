// mm-data-bench: timings of MMData for tools/bench/bench_data.py, printed as one JSON object.
// Usage: mm-data-bench manifest PATH
//        mm-data-bench loader MANIFEST SIZE BATCH THREADS BATCHES [CONTEXT]
//        mm-data-bench overlap MANIFEST SIZE BATCH THREADS BATCHES CONTEXT GEMM   (a training step
//          stand-in: GEMM³ matrix products on all cores per batch, with the loader at normal
//          and at background priority)
//        mm-data-bench shards SPEC SIZE BATCH THREADS SAMPLES   (training loader over shards, resampled,
//          open_clip's train transform; resident memory every 5,000 samples)
import Foundation
import MMData
import MMImage
import MMTensor
import MMTokenizer

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let t = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
}

/// CPU time of the whole process so far (all threads), in seconds.
func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Resident and peak resident memory of this process, from /proc/self/status, in MB.
func residentMB(_ field: String = "VmRSS:") -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) })
    else { return 0 }
    return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}

func peakMB() -> Double { residentMB("VmHWM:") }

func emit(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

let args = Array(CommandLine.arguments.dropFirst())
do {
    switch args.first {
    case "manifest":
        // One full read (file bytes → resolved paths and captions), as a program does once;
        // bench_data.py takes the median over fresh processes.
        var manifest: Manifest?
        let cpu = cpuSeconds()
        let s = try seconds { manifest = try Manifest(path: args[1]) }
        emit(["what": "manifest", "lines": manifest!.count, "seconds": s, "cpu_seconds": cpuSeconds() - cpu])
    case "loader":
        let manifest = try Manifest(path: args[1])
        let (size, batch, threads, batches) = (Int(args[2])!, Int(args[3])!, Int(args[4])!, Int(args[5])!)
        let tokenizer = try Tokenizer(contextLength: args.count > 6 ? Int(args[6])! : 77)
        let order = try EpochOrder(sampleCount: manifest.count, batchSize: batch, seed: 0)
        let loader = try PairLoader(
            training: manifest, order: order, transform: .train(size: size),
            tokenizer: tokenizer, threads: threads)
        _ = try loader.next()  // warm-up: threads, tokenizer cache, page cache
        var samples = 0
        let s = try seconds {
            for _ in 0..<batches { samples += try loader.next()!.count }
        }
        emit([
            "what": "loader", "threads": threads, "batch": batch, "size": size, "samples": samples,
            "seconds": s, "samples_per_second": Double(samples) / s
        ])
    case "overlap":
        let manifest = try Manifest(path: args[1])
        let (size, batch, threads, batches) = (Int(args[2])!, Int(args[3])!, Int(args[4])!, Int(args[5])!)
        let (context, n) = (Int(args[6])!, Int(args[7])!)
        let tokenizer = try Tokenizer(contextLength: context)
        let order = try EpochOrder(sampleCount: manifest.count, batchSize: batch, seed: 0)
        var g = SeededGenerator(seed: 0)
        let a = Tensor.zeros([n, n]), b = Tensor.zeros([n, n])
        a.fillNormal(std: 1, using: &g)
        b.fillNormal(std: 1, using: &g)
        func step() { _ = Tensor.matmul(a, b) }
        step()
        let compute = seconds { for _ in 0..<batches { step() } }
        func run(background: Bool?) throws -> Double {
            let loader = try PairLoader(
                training: manifest, order: order, transform: .train(size: size), tokenizer: tokenizer,
                threads: threads, background: background ?? false)
            _ = try loader.next()
            return try seconds {
                for _ in 0..<batches {
                    _ = try loader.next()!
                    if background != nil { step() }
                }
            }
        }
        let alone = try run(background: nil)
        let normal = try run(background: false)
        let idle = try run(background: true)
        emit([
            "what": "overlap", "threads": threads, "batch": batch, "size": size, "batches": batches, "gemm": n,
            "compute_seconds": compute, "loader_seconds": alone, "together_normal_seconds": normal,
            "together_background_seconds": idle
        ])
    case "shards":
        let set = try ShardSet(args[1])
        let (size, batch, threads, total) = (Int(args[2])!, Int(args[3])!, Int(args[4])!, Int(args[5])!)
        let order = try ShardOrder(epochSize: total + batch, batchSize: batch, seed: 0, resampled: true)
        let loader = try PairLoader(
            training: set, order: order, transform: .train(size: size),
            tokenizer: try Tokenizer(contextLength: 77), epochs: 1, threads: threads)
        _ = try loader.next()  // warm-up
        var samples = 0, rss: [[Double]] = [], nextMark = 0
        let s = try seconds {
            while samples < total, let b = try loader.next() {
                samples += b.count
                if samples >= nextMark { rss.append([Double(samples), residentMB()]); nextMark += 5000 }
            }
        }
        emit([
            "what": "shards", "threads": threads, "batch": batch, "size": size, "samples": samples, "seconds": s,
            "samples_per_second": Double(samples) / s, "rss_mb": rss, "peak_rss_mb": peakMB()
        ])
    default:
        FileHandle.standardError.write(Data("usage: mm-data-bench manifest PATH | loader MANIFEST SIZE BATCH THREADS BATCHES [CONTEXT]\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("mm-data-bench: \(error)\n".utf8))
    exit(1)
}
