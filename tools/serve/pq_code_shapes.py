#!/usr/bin/env python3
"""Recall@10 of product-quantised codes of several shapes on random unit vectors (docs/serve.md).

For each shape (dimensions per sub-quantiser, centroids per sub-quantiser): k-means on Gaussian
samples of one sub-space (random rows are isotropic, so every sub-space has the same codebook),
every row encoded, queries scored against the decoded rows, table rounding to LEVELS integers
modelled as Gaussian noise; then, for each candidate count per result, the share of the exact top
10 among the best `count × 10` approximate rows (which `pq-scan` re-scores exactly).

    python3 tools/serve/pq_code_shapes.py [--rows 1000000] [--queries 100] [--shapes 2x16 4x64 ...]

Needs numpy and about 6 GB of memory at a million 512-d rows.
"""
import argparse
import time

import numpy as np


def kmeans(rng, dims, centroids, dimension, samples=200_000, iterations=25):
    points = (rng.standard_normal((samples, dims)) / np.sqrt(dimension)).astype(np.float32)
    centres = points[rng.choice(samples, centroids, replace=False)]
    for _ in range(iterations):
        nearest = np.argmax(points @ centres.T - 0.5 * (centres * centres).sum(1), axis=1)
        for c in range(centroids):
            members = nearest == c
            centres[c] = points[members].mean(0) if members.any() else points[rng.integers(samples)]
    return centres


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--shapes", nargs="+", default=["2x16", "4x16", "3x64", "4x64", "5x64", "6x64"],
                        help="DIMSxCENTROIDS[xLEVELS]: levels of the rounded tables (default 63 for 16 centroids, 31 for 64)")
    parser.add_argument("--candidates", type=int, nargs="+", default=[10, 20, 30, 50, 70, 80, 100, 200, 300, 500])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, d = args.rows, args.dimension
    rows = rng.standard_normal((n, d), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, d), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argpartition(-(queries @ rows.T), 10, axis=1)[:, :10]
    for shape in args.shapes:
        parts = [int(x) for x in shape.split("x")]
        dims, centroids = parts[0], parts[1]
        levels = parts[2] if len(parts) > 2 else (31 if centroids == 64 else 63)
        started = time.time()
        centres = kmeans(rng, dims, centroids, d)
        groups = (d + dims - 1) // dims
        decoded = np.empty_like(rows)
        for g in range(groups):
            lo, hi = g * dims, min(d, g * dims + dims)
            c = centres[:, : hi - lo]
            for a in range(0, n, 200_000):
                code = np.argmax(rows[a:a + 200_000, lo:hi] @ c.T - 0.5 * (c * c).sum(1), axis=1)
                decoded[a:a + 200_000, lo:hi] = c[code]
        distortion = ((rows - decoded) ** 2).sum(1).mean()
        approximate = queries @ decoded.T
        for i in range(args.queries):
            widest = max(np.ptp(centres[:, : min(d, g * dims + dims) - g * dims] @ queries[i, g * dims:g * dims + dims])
                         for g in range(groups))
            step = widest / min(levels, 65_535 // groups)
            approximate[i] += rng.standard_normal(n).astype(np.float32) * step * np.sqrt(groups / 12)
        recalls = []
        for count in args.candidates:
            best = np.argpartition(-approximate, count * 10, axis=1)[:, : count * 10]
            recall = np.mean([len(np.intersect1d(truth[i], best[i])) / 10 for i in range(args.queries)])
            recalls.append(f"{count}: {recall:.3f}")
        print(f"{dims} dims × {centroids} centroids ({groups} sub-quantisers, tables to {levels}): "
              f"distortion {distortion:.3f}; recall@10 by candidates per result  " + "  ".join(recalls)
              + f"  ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
