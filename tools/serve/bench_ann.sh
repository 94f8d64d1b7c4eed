#!/usr/bin/env bash
# Approximate search against exact search (docs/serve.md): for each kind, one build and a sweep of
# its search breadth (nprobe for IVF, efSearch for HNSW, CANDIDATES per result for pq-scan): recall@10, queries/s of both (a batch of
# QUERIES queries, and SINGLE of them one at a time; exact and approximate timed in turn, RUNS times,
# medians), the ratio, build time and memory. Data: ROWS random
# DIM-d unit vectors (the worst case: no structure), and a real embedding index when INDEX=… is
# given (e.g. the 100,000 caption rows that bench_serve.sh builds); PQ_BITS (4 or 6) and PQ_DIMS set pq-scan's bits per code and dimensions
# per sub-quantiser (defaults: 6 bits and 4 dimensions where the CPU has AVX-512 VBMI, else 4 and 2). Prints one JSON report per
# build, then a table of them (tools/serve/ann_table.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
MM=${MM:-.build/release/mm}
ROWS=${ROWS:-1000000}
DIM=${DIM:-512}
QUERIES=${QUERIES:-200}
SINGLE=${SINGLE:-20}
RUNS=${RUNS:-3}
OUT=${OUT:-${TMPDIR:-/tmp}/mm-bench-ann-$$.jsonl}
TMP=${TMPDIR:-/tmp}/mm-bench-ann-$$.mmi
breadth() {
  case $1 in
    hnsw) echo "${EF:-32 64 128 256 512}" ;;
    pq-scan) echo "${CANDIDATES:-10 20 50 100}" ;;
    *) echo "${NPROBE:-8 16 32 64 128 256 512 1024}" ;;
  esac
}
: > "$OUT"
if [ "$ROWS" != 0 ]; then
  for kind in ${KINDS:-ivf hnsw}; do
    # shellcheck disable=SC2046
    "$MM" index bench --rows "$ROWS" --dim "$DIM" --queries "$QUERIES" --single-queries "$SINGLE" -k 10 --runs "$RUNS" --mapped "$TMP" \
      --ann "$kind" ${PQ_DIMS:+--pq-dims "$PQ_DIMS"} ${PQ_BITS:+--pq-bits "$PQ_BITS"} --breadth $(breadth "$kind") | tee -a "$OUT"
  done
fi
if [ -n "${INDEX:-}" ]; then
  for kind in ${KINDS:-ivf hnsw}; do
    # shellcheck disable=SC2046
    "$MM" index bench --index "$INDEX" --queries "$QUERIES" --single-queries "$SINGLE" -k 10 --runs "$RUNS" --ann "$kind" \
      ${PQ_DIMS:+--pq-dims "$PQ_DIMS"} ${PQ_BITS:+--pq-bits "$PQ_BITS"} --breadth $(breadth "$kind") | tee -a "$OUT"
  done
fi
"${PYTHON:-python3}" tools/serve/ann_table.py "$OUT"
