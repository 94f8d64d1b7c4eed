"""ModifiedResNet's convolutions and batch norm, mm vs PyTorch, both with 2 threads, in one run.

Shapes: the widths of a small ResNet tower at batch 64. Prints seconds for the forward pass (no
grad) and forward+backward (∂x and ∂W), and the ratio torch / mm (> 1: mm is faster); then mm's
BatchNorm2d + ReLU fused against the two ops apart. Run after `swift build -c release`:
    .venv-ref/bin/python tools/bench/bench_conv.py"""
import json, os, subprocess, time
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, ".build", "release", "mm-bench")
THREADS = 2
torch.set_num_threads(THREADS)
torch.manual_seed(0)

# (batch, channels, size, out channels, kernel, stride, padding)
SHAPES = [
    (64, 16, 32, 16, 3, 1, 1),
    (64, 32, 16, 128, 1, 1, 0),
    (64, 64, 16, 64, 3, 1, 1),
    (64, 3, 64, 16, 3, 2, 1),
]


def median(f, n=5):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2]


def ours(*args):
    env = dict(os.environ, MM_THREADS=str(THREADS))
    out = subprocess.run([BENCH, *map(str, args)], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


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
    print(f"torch {torch.__version__}, {THREADS} threads; seconds (median of 5)\n")
    print("| conv2d | pass | mm s | torch s | torch / mm |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        b, c, s, o, k, stride, padding = shape
        tf, tb = torch_conv(*shape)
        r = ours("conv2d", *shape)
        name = f"[{b}, {c}, {s}, {s}] {k}×{k}/{stride} p{padding} → {o}"
        for label, m, t in [("forward", r["forward_s"], tf), ("forward+backward", r["forward_backward_s"], tb)]:
            print(f"| {name} | {label} | {m:.4f} | {t:.4f} | {t / m:.2f} |")
    print()
    b, c, s = 64, 64, 16
    fused = ours("batchnorm-relu", b, c, s, "fused")["forward_backward_s"]
    apart = ours("batchnorm-relu", b, c, s, "separate")["forward_backward_s"]
    print(f"mm BatchNorm2d + ReLU [{b}, {c}, {s}, {s}] forward+backward: fused {fused:.4f} s, "
          f"separate {apart:.4f} s (separate / fused {apart / fused:.2f})")


if __name__ == "__main__":
    main()
