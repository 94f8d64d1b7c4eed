"""ViT-B-32 inference, mm vs open_clip, 2 threads each, one run (issue 5).

encode_image (batch 32, 224²) and encode_text (batch 256, 77 tokens), no grad, random weights.
Each measurement runs in its own process so that peak resident memory is per task.
Run: .venv-ref/bin/python tools/bench/bench_encode.py  (after `swift build -c release`)."""
import json, os, resource, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, ".build", "release", "mm-bench")
THREADS = 2
# FLOPs per item (2 × multiply-adds) for ViT-B-32, from the layer shapes.
def vit_flops(w=768, layers=12, tokens=50, patch=32, embed=512):
    block = tokens * 24 * w * w + 4 * tokens * tokens * w
    return layers * block + 2 * (tokens - 1) * 3 * patch * patch * w + 2 * w * embed
def text_flops(w=512, layers=12, L=77, embed=512):
    return layers * (L * 24 * w * w + 4 * L * L * w) + 2 * w * embed


CAPTIONS = [f"a photo of a number {i} dog on the grass" for i in range(256)]


def torch_side(task, batch):
    import torch, open_clip
    torch.set_num_threads(THREADS); torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    if task == "encode-image":
        x = torch.randn(batch, 3, 224, 224); f = lambda: model.encode_image(x)
    else:
        tok = open_clip.get_tokenizer("ViT-B-32")
        x = tok(CAPTIONS[:batch]); f = lambda: model.encode_text(x)
    with torch.no_grad():
        f(); ts = []
        for _ in range(3):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    s = sorted(ts)[1]
    print(json.dumps({"seconds": s, "items_per_s": batch / s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(cmd, env=None):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--torch":
        return torch_side(sys.argv[2], int(sys.argv[3]))
    if not os.path.exists(BENCH):
        subprocess.run(["swift", "build", "-c", "release", "--product", "mm-bench"], cwd=ROOT, check=True)
    print("| ViT-B-32 | mm items/s | open_clip items/s | mm / open_clip | mm GFLOP/s | open_clip GFLOP/s | peak RSS mm / open_clip (MB) |")
    print("|---|---|---|---|---|---|---|")
    # Text: open_clip always runs all 77 positions. mm skips the padding after the batch's last
    # end-of-text token (same result under the causal mask): "encode-text" uses captions of 5–19
    # words, "encode-text-full" captions filling the context, where there is nothing to skip.
    # GFLOP/s are for the full 77-token computation, i.e. effective throughput.
    for task, batch, flops in [("encode-image", 32, vit_flops()), ("encode-text", 256, text_flops()),
                               ("encode-text-full", 256, text_flops())]:
        ours = run([BENCH, task, "ViT-B-32", str(batch)], env=dict(os.environ, MM_THREADS=str(THREADS)))
        ref = run([sys.executable, __file__, "--torch", "encode-text" if task.startswith("encode-text") else task, str(batch)])
        print(f"| {task} (batch {batch}) | {ours['items_per_s']:.1f} | {ref['items_per_s']:.1f} | "
              f"{ours['items_per_s'] / ref['items_per_s']:.2f}× | {ours['items_per_s'] * flops / 1e9:.0f} | "
              f"{ref['items_per_s'] * flops / 1e9:.0f} | {ours['peak_rss_mb']:.0f} / {ref['peak_rss_mb']:.0f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
