#!/usr/bin/env python3
"""Exact top-k search: `mm index bench` against faiss.IndexFlatIP, in one run, same sizes.

Usage: bench_search.py [ROWS] [DIM] [QUERIES] [K]   (default 1,000,000 × 512, 100 queries, top-10)
Both sides search random unit vectors (their own draws, same distribution) with 2 threads and
report the median of 3 timed searches after a warm-up; prints a table line with the ratio.
mm runs twice: the index in memory, and saved to a file under .build/ and memory-mapped (the
way `mm search` reads it: blocks of rows streamed from the page cache).
Needs .venv-ref with faiss-cpu (tools/requirements.txt) and `swift build -c release` (the mm binary).

faiss is set up to use its sgemm path as it would for a large batch (docs/serve.md, "Why faiss ran
far below sgemm"): the PyPI wheel only switches from its per-query scan to sgemm above
`distance_compute_blas_threshold` (128,000 queries), and its OpenMP threads spin at barriers
against OpenBLAS's on shared cores unless OMP_WAIT_POLICY=passive, which libgomp reads when it
loads — so the script re-runs itself with it set before importing faiss.
"""
import json
import os
import subprocess
import sys
import time

if os.environ.get("OMP_WAIT_POLICY") != "passive":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OMP_WAIT_POLICY": "passive"})

import numpy as np
import faiss

defaults = [1_000_000, 512, 100, 10]
rows, dim, queries, k = [int(a) for a in sys.argv[1:5]] + defaults[len(sys.argv[1:5]):]
threads = 2
faiss.omp_set_num_threads(threads)
faiss.cvar.distance_compute_blas_threshold = 20
mm = os.environ.get("MM", ".build/release/mm")



def run_mm(*extra):
    return json.loads(subprocess.run([mm, "index", "bench", "--rows", str(rows), "--dim", str(dim), "--queries", str(queries),
                                      "-k", str(k), *extra], check=True, capture_output=True, text=True,
                                     env={**os.environ, "MM_THREADS": str(threads)}).stdout)


ours = run_mm()
os.makedirs(".build", exist_ok=True)
mapped = run_mm("--mapped", ".build/bench_search.mmi")

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
print(f"search {rows:,} × {dim}, {queries} queries, top-{k}, {threads} threads (faiss {faiss.__version__} with sgemm above 20 queries "
      f"and passive OpenMP waiting, mm threads {ours['threads']}):")
print(f"  faiss IndexFlatIP      {theirs * 1000:9.1f} ms")
for name, r in [("mm in memory", ours), ("mm memory-mapped", mapped)]:
    print(f"  {name:<22} {r['seconds'] * 1000:9.1f} ms   mm speed = {theirs / r['seconds']:.2f}× faiss")
