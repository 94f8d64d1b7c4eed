#!/usr/bin/env bash
# Load test of `mm serve` (docs/serve.md): trains a small model briefly (or takes MODEL=…), builds
# a 100,000-row index of generated captions (text rows), serves it on a free loopback port, and runs
# tools/serve/load.py (50 clients, 60 s on /search). Prints the load report as JSON.
set -euo pipefail
cd "$(dirname "$0")/../.."
MM=${MM:-.build/release/mm}
PY=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/mm-bench-serve.XXXXXX)}
ROWS=${ROWS:-100000}
if [ -z "${MODEL:-}" ]; then
  cat > "$WORK/tiny.json" <<'JSON'
{"embed_dim": 64,
 "vision_cfg": {"image_size": 32, "layers": 2, "width": 96, "patch_size": 8, "head_width": 48, "mlp_ratio": 2.0},
 "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 96, "heads": 2, "layers": 2}}
JSON
  "$MM" train datasets/shapes/train_labeled.tsv --caption-key label --model "$WORK/tiny.json" --steps 300 \
    --batch-size 128 --lr 2e-3 --warmup 20 --epochs 100 -o "$WORK/run" >/dev/null 2>&1
  MODEL=$(ls "$WORK"/run/checkpoints/*.safetensors | tail -1)
fi
"$PY" - "$ROWS" > "$WORK/captions.txt" <<'PYEOF'
import random, sys
rng = random.Random(0)
colours = "red orange yellow green blue purple pink brown grey black white teal".split()
shapes = "circle square triangle star cross heart diamond hexagon ring arrow moon cloud".split()
sizes = "tiny small medium-sized large huge".split()
places = "on a plain background|in the picture|against a khaki backdrop|on beige|in the corner|near the edge".split("|")
for i in range(int(sys.argv[1])):
    print(f"{rng.choice(['a', 'one', 'the'])} {rng.choice(sizes)} {rng.choice(colours)} {rng.choice(shapes)} {rng.choice(places)} #{i}")
PYEOF
"$MM" index build -c "$MODEL" --texts "$WORK/captions.txt" -o "$WORK/big.mmi" ${ANN:+--ann $ANN}
"$MM" serve "$WORK/big.mmi" -c "$MODEL" --port 0 --log-level warning > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do grep -q "listening on" "$WORK/serve.out" && break; sleep 0.1; done
PORT=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/serve.out")
"$PY" tools/serve/load.py --port "$PORT" --pid "$SERVER" --clients "${CLIENTS:-50}" --seconds "${SECONDS_:-60}"
