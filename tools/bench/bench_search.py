#!/usr/bin/env python3
"""Exact top-k search: `mm index bench` against faiss.IndexFlatIP, in one run, same sizes.

Usage: bench_search.py [ROWS] [DIM] [QUERIES] [K]   (default 1,000,000 × 512, 100 queries, top-10)
Both sides search random unit vectors (their own draws, same distribution) with 2 threads and
report the median of 3 timed searches after a warm-up; prints a table line with the ratio.
Needs .venv-ref with faiss-cpu (tools/requirements.txt) and `swift build -c release` (the mm binary).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import faiss

defaults = [1_000_000, 512, 100, 10]
rows, dim, queries, k = [int(a) for a in sys.argv[1:5]] + defaults[len(sys.argv[1:5]):]
threads = 2
faiss.omp_set_num_threads(threads)
mm = os.environ.get("MM", ".build/release/mm")

ours = json.loads(subprocess.run([mm, "index", "bench", "--rows", str(rows), "--dim", str(dim), "--queries", str(queries),
                                  "-k", str(k)], check=True, capture_output=True, text=True,
                                 env={**os.environ, "MM_THREADS": str(threads)}).stdout)

rng = np.random.default_rng(1)
gallery = rng.standard_normal((rows, dim), dtype=np.float32)
gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
q = rng.standard_normal((queries, dim), dtype=np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
index = faiss.IndexFlatIP(dim)
index.add(gallery)
del gallery
index.search(q, k)  # warm-up
times = []
for _ in range(3):
    t = time.perf_counter()
    index.search(q, k)
    times.append(time.perf_counter() - t)
theirs = sorted(times)[1]
print(f"search {rows:,} × {dim}, {queries} queries, top-{k}, {threads} threads: "
      f"mm {ours['seconds'] * 1000:.1f} ms, faiss {theirs * 1000:.1f} ms, mm speed = {theirs / ours['seconds']:.2f}× faiss "
      f"(faiss {faiss.__version__}, mm threads {ours['threads']})")
