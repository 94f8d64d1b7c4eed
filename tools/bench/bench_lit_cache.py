"""LiT with and without cached image features (issue 17), one run: `mm train --lock-image` on the
first PAIRS pairs of datasets/shapes for 3 epochs from a pretrained checkpoint, once as is (every
epoch decodes, augments and runs the locked image tower) and once with --cache-image-features
(evaluation transform; features computed in epoch 1, read back after), alternating ROUNDS times.
Prints training samples/s per epoch (from the runs' log.jsonl: loading and steps, not validation
or checkpoints; best of the rounds, as other work on a shared machine only slows a run down),
the CPU seconds of each whole run (checkpoints included), and the ratios cached / uncached.

Model: mm-tiny, a checkpoint of one training step standing in for pretrained weights; or
--model ViT-B-32 with the perturbed real weights of `make fixtures-vitb32` (needs ~3 GB of disk
per run for its checkpoints). Each run folder is removed once its log is read.
Run: python3 tools/bench/bench_lit_cache.py [--model mm-tiny|ViT-B-32] [--pairs N] [--batch B] [--rounds R]
(after `swift build -c release`; 2 threads, MM_THREADS=2)."""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MM = os.path.join(ROOT, ".build", "release", "mm")
SHAPES = os.path.join(ROOT, "datasets", "shapes")
VITB32 = os.path.join(ROOT, ".build", "fixtures", "vitb32", "vitb32.safetensors")
EPOCHS = 3
ENV = dict(os.environ, MM_THREADS="2")


def mm(*args):
    """Runs mm; returns the CPU seconds (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([MM, *args], env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def subset(path, count):
    """The first `count` training pairs, with absolute image paths."""
    with open(os.path.join(SHAPES, "train.tsv")) as f:
        header, *rows = f.read().splitlines()
    with open(path, "w") as f:
        f.write(header + "\n")
        for row in rows[:count]:
            image, caption = row.split("\t", 1)
            f.write(os.path.join(SHAPES, image) + "\t" + caption + "\n")


def epochs(run):
    """Samples/s of each epoch: its steps' samples over its training seconds."""
    with open(os.path.join(run, "log.jsonl")) as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if "event" not in r]
    ends = [r for r in records if r.get("event") == "epoch"]
    out, before = [], 0.0
    for e in ends:
        n = sum(1 for s in steps if s["epoch"] == e["epoch"] - 1)
        out.append(n / (e["train_seconds"] - before))
        before = e["train_seconds"]
    return out  # steps/s; times the batch below


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mm-tiny", choices=["mm-tiny", "ViT-B-32"])
    p.add_argument("--pairs", type=int, default=None, help="default: 256 for ViT-B-32, 1024 for mm-tiny")
    p.add_argument("--batch", type=int, default=None, help="default: 32 for ViT-B-32, 64 for mm-tiny")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    vit = a.model == "ViT-B-32"
    pairs, batch = a.pairs or (256 if vit else 1024), a.batch or (32 if vit else 64)
    if not os.path.exists(MM):
        sys.exit(f"{MM} is missing: run `swift build -c release` first")
    if vit and not os.path.exists(VITB32):
        sys.exit(f"{VITB32} is missing: run `make fixtures-vitb32`")
    work = tempfile.mkdtemp(prefix="mm-bench-lit-")
    try:
        manifest = os.path.join(work, "pairs.tsv")
        subset(manifest, pairs)
        if vit:
            checkpoint = VITB32
        else:
            mm("train", manifest, "--model", "mm-tiny", "--steps", "1", "--epochs", "1", "--batch-size", str(batch),
               "-o", os.path.join(work, "init"))
            checkpoint = os.path.join(work, "init", "checkpoints", "epoch_1.safetensors")
        common = ["train", manifest, "--pretrained", checkpoint, "--lock-image", "--epochs", str(EPOCHS),
                  "--batch-size", str(batch), "--lr", "1e-5", "--warmup", "2", "--overwrite"]
        if vit:
            common += ["--model", "ViT-B-32"]  # the fixture's metadata names no config
        results, cpu = {"uncached": [], "cached": []}, {"uncached": [], "cached": []}
        for _ in range(a.rounds):
            for name in results:
                run = os.path.join(work, name)
                cpu[name].append(mm(*common, "-o", run, *(["--cache-image-features"] if name == "cached" else [])))
                results[name].append([s * batch for s in epochs(run)])
                shutil.rmtree(run)
        best = {k: [max(r[e] for r in v) for e in range(EPOCHS)] for k, v in results.items()}
        print(f"| {a.model}, locked pretrained image tower, {pairs} shapes pairs, batch {batch}, "
              f"{EPOCHS} epochs, best of {a.rounds} | uncached | cached | cached / uncached |")
        print("|---|---|---|---|")
        for e in range(EPOCHS):
            u, c = best["uncached"][e], best["cached"][e]
            print(f"| epoch {e + 1} samples/s | {u:.1f} | {c:.1f} | {c / u:.2f}× |")
        u, c = min(cpu["uncached"]), min(cpu["cached"])
        print(f"| CPU seconds, whole run | {u:.1f} | {c:.1f} | {c / u:.2f}× |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
