// mm-bench: timings of mm's kernels for tools/bench/*.py, printed as one JSON object.
// Usage: mm-bench sgemm N | block WIDTH HEADS LENGTH BATCH causal|full
import Foundation
import MMNN

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
        block.parameters.forEach { $0.grad = nil }
    }
    emit(["op": "block", "width": w, "heads": h, "length": l, "batch": bs, "causal": causal, "threads": Threads.count,
          "forward_s": forward, "forward_backward_s": both,
          "forward_gflops": flops / forward / 1e9, "forward_backward_gflops": 3 * flops / both / 1e9])
default:
    FileHandle.standardError.write("usage: mm-bench sgemm N | block WIDTH HEADS LENGTH BATCH causal|full\n".data(using: .utf8)!)
    exit(2)
}

extension SeededGenerator {
    mutating func tensorNormal(_ shape: [Int]) -> Tensor {
        let t = Tensor.zeros(shape)
        t.fillNormal(std: 1, using: &self)
        return t
    }
}
