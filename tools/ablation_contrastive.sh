#!/usr/bin/env bash
# Ablation of the contrastive-family options of `mm train` on the bundled shapes data (README,
# "Contrastive family"). Every run: mm-tiny from the same seed, batch $BATCH, $STEPS steps, the
# main job's lr and a short warm-up, then validation recall (val.tsv) and zero-shot top-1
# (test_labels.tsv). Phase 0 measures each option's cost relative to the default, interleaved
# (tools/bench/bench_contrastive.sh: the shared machine's load swings 2–8, so rates of runs made
# at different times are not comparable); phase 1 gives every option the same number of steps;
# phase 2 gives each slower option the wall-clock time of the default's STEPS steps (STEPS × its
# measured rate ratio, so its schedule still completes); phase 3 repeats the default and simclr with another seed (init,
# order, augmentation) to show the run-to-run noise. tools/ablation_table.py prints the README
# table. A run whose log already has its final evaluation is kept (rerun after deleting it).
#
#   tools/ablation_contrastive.sh [runs/ablation]      # ~1 h on 2 shared cores
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/ablation}
BATCH=${BATCH:-32}
STEPS=${STEPS:-128}
MM=.build/release/mm
swift build -c release >/dev/null
mkdir -p "$OUT"
D=datasets/shapes
COMMON=(--model mm-tiny --val $D/val.tsv --zeroshot-labels $D/labels.txt --zeroshot-data $D/test_labels.tsv
        --batch-size "$BATCH" --epochs 2 --lr 1e-3 --warmup 15)

declare -A OPTS=(
  [default]=""
  [multi-positive]="--multi-positive"
  [multi-positive+labels]="--multi-positive --labels-key label"
  [queue]="--queue 1024 --momentum 0.995"
  [simclr]="--image-ssl simclr"
  [byol]="--image-ssl byol --momentum 0.995"
  [simcse]="--text-ssl simcse --text-dropout 0.1"
)
ORDER=(default multi-positive queue simclr byol simcse multi-positive+labels)

run() {  # name steps extra-options...
  local name=$1 steps=$2; shift 2
  if grep -q '"event":"epoch"' "$OUT/$name/log.jsonl" 2>/dev/null; then return; fi
  local pairs=$D/train.tsv
  [[ "$*" == *labels-key* ]] && pairs=$D/train_labeled.tsv
  rm -rf "$OUT/$name"
  echo "== $name: $MM train $pairs ${COMMON[*]} --steps $steps $* -o $OUT/$name" | tee -a "$OUT/commands.txt"
  echo "$(cut -d' ' -f1-3 /proc/loadavg)" > "$OUT/$name.load-before"
  $MM train "$pairs" "${COMMON[@]}" --steps "$steps" "$@" -o "$OUT/$name" 2> "$OUT/$name.stderr" > /dev/null
  echo "$(cut -d' ' -f1-3 /proc/loadavg)" > "$OUT/$name.load-after"
}

touch "$OUT/commands.txt"
[ -s "$OUT/cost.txt" ] || tools/bench/bench_contrastive.sh "$OUT/cost.txt" | tee "$OUT/cost.md"
for name in "${ORDER[@]}"; do
  # shellcheck disable=SC2086
  run "$name" "$STEPS" --seed 0 ${OPTS[$name]}
done

# Phase 2: equal wall-clock time for the options slower than the default by more than 5 %.
for name in queue simclr byol simcse; do
  steps=$(awk -v n="$name" -v s="$STEPS" '$1 == n { print int(s * $2) }' "$OUT/cost.txt")
  if [ "$steps" -lt $((STEPS * 95 / 100)) ]; then
    # shellcheck disable=SC2086
    run "$name@clock" "$steps" --seed 0 ${OPTS[$name]}
  fi
done

# Phase 3: run-to-run noise.
for name in default simclr; do
  # shellcheck disable=SC2086
  run "$name@seed1" "$STEPS" --seed 1 ${OPTS[$name]}
done
python3 tools/ablation_table.py "$OUT" | tee "$OUT/table.md"
