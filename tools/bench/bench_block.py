"""Pre-LN transformer block, mm vs PyTorch/open_clip, both with 2 threads, in one run.

Shapes (issue 2): text tower w512 h8 L77 B32 causal; ViT-B-32 vision tower w768 h12 L50 B32.
Prints GFLOP/s for forward (no grad) and forward+backward, the ratio mm/torch, and each as a
fraction of the sgemm rate measured in the same run. Run: make bench-block
(or .venv-ref/bin/python tools/bench/bench_block.py after `swift build -c release`)."""
import json, os, subprocess
import torch
from kernel_timing import BENCH, ROOT, median, mm_bench
from open_clip.transformer import ResidualAttentionBlock

THREADS = 2
torch.set_num_threads(THREADS)
torch.manual_seed(0)


def torch_block(w, h, L, B, causal):
    blk = ResidualAttentionBlock(w, h, mlp_ratio=4.0)
    x = torch.randn(B, L, w)
    mask = torch.full((L, L), float("-inf")).triu(1) if causal else None
    flops = B * L * 24 * w * w + B * h * 4 * L * L * (w // h)
    with torch.no_grad():
        fwd = median(lambda: blk(x, attn_mask=mask))
    xg = x.clone().requires_grad_()
    def fb():
        y = blk(xg, attn_mask=mask); y.backward(y.detach())
    both = median(fb)
    return flops / fwd / 1e9, 3 * flops / both / 1e9


def main():
    if not os.path.exists(BENCH):
        subprocess.run(["swift", "build", "-c", "release", "--product", "mm-bench"], cwd=ROOT, check=True)
    a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)
    torch_gemm = 2 * 2048 ** 3 / median(lambda: a @ b) / 1e9
    mm_gemm = mm_bench(THREADS, "sgemm", 2048)["gflops"]
    print(f"sgemm 2048³, {THREADS} threads: mm (OpenBLAS) {mm_gemm:.1f} GFLOP/s, torch {torch_gemm:.1f} GFLOP/s")
    print()
    print("| block | pass | mm GFLOP/s | torch GFLOP/s | mm / torch | mm / sgemm |")
    print("|---|---|---|---|---|---|")
    rows = []
    for (w, h, L, B, causal) in [(512, 8, 77, 32, True), (768, 12, 50, 32, False)]:
        tf, tb = torch_block(w, h, L, B, causal)
        r = mm_bench(THREADS, "block", w, h, L, B, "causal" if causal else "full")
        name = f"w{w} h{h} L{L} B{B}{' causal' if causal else ''}"
        for label, m, t in [("forward", r["forward_gflops"], tf), ("forward+backward", r["forward_backward_gflops"], tb)]:
            print(f"| {name} | {label} | {m:.1f} | {t:.1f} | {m / t:.2f}× | {m / mm_gemm:.0%} |")
            rows.append({"block": name, "pass": label, "mm": m, "torch": t, "ratio": m / t})
    json.dump({"sgemm": {"mm": mm_gemm, "torch": torch_gemm}, "blocks": rows},
              open(os.path.join(ROOT, ".build", "bench_block.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
