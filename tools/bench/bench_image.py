#!/usr/bin/env python3
"""Image preprocessing throughput: mm vs PIL + open_clip, file on disk → normalised 224×224 tensor.

    .venv-ref/bin/python tools/bench/bench_image.py [--mm .build/release/mm] [--rounds 3]

Two photos: scikit-learn's china.jpg as shipped (640×427, baseline 4:2:0) and a 2560×1707 JPEG
(quality 90, 4:2:0) tiled from china.jpg and flower.jpg, so it has a real photo's detail density.
Each is processed as a list of copies of the same file (page cache warm for both sides).

Reference: `open_clip.transform.image_transform(224, is_train=False)(Image.open(f))` in a loop,
torch.set_num_threads(1); "2 threads" = two worker processes (a DataLoader with num_workers=2).
Ours: `mm preprocess --list … --benchmark --threads N` (exact: full decode; fast: DCT-scaled
decode), which times the loader alone, batches of 32. Each figure is the median of --rounds runs.
Also prints how far mm's output is from open_clip's (exact) and fast from exact, in grey levels.
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import numpy as np
    import torch
    from open_clip.transform import image_transform
    from PIL import Image
    from sklearn.datasets import load_sample_image
except ImportError as error:
    sys.exit(f"bench_image.py: {error} — run `make venv` and use .venv-ref/bin/python")


def make_photos(directory):
    sklearn_images = Path(sys.modules["sklearn.datasets"].__file__).parent / "images"
    small = directory / "china_640x427.jpg"
    small.write_bytes((sklearn_images / "china.jpg").read_bytes())
    tiles = [Image.fromarray(load_sample_image(n)) for n in ("china.jpg", "flower.jpg")]
    mosaic = Image.new("RGB", (2560, 1708))
    for row in range(4):
        for col in range(4):
            tile = tiles[(row + col) % 2]
            if col % 2:
                tile = tile.transpose(Image.FLIP_LEFT_RIGHT)
            mosaic.paste(tile, (640 * col, 427 * row))
    large = directory / "mosaic_2560x1707.jpg"
    mosaic.crop((0, 0, 2560, 1707)).save(large, quality=90, subsampling=2)
    return [("640×427", small), ("2560×1707", large)]


_transform = None


def _init_worker():
    global _transform
    torch.set_num_threads(1)
    _transform = image_transform(224, is_train=False)


def _work(path):
    return float(_transform(Image.open(path))[0, 0, 0])


def pil_rate(path, count, processes):
    paths = [str(path)] * count
    if processes == 1:
        _init_worker()
        for p in paths[:5]:
            _work(p)
        start = time.perf_counter()
        for p in paths:
            _work(p)
        return count / (time.perf_counter() - start)
    with mp.get_context("fork").Pool(processes, initializer=_init_worker) as pool:
        pool.map(_work, paths[:4 * processes], chunksize=1)  # warm up every worker
        start = time.perf_counter()
        pool.map(_work, paths, chunksize=4)
        return count / (time.perf_counter() - start)


def mm_rate(mm, path, count, threads, fast, directory):
    listing = directory / "list.txt"
    listing.write_text((str(path) + "\n") * count)
    args = [mm, "preprocess", "--list", str(listing), "--benchmark", "--threads", str(threads), "--batch-size", "32"]
    if fast:
        args.append("--fast")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["failures"] == 0
    return result["images_per_second"]


def differences(mm, path, directory):
    exact, fast = directory / "exact.npy", directory / "fast.npy"
    subprocess.run([mm, "preprocess", str(path), "-o", str(exact)], check=True, capture_output=True)
    subprocess.run([mm, "preprocess", str(path), "--fast", "-o", str(fast)], check=True, capture_output=True)
    reference = image_transform(224, is_train=False)(Image.open(path)).numpy()
    std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)[:, None, None]
    ours, quick = np.load(exact)[0], np.load(fast)[0]
    # Back to grey levels: a normalised difference times std times 255.
    vs_reference = np.abs(ours - reference) * std * 255
    fast_vs_exact = np.abs(quick - ours) * std * 255
    return vs_reference, fast_vs_exact


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mm", default=str(ROOT / ".build/release/mm"), help="the mm binary (swift build -c release)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure (the median is reported)")
    options = parser.parse_args()
    if not os.path.exists(options.mm):
        sys.exit(f"{options.mm} not found: run `swift build -c release` (or pass --mm)")

    print(f"torch {torch.__version__}, Pillow {Image.__version__}, mm {options.mm}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        photos = make_photos(directory)
        rows = []
        for label, path in photos:
            count = 400 if label.startswith("640") else 60
            vs_reference, fast_vs_exact = differences(options.mm, path, directory)
            print(f"{label}: mm exact vs open_clip: mean {vs_reference.mean():.4f}, max {vs_reference.max():.3f} grey levels; "
                  f"fast vs exact: mean {fast_vs_exact.mean():.3f}, max {fast_vs_exact.max():.1f} grey levels")
            for threads in (1, 2):
                def median(f):
                    return statistics.median(f() for _ in range(options.rounds))
                pil = median(lambda: pil_rate(path, count, threads))
                exact = median(lambda: mm_rate(options.mm, path, count, threads, False, directory))
                fast = median(lambda: mm_rate(options.mm, path, count, threads, True, directory))
                rows.append((label, threads, pil, exact, fast))
                print(f"  {threads} thread(s): PIL+open_clip {pil:.1f}/s, mm exact {exact:.1f}/s ({exact / pil:.2f}×), "
                      f"mm fast {fast:.1f}/s ({fast / pil:.2f}×)", flush=True)

    print()
    print("| photo | threads | PIL + open_clip (img/s) | mm exact (img/s) | mm fast (img/s) | exact / PIL | fast / PIL |")
    print("|---|---|---|---|---|---|---|")
    for label, threads, pil, exact, fast in rows:
        print(f"| {label} | {threads} | {pil:.1f} | {exact:.1f} | {fast:.1f} | {exact / pil:.2f}× | {fast / pil:.2f}× |")


if __name__ == "__main__":
    main()
