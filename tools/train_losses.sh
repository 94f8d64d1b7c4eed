#!/bin/bash
# The step losses of 10-step `mm train` runs with several options (micro model, datasets/shapes),
# one line per option: run it with two builds to check that a change keeps training identical.
#   tools/train_losses.sh .build/release/mm /tmp/after > after.txt
#   tools/train_losses.sh /path/to/old/mm /tmp/before > before.txt && diff before.txt after.txt
set -e
MM=${1:?usage: train_losses.sh MM_BINARY OUTDIR}
OUT=${2:?usage: train_losses.sh MM_BINARY OUTDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$OUT"; mkdir -p "$OUT"
cat > "$OUT/micro.json" <<'J'
{"embed_dim": 32,
 "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32, "mlp_ratio": 2.0},
 "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
J
run() {
  name=$1; shift
  MM_THREADS=2 "$MM" train "$ROOT/datasets/shapes/train.tsv" --model "$OUT/micro.json" --steps 10 --epochs 1 --batch-size 16 \
    --warmup 5 --lr 1e-3 -o "$OUT/$name" "$@" > "$OUT/$name.out" 2>&1
  python3 -c "import json,sys; print(sys.argv[2], [r['loss'] for r in map(json.loads, open(sys.argv[1])) if 'loss' in r and 'event' not in r])" \
    "$OUT/$name/log.jsonl" "$name"
}
run clip
run siglip --loss siglip
run accum --accum-freq 2 --batch-size 8
run queue-multi --queue 40 --multi-positive
run simclr --image-ssl simclr
run byol --image-ssl byol
run simcse --text-ssl simcse --text-dropout 0.1
