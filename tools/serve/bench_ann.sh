#!/usr/bin/env bash
# Approximate search against exact search (docs/serve.md): recall@10, queries/s, build time and
# peak memory, for IVF-PQ and HNSW, on ROWS random 512-d unit vectors (the worst case: no
# structure) and on a real embedding index (INDEX=…, e.g. the 100,000 caption rows of
# bench_serve.sh). Each line is one JSON report from `mm index bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
MM=${MM:-.build/release/mm}
ROWS=${ROWS:-1000000}
TMP=${TMPDIR:-/tmp}/mm-bench-ann-$$.mmi
for kind in ${KINDS:-ivf-pq hnsw}; do
  "$MM" index bench --rows "$ROWS" --dim 512 --queries 200 -k 10 --runs 3 --mapped "$TMP" --ann "$kind"
done
if [ -n "${INDEX:-}" ]; then
  for kind in ${KINDS:-ivf-pq hnsw}; do
    "$MM" index bench --index "$INDEX" --queries 200 -k 10 --runs 3 --ann "$kind"
  done
fi
