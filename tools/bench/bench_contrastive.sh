#!/usr/bin/env bash
# Cost of each contrastive-family option of `mm train` relative to the default loss, measured
# interleaved (default, option, default, option, … in rounds) so that the shared machine's load
# affects all alike: each run trains STEPS steps of BATCH pairs on datasets/shapes (data loading
# included, no evaluation); samples/s = pairs / training seconds (log.jsonl `train_seconds`).
# Prints the median per option over ROUNDS rounds and its ratio to the default's median.
#
#   tools/bench/bench_contrastive.sh [ratios.txt]   # ROUNDS=3 STEPS=12 BATCH=32, ~8 min on 2 cores
# With a file argument, also writes "option ratio" lines there (for tools/ablation_contrastive.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}; STEPS=${STEPS:-12}; BATCH=${BATCH:-32}
MM=.build/release/mm
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
swift build -c release >/dev/null
NAMES=(default multi-positive queue simclr byol simcse)
declare -A OPTS=([default]="" [multi-positive]="--multi-positive" [queue]="--queue 1024"
                 [simclr]="--image-ssl simclr" [byol]="--image-ssl byol" [simcse]="--text-ssl simcse --text-dropout 0.1")
for r in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    # shellcheck disable=SC2086
    $MM train datasets/shapes/train.tsv --model mm-tiny --batch-size "$BATCH" --epochs 1 --steps "$STEPS" --warmup 2 --lr 1e-3 \
      ${OPTS[$name]} -o "$OUT/$name-$r" 2>/dev/null
    python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; print(sys.argv[2], r['step'] * $BATCH / r['train_seconds'])" \
      "$OUT/$name-$r/log.jsonl" "$name" >> "$OUT/rates"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT/rates" "${1:-}" <<'PY'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    name, rate = line.split()
    rates.setdefault(name, []).append(float(rate))
base = statistics.median(rates["default"])
print("| option | samples/s (median) | vs default |")
print("|---|---:|---:|")
for name, values in rates.items():
    m = statistics.median(values)
    print(f"| {name} | {m:.1f} | {m / base:.2f}× |")
if sys.argv[2]:
    with open(sys.argv[2], "w") as f:
        for name, values in rates.items():
            f.write(f"{name} {statistics.median(values) / base}\n")
PY
