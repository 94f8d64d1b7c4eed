#!/usr/bin/env python3
"""Tokenizer throughput: mm vs open_clip's SimpleTokenizer vs Hugging Face's CLIPTokenizerFast
(Rust), on the same 100,000 captions, one core and two, in one run.

    .venv-ref/bin/python tools/bench/bench_tokenizer.py [--mm .build/release/mm] [--captions N]

Captions (fixed seed): 5–25 words drawn Zipf-like from the CLIP vocabulary's 20,000 most common
whole words, with capitals and punctuation; one in ten also has accented words, CJK, Cyrillic or
emoji (so both of mm's cleaning paths run), one in twenty numbers or an HTML entity.

Every figure is a full pass with cold caches, output rows of 77 ids:
- open_clip: `SimpleTokenizer()(captions)` (a fresh tokenizer, so its word cache starts empty),
  1 core; "2 cores" = the captions split over two worker processes (each its own tokenizer);
- Hugging Face: `CLIPTokenizerFast` built offline from open_clip's vocabulary (as in
  shared/reference/bench_tok.py), `(captions, padding="max_length", max_length=77,
  truncation=True)`, both with Python lists and with `return_tensors="np"` — the faster counts;
  1 thread: TOKENIZERS_PARALLELISM=false, 2 threads: true with RAYON_NUM_THREADS=2;
- mm: `mm tokenize --file captions --benchmark --threads N`, which times the tokenisation alone on
  a fresh tokenizer per pass (best of 3) and prints a checksum of the ids; the script checks it
  against open_clip's ids. Also shown, not in the ratios: `--warm` (one tokenizer kept across 5
  passes, as in a long training run).
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import numpy as np
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer, CLIPTokenizerFast
except ImportError as error:
    sys.exit(f"bench_tokenizer.py: {error} — run `make venv` and use .venv-ref/bin/python")

EXTRA = ["café", "naïve", "crème brûlée", "Straße", "São Paulo", "東京タワー", "一只小猫", "한국어",
         "Привет мир", "Καλημέρα", "مرحبا", "नमस्ते", "🙂", "👍🏽", "🇯🇵", "👨‍👩‍👧", "“quoted”", "don’t"]
ENTITIES = ["&amp;", "&quot;", "&#39;", "&eacute;"]


def make_captions(n, seed=0):
    st = SimpleTokenizer()
    words = [t[:-4] for t in st.encoder if t.endswith("</w>") and t[:-4].isascii() and t[:-4].isalpha()
             and len(t) > 5][:20000]
    weights = [1.0 / (k + 10) for k in range(len(words))]  # Zipf-like: a few words most of the time
    rng = random.Random(seed)
    caps = []
    for _ in range(n):
        ws = rng.choices(words, weights, k=rng.randint(5, 25))
        if rng.random() < 0.3:
            ws[0] = ws[0].capitalize()
        r = rng.random()
        if r < 0.10:
            ws.insert(rng.randrange(len(ws) + 1), rng.choice(EXTRA))
        elif r < 0.15:
            ws.insert(rng.randrange(len(ws) + 1), rng.choice([str(rng.randint(0, 2024)), rng.choice(ENTITIES)]))
        text = " ".join(ws)
        if rng.random() < 0.5:
            text += rng.choice([".", "!", "?", ",", " ..."])
        if rng.random() < 0.2:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice([", ", "'s ", " - ", ": "]) + text[i:]
        caps.append(text)
    return caps


def checksum(rows):
    rows = np.asarray(rows, dtype=np.int64)
    n, length = rows.shape
    col = np.arange(1, length + 1, dtype=np.int64)[None, :]
    row = (np.arange(n, dtype=np.int64) % 997 + 1)[:, None]
    return int((rows * col * row).sum())


def _openclip_chunk(caps):
    return SimpleTokenizer()(caps).numpy()


def bench_openclip(caps, processes):
    if processes == 1:
        tok = SimpleTokenizer()
        t = time.perf_counter()
        rows = tok(caps).numpy()
        return len(caps) / (time.perf_counter() - t), rows
    chunks = [caps[i * len(caps) // processes:(i + 1) * len(caps) // processes] for i in range(processes)]
    # spawn, not fork: forking after torch has started its threads can deadlock the children.
    with mp.get_context("spawn").Pool(processes) as pool:
        pool.map(len, [[0]] * processes)  # workers started before timing
        t = time.perf_counter()
        parts = pool.map(_openclip_chunk, chunks)
        elapsed = time.perf_counter() - t
    return len(caps) / elapsed, np.concatenate(parts)


def build_hf(directory):
    st = SimpleTokenizer()
    special = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    (directory / "vocab.json").write_text(json.dumps({special.get(k, k): v for k, v in st.encoder.items()}))
    with open(directory / "merges.txt", "w") as f:
        f.write("#version: 0.2\n")
        for (a, b), _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{a} {b}\n")
    CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt")).save_pretrained(str(directory))


def bench_hf(directory, caps, threads):
    """In a fresh interpreter, so the parallelism settings apply from the start."""
    code = f"""
import json, sys, time
from transformers import CLIPTokenizerFast
caps = json.load(open(sys.argv[1]))
best = 0
for kind in ("lists", "np"):
    fast = CLIPTokenizerFast.from_pretrained({str(directory)!r}, from_slow=True)
    kw = dict(return_tensors="np") if kind == "np" else {{}}
    t = time.perf_counter()
    out = fast(caps, padding="max_length", max_length=77, truncation=True, **kw)
    best = max(best, len(caps) / (time.perf_counter() - t))
print(json.dumps({{"captions_per_second": best}}))
"""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true" if threads > 1 else "false", RAYON_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, "-c", code, str(directory / "captions.json")], env=env,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["captions_per_second"]


def bench_mm(mm, path, threads, warm=False):
    result = subprocess.run([mm, "tokenize", "--file", str(path), "--benchmark", "--threads", str(threads)]
                            + (["--warm", "--passes", "5"] if warm else []), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"mm tokenize failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mm", default=str(ROOT / ".build/release/mm"), help="the mm binary (swift build -c release)")
    parser.add_argument("--captions", type=int, default=100_000)
    args = parser.parse_args()
    if not Path(args.mm).exists():
        sys.exit(f"{args.mm} not found: build with `swift build -c release` or pass --mm")

    caps = make_captions(args.captions)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "captions.txt"
        path.write_text("\n".join(caps) + "\n")
        (tmp / "captions.json").write_text(json.dumps(caps))
        build_hf(tmp)

        results = {}
        oc1, reference = bench_openclip(caps, 1)
        results["open_clip SimpleTokenizer, 1 core"] = oc1
        oc2, reference2 = bench_openclip(caps, 2)
        assert (reference2 == reference).all()
        results["open_clip SimpleTokenizer, 2 processes"] = oc2
        hf1 = bench_hf(tmp, caps, 1)
        results["HF CLIPTokenizerFast, 1 thread"] = hf1
        hf2 = bench_hf(tmp, caps, 2)
        results["HF CLIPTokenizerFast, 2 threads"] = hf2
        expected = checksum(reference)
        mm = {}
        for threads in (1, 2):
            r = bench_mm(args.mm, path, threads)
            if r["checksum"] != expected:
                sys.exit(f"mm ids differ from open_clip's (checksum {r['checksum']} vs {expected})")
            mm[threads] = r["captions_per_second"]
            results[f"mm, {threads} thread{'s' if threads > 1 else ''}"] = mm[threads]
        for threads in (1, 2):  # steady state of a long run: word caches kept across passes
            r = bench_mm(args.mm, path, threads, warm=True)
            results[f"mm, {threads} thread{'s' if threads > 1 else ''}, warm caches"] = r["captions_per_second"]

    print(f"{len(caps):,} captions, rows of 77; mm's ids equal open_clip's on every caption (checksum {expected})")
    for name, rate in results.items():
        print(f"  {name:42s} {rate:12,.0f} captions/s")
    print("ratios:")
    print(f"  mm 1 thread  / open_clip 1 core          {mm[1] / oc1:8.1f}×")
    print(f"  mm 2 threads / open_clip 1 core          {mm[2] / oc1:8.1f}×")
    print(f"  mm 2 threads / open_clip 2 processes     {mm[2] / oc2:8.1f}×")
    print(f"  mm 1 thread  / HF fast 1 thread          {mm[1] / hf1:8.1f}×")
    print(f"  mm 2 threads / HF fast 2 threads         {mm[2] / hf2:8.1f}×")


if __name__ == "__main__":
    main()
