#!/usr/bin/env bash
# One row of the defaults ablation (docs/training.md, "Defaults"): trains with `mm train` on one
# evaluation set with the given options, then prints the zero-shot top-1 and validation
# image→text R@1 of the checkpoint `-c RUN` loads (the best epoch by validation loss, else the
# last), steps, and CPU seconds per step (user + system, so that runs on a loaded machine
# convert to wall time on an idle one: idle 2-core wall ≈ CPU s / 2 at full use of both cores).
#
#   tools/ablation_defaults.sh NAME SET [mm train options…]
#   SET: shapes (datasets/shapes) or a folder in the same layout (e.g. .build/datasets/digits)
#   NOVAL=1: no --val (the run holds out its own validation, as `mm train PAIRS` does)
set -euo pipefail
name=$1; set=$2; shift 2
case $set in shapes) dir=datasets/shapes ;; *) dir=$set ;; esac
mm=${MM:-.build/release/mm}
out=${OUT:-runs/ablation-defaults}/$(basename "$dir")-$name
rm -rf "$out"; mkdir -p "$(dirname "$out")"
start=$(date +%s)
val=(--val "$dir/val.tsv"); [ -n "${NOVAL:-}" ] && val=()
/usr/bin/time -f "%U %S" -o "$out.time" "$mm" train "$dir/train.tsv" "${val[@]}" \
    --zeroshot-labels "$dir/labels.txt" --zeroshot-data "$dir/test_labels.tsv" -o "$out" "$@" 2> "$out.stderr" || { tail -3 "$out.stderr"; exit 1; }
wall=$(( $(date +%s) - start ))
python3 - "$out" "$name" "$(basename "$dir")" "$wall" "$(cat "$out.time")" "$*" <<'PY'
import json, sys
out, name, data, wall, cpu, args = sys.argv[1:]
recs = [json.loads(l) for l in open(out + "/log.jsonl")]
epochs = [r for r in recs if r.get("event") == "epoch"]
steps = [r for r in recs if "event" not in r]
user, system = map(float, cpu.split())
best = [r for r in epochs if r.get("best")]
e = best[-1] if best else epochs[-1]
curve = " ".join(f"{100 * r['zeroshot_top1']:.0f}" for r in epochs)
print(f"| {data} | {name} | {len(steps)} | {100 * e['zeroshot_top1']:.1f} (epoch {e['epoch']}/{len(epochs)}) | {100 * e['image_to_text_R@1']:.1f} | "
      f"{(user + system) / max(len(steps), 1):.3f} | {wall} | {curve} | `{args}` |", flush=True)
PY
