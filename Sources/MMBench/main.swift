// mm-bench: timings of mm's kernels for tools/bench/*.py, printed as one JSON object.
// Usage: mm-bench sgemm N | block WIDTH HEADS LENGTH BATCH causal|full | encode-image|encode-text|train-step MODEL BATCH | adamw MODEL
//        | conv2d B C S O K STRIDE PADDING | batchnorm-relu B C S fused|separate
import Foundation
import MMCLIP

func median(_ runs: Int = 5, _ body: () -> Void) -> Double {
    body()  // warm-up: buffers, pool, page faults
    var times: [Double] = []
    for _ in 0..<runs {
        let t = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9)
    }
    return times.sorted()[runs / 2]
}

/// User + system CPU time of the process so far, all threads.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

func emit(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

let args = CommandLine.arguments.dropFirst()
var g = SeededGenerator(seed: 0)
switch args.first {
case "sgemm":
    let n = Int(args.dropFirst().first ?? "2048")!
    let a = g.tensorNormal([n, n]), b = g.tensorNormal([n, n])
    let s = median { _ = Tensor.matmul(a, b) }
    emit(["op": "sgemm", "n": n, "threads": Threads.count, "seconds": s, "gflops": 2 * pow(Double(n), 3) / s / 1e9])
case "block":
    let v = args.dropFirst().map { $0 }
    let (w, h, l, bs) = (Int(v[0])!, Int(v[1])!, Int(v[2])!, Int(v[3])!)
    let causal = v[4] == "causal"
    let block = ResidualAttentionBlock(width: w, heads: h)
    block.attn.resetParameters(using: &g)
    block.mlp.fc.resetParameters(using: &g)
    block.mlp.proj.resetParameters(using: &g)
    let x = g.tensorNormal([bs, l, w])
    let flops = Double(bs * l * 24 * w * w + bs * h * 4 * l * l * (w / h))
    let forward = median { _ = block(x, causal: causal) }
    x.requiresGrad = true
    let both = median {
        let tape = Tape()
        let y = tape.record { block(x, causal: causal) }
        tape.backward(y, seed: y)  // any upstream gradient of the right shape
        x.grad = nil
        for p in block.parameters { p.grad = nil }
    }
    emit([
        "op": "block", "width": w, "heads": h, "length": l, "batch": bs, "causal": causal, "threads": Threads.count,
        "forward_s": forward, "forward_backward_s": both,
        "forward_gflops": flops / forward / 1e9, "forward_backward_gflops": 3 * flops / both / 1e9
    ])
case "encode-image", "encode-text", "encode-text-full":
    // Inference of one tower of a randomly initialised model, no tape; peak RSS of the process.
    let v = Array(args.dropFirst())
    let model = CLIPModel(try! CLIPConfig(named: v[0]))
    let batch = Int(v[1])!
    let c = model.config
    let seconds: Double
    if args.first == "encode-image" {
        let images = g.tensorNormal([batch, 3, c.vision.imageSize, c.vision.imageSize])
        seconds = median(3) { _ = model.encodeImage(images) }
    } else {
        // Captions of varied length (SOT, words, EOT — the highest id —, padding), or with
        // encode-text-full every row filling the context (no padding to skip).
        let l = c.text.contextLength
        var ids = [Int32](repeating: 0, count: batch * l)
        for row in 0..<batch {
            let n = args.first == "encode-text-full" ? l - 2 : 5 + row % 15
            ids[row * l] = 49406
            for j in 1...n { ids[row * l + j] = Int32(1000 + (row * 31 + j * 7) % 40000) }
            ids[row * l + n + 1] = 49407
        }
        let text = IntTensor(shape: [batch, l], values: ids)
        seconds = median(3) { _ = model.encodeText(text) }
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    emit([
        "op": args.first!, "model": v[0], "batch": batch, "threads": Threads.count, "seconds": seconds,
        "items_per_s": Double(batch) / seconds, "peak_rss_mb": Double(usage.ru_maxrss) / 1024
    ])
case "train-step":
    // One AdamW step of the symmetric InfoNCE loss on random inputs (as reference/bench_train.py).
    let v = Array(args.dropFirst())
    let model = CLIPModel(try! CLIPConfig(named: v[0]))
    let batch = Int(v[1])!
    let c = model.config
    let images = g.tensorNormal([batch, 3, c.vision.imageSize, c.vision.imageSize])
    let ids = IntTensor(
        shape: [batch, c.text.contextLength],
        values: (0..<(batch * c.text.contextLength)).map { _ in Int32(1 + g.next() % 48_999) })
    let opt = AdamW(model, weightDecay: 0.1)
    let step = {
        opt.zeroGradients()
        let tape = Tape()
        let loss = tape.record {
            ContrastiveLoss.infoNCE(image: model.encodeImage(images), text: model.encodeText(ids), logitScale: model.logitScale)
        }
        tape.backward(loss)
        opt.update(lr: 1e-4)
    }
    step()
    // CPU seconds per step as well: on a shared machine they move less than wall time.
    var cpu: [Double] = []
    let seconds = median(5) {
        let before = cpuSeconds()
        step()
        cpu.append(cpuSeconds() - before)
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    emit([
        "op": "train-step", "model": v[0], "batch": batch, "threads": Threads.count, "step_s": seconds,
        "samples_per_s": Double(batch) / seconds, "cpu_s_per_step": cpu.sorted()[cpu.count / 2],
        "params": model.parameterCount, "peak_rss_mb": Double(usage.ru_maxrss) / 1024
    ])
case "adamw":
    // One AdamW update of every parameter of MODEL (gradients filled with noise).
    let model = CLIPModel(try! CLIPConfig(named: Array(args.dropFirst())[0]))
    for p in model.parameters { p.grad = g.tensorNormal(p.shape) }
    let opt = AdamW(model, weightDecay: 0.1)
    let seconds = median(9) { opt.update(lr: 1e-4) }
    emit(["op": "adamw", "params": model.parameterCount, "threads": Threads.count, "seconds": seconds])
case "conv2d":
    // One convolution [B, C, S, S] → [B, O, S', S'], forward alone and forward + backward (∂x, ∂W).
    let v = args.dropFirst().map { Int($0)! }
    let (bs, c, size, o, k, stride, padding) = (v[0], v[1], v[2], v[3], v[4], v[5], v[6])
    let x = g.tensorNormal([bs, c, size, size]), w = g.tensorNormal([o, c, k, k])
    let forward = median { _ = x.conv2d(w, stride: stride, padding: padding) }
    x.requiresGrad = true
    w.requiresGrad = true
    let both = median {
        let tape = Tape()
        let y = tape.record { x.conv2d(w, stride: stride, padding: padding) }
        tape.backward(y, seed: y)
        x.grad = nil
        w.grad = nil
    }
    emit(["op": "conv2d", "shape": v, "threads": Threads.count, "forward_s": forward, "forward_backward_s": both])
case "batchnorm-relu":
    // BatchNorm2d (training) + ReLU over [B, C, S, S], fused or as two ops, forward + backward.
    let v = args.dropFirst().map { $0 }
    let (bs, c, size, fused) = (Int(v[0])!, Int(v[1])!, Int(v[2])!, v[3] == "fused")
    let x = g.tensorNormal([bs, c, size, size]), mean = Tensor.zeros([c]), variance = Tensor.filled([c], with: 1)
    let weight = Tensor.filled([c], with: 1), bias = Tensor.zeros([c])
    for t in [x, weight, bias] { t.requiresGrad = true }
    let both = median {
        let tape = Tape()
        let y = tape.record {
            fused
                ? x.batchNorm2d(weight: weight, bias: bias, runningMean: mean, runningVar: variance, training: true, relu: true)
                : x.batchNorm2d(weight: weight, bias: bias, runningMean: mean, runningVar: variance, training: true).relu()
        }
        tape.backward(y, seed: y)
        for t in [x, weight, bias] { t.grad = nil }
    }
    emit(["op": "batchnorm-relu", "fused": fused, "threads": Threads.count, "forward_backward_s": both])
default:
    FileHandle.standardError.write(
        "usage: mm-bench sgemm N | block WIDTH HEADS LENGTH BATCH causal|full | encode-image|encode-text|train-step MODEL BATCH | adamw MODEL | conv2d B C S O K STRIDE PADDING | batchnorm-relu B C S fused|separate\n"
            .data(
                using: .utf8)!)
    exit(2)
}

extension SeededGenerator {
    mutating func tensorNormal(_ shape: [Int]) -> Tensor {
        let t = Tensor.zeros(shape)
        t.fillNormal(std: 1, using: &self)
        return t
    }
}
