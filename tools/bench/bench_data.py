#!/usr/bin/env python3
"""Data pipeline throughput: mm's MMData vs open_clip's CsvDataset + DataLoader, in one run.

    .venv-ref/bin/python tools/bench/bench_data.py [--bench .build/release/mm-data-bench] [--batches 20]

1. Manifest: a 1,000,000-line TSV (the shapes train pairs repeated) read into image paths and
   captions. Reference: `open_clip_train.data.CsvDataset.__init__` (pandas `read_csv` + `tolist`);
   ours: `Manifest(path:)` (also validates UTF-8 and resolves paths against the manifest's folder).
   Median of 3 runs each (open_clip's in one process, freeing between runs; ours in fresh processes),
   wall time and CPU time (the latter is steadier on a shared machine).
2. Loader: training batches of 128 from datasets/shapes/train.tsv (64×64 JPEG/PNG), open_clip's
   train transform (RandomResizedCrop(64, scale 0.9–1), normalise) and tokenizer (context 32, as
   mm-tiny). Reference: `CsvDataset` in a `torch.utils.data.DataLoader(num_workers=2, shuffle=True,
   drop_last=True)` as open_clip_train builds it; ours: `PairLoader` with 2 threads. Both count
   --batches batches after a first one (worker start-up, warm caches), with nothing consuming them.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import torch
    import open_clip
    from open_clip_train.data import CsvDataset
except ImportError as error:
    sys.exit(f"bench_data.py: {error} — run `make venv` and use .venv-ref/bin/python")


def ours(bench, *args):
    env = dict(os.environ, MM_THREADS="2")
    out = subprocess.run([bench, *map(str, args)], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def manifest(bench, directory):
    shapes = ROOT / "datasets" / "shapes"
    pairs = (shapes / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    path = directory / "million.tsv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("filepath\ttitle\n")
        for i in range(1_000_000):
            f.write(pairs[i % len(pairs)] + "\n")
    times, cpu = [], []
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        dataset = CsvDataset(str(path), None, "filepath", "title", sep="\t")
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        assert len(dataset) == 1_000_000
        del dataset
    runs = [ours(bench, "manifest", path) for _ in range(3)]
    assert all(r["lines"] == 1_000_000 for r in runs), runs
    return ((statistics.median(times), statistics.median(cpu)),
            (statistics.median(r["seconds"] for r in runs), statistics.median(r["cpu_seconds"] for r in runs)))


def loader(bench, batches):
    shapes = ROOT / "datasets" / "shapes"
    transform = open_clip.image_transform(64, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=32)
    cwd = os.getcwd()
    os.chdir(shapes)  # open_clip opens manifest paths relative to the working directory
    try:
        dataset = CsvDataset("train.tsv", transform, "filepath", "title", sep="\t", tokenizer=tokenizer)
        data = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True, num_workers=2,
                                           drop_last=True, persistent_workers=True)
        it = iter(data)
        next(it)
        t = time.perf_counter()
        samples = 0
        for _ in range(batches):
            images, texts = next(it)
            samples += images.shape[0]
        theirs = samples / (time.perf_counter() - t)
    finally:
        os.chdir(cwd)
    mine = ours(bench, "loader", shapes / "train.tsv", 64, 128, 2, batches, 32)
    return theirs, mine["samples_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=str(ROOT / ".build" / "release" / "mm-data-bench"))
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    if not os.path.exists(args.bench):
        sys.exit(f"bench_data.py: {args.bench} not found — run `swift build -c release --product mm-data-bench`")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        theirs, mine = manifest(args.bench, Path(tmp))
    print(f"manifest, 1,000,000 lines: open_clip CsvDataset (pandas) {theirs[0]:.3f} s ({theirs[1]:.3f} s CPU), "
          f"mm {mine[0]:.3f} s ({mine[1]:.3f} s CPU) — mm {theirs[0] / mine[0]:.2f}× faster ({theirs[1] / mine[1]:.2f}× in CPU time)")
    theirs, mine = loader(args.bench, args.batches)
    print(f"loader, shapes train 64×64, batch 128, 2 workers/threads: open_clip {theirs:.0f} samples/s, "
          f"mm {mine:.0f} samples/s — mm {mine / theirs:.2f}×")


if __name__ == "__main__":
    main()
