"""ModifiedResNet's convolutions and batch norm, mm vs PyTorch with the same thread count, in one run.

Shapes: the widths of a small ResNet tower at batch 64. Prints seconds for the forward pass (no
grad) and forward+backward (∂x and ∂W), and the ratio torch / mm (> 1: mm is faster); then mm's
BatchNorm2d + ReLU fused against the two ops apart. Each side is timed (median of 5) in three
alternating rounds and the best round kept, so that load from other processes on a shared machine
hits both alike. Run after `swift build -c release`:
    .venv-ref/bin/python tools/bench/bench_conv.py [THREADS]    # default 2"""
import sys
import torch
import torch.nn.functional as F
from kernel_timing import median, mm_bench

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
ROUNDS = 3
torch.set_num_threads(THREADS)
torch.manual_seed(0)

# (batch, channels, size, out channels, kernel, stride, padding)
SHAPES = [
    (64, 16, 32, 16, 3, 1, 1),
    (64, 32, 16, 128, 1, 1, 0),
    (64, 64, 16, 64, 3, 1, 1),
    (64, 3, 64, 16, 3, 2, 1),
]


def torch_conv(b, c, s, o, k, stride, padding):
    x, w = torch.randn(b, c, s, s), torch.randn(o, c, k, k)
    with torch.no_grad():
        fwd = median(lambda: F.conv2d(x, w, stride=stride, padding=padding))
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()

    def fb():
        y = F.conv2d(xg, wg, stride=stride, padding=padding)
        y.backward(y.detach())
        xg.grad = wg.grad = None
    return fwd, median(fb)


def main():
    print(f"torch {torch.__version__}, {THREADS} threads; seconds (best of {ROUNDS} rounds of median of 5)\n")
    print("| conv2d | pass | mm s | torch s | torch / mm |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        b, c, s, o, k, stride, padding = shape
        tf = tb = mf = mb = float("inf")
        for _ in range(ROUNDS):
            f, fb = torch_conv(*shape)
            r = mm_bench(THREADS, "conv2d", *shape)
            tf, tb = min(tf, f), min(tb, fb)
            mf, mb = min(mf, r["forward_s"]), min(mb, r["forward_backward_s"])
        name = f"[{b}, {c}, {s}, {s}] {k}×{k}/{stride} p{padding} → {o}"
        for label, m, t in [("forward", mf, tf), ("forward+backward", mb, tb)]:
            print(f"| {name} | {label} | {m:.4f} | {t:.4f} | {t / m:.2f} |")
    print()
    b, c, s = 64, 64, 16
    fused = min(mm_bench(THREADS, "batchnorm-relu", b, c, s, "fused")["forward_backward_s"] for _ in range(ROUNDS))
    apart = min(mm_bench(THREADS, "batchnorm-relu", b, c, s, "separate")["forward_backward_s"] for _ in range(ROUNDS))
    print(f"mm BatchNorm2d + ReLU [{b}, {c}, {s}, {s}] forward+backward: fused {fused:.4f} s, "
          f"separate {apart:.4f} s (separate / fused {apart / fused:.2f})")


if __name__ == "__main__":
    main()
