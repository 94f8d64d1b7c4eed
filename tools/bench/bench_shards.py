#!/usr/bin/env python3
"""Reading + decoding + preprocessing from WebDataset shards: mm against open_clip, same run.

    python3 tools/bench/bench_shards.py [--samples 100000] [--reference-samples 20000] [--size 224] [--batch 64]

Shards: the 6,016 training pairs of datasets/shapes (64×64 JPEGs) written once into 6 tar
shards in img2dataset's layout (.build/bench/shards, Python's tarfile). Both sides read them
with resampling (shards drawn with replacement, so any number of samples streams), decode, apply
open_clip's *training* transform at --size (RandomResizedCrop, OpenAI mean/std), tokenise the
captions and batch:

- mm: `mm-data-bench shards` — PairLoader over a ShardSet, 2 threads;
- open_clip: `open_clip_train.data.get_wds_dataset(is_train=True, dataset_resampled=True)`
  with 2 DataLoader workers (torch 2 threads), iterated for the same number of samples.

Prints samples/s, the ratio, peak resident memory (open_clip: main process + workers) and the
resident-memory slope over the run (MB per 10,000 samples; flat = no growth).

Then the share of step time spent waiting for data during `mm train` from those shards (the
default mm-tiny model, batch --train-batch, --train-steps steps, 2 loader threads): the sum of
log.jsonl's `data_wait_seconds` (time blocked on the loader) over the sum of `step_seconds`,
leaving out the first two steps (thread start-up, first batch).

open_clip 3.3.0's WebDataset pipeline fails on the pinned webdataset 1.0.2 (its
group_by_keys_nothrow gets webdataset's empty end-of-shard markers: KeyError 'fname'); the
open_clip side patches tarfile_to_samples_nothrow to drop those markers and changes nothing else.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from reference_env import ensure_reference_env  # noqa: E402

ensure_reference_env("open_clip", "open_clip_train", "webdataset", "torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402

BENCH = ROOT / ".build/bench/shards"


def make_shards():
    if (BENCH / "done").exists():
        return
    BENCH.mkdir(parents=True, exist_ok=True)
    rows = [line.split("\t") for line in (ROOT / "datasets/shapes/train.tsv").read_text().splitlines()[1:]]
    per = (len(rows) + 5) // 6
    for s in range(6):
        with tarfile.open(BENCH / f"{s:05d}.tar", "w") as t:
            for i, (path, caption) in enumerate(rows[s * per:(s + 1) * per]):
                key = f"{s:05d}{i:04d}"
                for ext, data in (("jpg", (ROOT / "datasets/shapes" / path).read_bytes()), ("txt", caption.strip().encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
    (BENCH / "done").write_text("ok\n")


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid):
    total = rss_mb(pid)
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in open(f"/proc/{pid}/task/{task}/children").read().split():
                total += tree_rss_mb(int(child))
    except OSError:
        pass
    return total


def slope(points):
    """MB per 10,000 samples, least squares over (samples, MB) after the first point (warm-up)."""
    pts = np.array(points[1:] if len(points) > 2 else points, dtype=float)
    if len(pts) < 2:
        return float("nan")
    return float(np.polyfit(pts[:, 0], pts[:, 1], 1)[0] * 10000)


def bench_mm(spec, args):
    exe = ROOT / ".build/release/mm-data-bench"
    out = subprocess.run([str(exe), "shards", spec, str(args.size), str(args.batch), "2", str(args.samples)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["samples_per_second"], r["peak_rss_mb"], slope(r["rss_mb"])


def bench_open_clip(spec, args):
    from argparse import Namespace

    import open_clip
    import open_clip_train.data as oc_data
    from open_clip_train.data import get_wds_dataset, group_by_keys_nothrow, log_and_continue
    from webdataset.tariterators import tar_file_expander, url_opener

    def tarfile_to_samples_nothrow(src, handler=log_and_continue):
        # webdataset 1.0.2 (pinned) yields an empty end-of-shard marker that open_clip 3.3.0's
        # group_by_keys_nothrow cannot take (KeyError 'fname'); drop it, change nothing else.
        files = (f for f in tar_file_expander(url_opener(src, handler=handler), handler=handler) if "fname" in f)
        return group_by_keys_nothrow(files, handler=handler)

    oc_data.tarfile_to_samples_nothrow = tarfile_to_samples_nothrow

    torch.set_num_threads(2)
    preprocess_train = open_clip.transform.image_transform(args.size, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    ns = Namespace(train_data=spec, val_data=None, train_num_samples=args.reference_samples + args.batch, dataset_resampled=True,
                   train_data_upsampling_factors=None, batch_size=args.batch, workers=2, world_size=1, seed=0)
    data = get_wds_dataset(ns, preprocess_train, is_train=True, epoch=0, tokenizer=tokenizer)
    loader = data.dataloader
    it = iter(loader)
    next(it)  # warm-up: workers started
    samples, points, next_mark = 0, [], 0
    peak = 0.0
    start = time.perf_counter()
    while samples < args.reference_samples:
        images, texts = next(it)
        samples += images.shape[0]
        if samples >= next_mark:
            mb = tree_rss_mb(os.getpid())
            peak = max(peak, mb)
            points.append((samples, mb))
            next_mark += 5000
    seconds = time.perf_counter() - start
    peak = max(peak, tree_rss_mb(os.getpid()))
    del it, loader
    return samples / seconds, peak, slope(points)


def train_wait_share(spec, args):
    """`mm train` from shards: the share of step time spent waiting for data, from mm's own log
    (`data_wait_seconds` / step time), default model, --train-batch."""
    run = ROOT / ".build/bench/train-shards"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    out = subprocess.run([str(ROOT / ".build/release/mm"), "train", spec, "--batch-size", str(args.train_batch), "--steps",
                          str(args.train_steps), "--epochs", "1", "--train-num-samples", "6016", "--workers", "2",
                          "--warmup", "5", "-o", str(run)], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr[-2000:])
        return None
    waits, steps = [], []
    for line in (run / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "data_wait_seconds" in r and "step_seconds" in r:
            waits.append(r["data_wait_seconds"])
            steps.append(r["step_seconds"])
    if not steps:
        return None
    # The first steps include starting the loader threads and the first batch.
    return sum(waits[2:]) / sum(steps[2:]), len(steps)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=100000, help="samples mm reads")
    p.add_argument("--reference-samples", type=int, default=20000, help="samples open_clip reads (it is far slower)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args()
    make_shards()
    spec = str(BENCH / "{00000..00005}.tar")
    mm_rate, mm_peak, mm_slope = bench_mm(spec, args)
    oc_rate, oc_peak, oc_slope = bench_open_clip(spec, args)
    print(f"shards → batches of {args.batch} at {args.size}², training transform, 2 threads/workers; "
          f"mm {args.samples} samples, open_clip {args.reference_samples}")
    print(f"  mm        {mm_rate:8.0f} samples/s   peak RSS {mm_peak:7.0f} MB   RSS slope {mm_slope:+.2f} MB/10k samples")
    print(f"  open_clip {oc_rate:8.0f} samples/s   peak RSS {oc_peak:7.0f} MB   RSS slope {oc_slope:+.2f} MB/10k samples")
    print(f"  mm / open_clip: {mm_rate / oc_rate:.2f}× samples/s, {mm_peak / oc_peak:.2f}× peak RSS")
    if not args.skip_train:
        share = train_wait_share(spec, args)
        if share is None:
            print("  mm train: no data_wait_seconds in log.jsonl")
        else:
            print(f"  mm train (mm-tiny, batch {args.train_batch}, {share[1]} steps): {100 * share[0]:.2f} % of step time waiting for data")


if __name__ == "__main__":
    main()
