#!/usr/bin/env bash
# /search latency of one client on a 1,000,000-row index with the model loaded (docs/serve.md):
# ROWS random unit rows of the model's dimension recorded under the model's fingerprint (latency
# does not depend on what the rows mean), served twice by one `mm serve` — `ann` with an ivf
# index beside it, `exact` (a hard link to the same file, no .ann) — and tools/serve/load.py with
# one client for SECONDS_ on each: text queries end to end (tokenize + encode + search) and
# embedding queries (search alone). MODEL defaults to the ViT-B-32 of `make fixtures-vitb32`.
set -euo pipefail
cd "$(dirname "$0")/../.."
MM=${MM:-.build/release/mm}
PY=${PYTHON:-python3}
MODEL=${MODEL:-.build/fixtures/vitb32/vitb32.safetensors}
CONFIG=${CONFIG:-$(dirname "$MODEL")/vitb32.json}
ROWS=${ROWS:-1000000}
KIND=${KIND:-ivf}
WORK=${WORK:-$(mktemp -d /tmp/mm-bench-latency.XXXXXX)}
model=(-c "$MODEL")
[ -f "$CONFIG" ] && model+=(--model "$CONFIG")
# The model's fingerprint and dimension, from a one-text index it builds.
echo "a red circle" > "$WORK/one.txt"
"$MM" index build "${model[@]}" --texts "$WORK/one.txt" -o "$WORK/one.mmi" 2>/dev/null
read -r FP DIM < <("$PY" - "$WORK/one.mmi" <<'PYEOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
size = struct.unpack_from("<I", raw, 12)[0]
header = json.loads(raw[16:16 + size])
print(header["model"], header["dimension"])
PYEOF
)
if [ ! -f "$WORK/ann.mmi.ann" ]; then
  "$MM" index bench --rows "$ROWS" --dim "$DIM" --queries 1 --runs 1 --mapped "$WORK/ann.mmi" --keep --fingerprint "$FP" >/dev/null
  /usr/bin/time -f '{"ann_build": "mm index ann --kind '"$KIND"'", "seconds": %e, "peak_rss_kb": %M}' \
    "$MM" index ann "$WORK/ann.mmi" --kind "$KIND"
  ln -f "$WORK/ann.mmi" "$WORK/exact.mmi"
fi
"$MM" serve "$WORK/ann.mmi" "$WORK/exact.mmi" "${model[@]}" --port 0 --log-level warning > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do grep -q "listening on" "$WORK/serve.out" && break; sleep 0.1; done
PORT=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/serve.out")
for index in ann exact; do
  for query in text embedding; do
    extra=()
    [ "$query" = embedding ] && extra=(--embedding "$DIM")
    printf '{"index": "%s", "query": "%s", "report": ' "$index" "$query"
    "$PY" tools/serve/load.py --port "$PORT" --pid "$SERVER" --clients 1 --seconds "${SECONDS_:-30}" --index "$index" "${extra[@]}" | tr -d '\n'
    echo "}"
  done
done
