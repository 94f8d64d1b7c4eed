"""Training throughput, mm vs open_clip, one run (issue 6): config mm-tiny
(../shared/reference/mm-tiny.json, bundled as `mm-tiny`), batch 128, AdamW, symmetric InfoNCE,
random inputs, 2 threads each, each side in its own process (so peak RSS is per side).
Run: .venv-ref/bin/python tools/bench/bench_train.py [BATCH]  (after `swift build -c release`)."""
import json, os, resource, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, ".build", "release", "mm-bench")
CONFIG = os.path.join(ROOT, "Sources", "MMCLIP", "configs", "mm-tiny.json")
THREADS = 2
FLOPS_PER_SAMPLE = 2.75e9  # ../shared/ANCHORS.md, forward + backward


def torch_side(batch):
    import torch, open_clip
    from open_clip.loss import ClipLoss
    torch.manual_seed(0); torch.set_num_threads(THREADS)
    open_clip.add_model_config(CONFIG)
    model = open_clip.create_model("mm-tiny", pretrained=None).train()
    imgs = torch.randn(batch, 3, 64, 64); txt = torch.randint(1, 49000, (batch, 32))
    loss_fn = ClipLoss(); opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    def step():
        opt.zero_grad(set_to_none=True)
        f_i, f_t, ls = model(imgs, txt)[:3]
        loss_fn(f_i, f_t, ls).backward(); opt.step()
    for _ in range(2): step()
    ts = []
    for _ in range(5):
        t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
    s = sorted(ts)[2]
    print(json.dumps({"step_s": s, "samples_per_s": batch / s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(cmd, env=None):
    return json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--torch":
        return torch_side(int(sys.argv[2]))
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    if not os.path.exists(BENCH):
        subprocess.run(["swift", "build", "-c", "release", "--product", "mm-bench"], cwd=ROOT, check=True)
    ref = run([sys.executable, __file__, "--torch", str(batch)])
    ours = run([BENCH, "train-step", "mm-tiny", str(batch)], env=dict(os.environ, MM_THREADS=str(THREADS)))
    print(f"| mm-tiny training, batch {batch} | mm | open_clip | mm / open_clip |")
    print("|---|---|---|---|")
    print(f"| samples/s | {ours['samples_per_s']:.1f} | {ref['samples_per_s']:.1f} | {ours['samples_per_s'] / ref['samples_per_s']:.2f}× |")
    print(f"| effective GFLOP/s | {ours['samples_per_s'] * FLOPS_PER_SAMPLE / 1e9:.0f} | {ref['samples_per_s'] * FLOPS_PER_SAMPLE / 1e9:.0f} | |")
    print(f"| peak RSS (MB) | {ours['peak_rss_mb']:.0f} | {ref['peak_rss_mb']:.0f} | {ours['peak_rss_mb'] / ref['peak_rss_mb']:.2f}× |")


if __name__ == "__main__":
    main()
