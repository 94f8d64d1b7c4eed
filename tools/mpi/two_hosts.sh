#!/usr/bin/env bash
# Data-parallel `mm train` across two "hosts" on one machine: two network namespaces joined by a
# veth pair, one rank in each, started by mpirun from a hostfile (netns_rsh stands in for ssh).
# Checks that
#   1. each rank runs in its own namespace and the ranks talk over the veth link only;
#   2. 2 hosts × 32 pairs take the same 20 steps as 1 process × 64 (losses to 1e-5 relative);
#   3. cutting the link mid-epoch ends the job within a bounded time with a message, and the
#      last checkpoint resumes.
# Needs root (network namespaces); skips, saying so, where they cannot be made.
# Usage: tools/mpi/two_hosts.sh [path/to/mm]   (default .build/release/mm)
set -euo pipefail
cd "$(dirname "$0")/../.."
MM=$(realpath "${1:-.build/release/mm}")
RSH=$(realpath tools/mpi/netns_rsh)
WORK=$(mktemp -d /tmp/mm-two-hosts.XXXXXX)
A=mmhostA B=mmhostB IP_A=10.231.0.1 IP_B=10.231.0.2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cleanup() {
    ip link del mmveth0 2>/dev/null || true
    ip netns pids $B 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! { ip netns add $A && ip netns add $B && ip link add mmveth0 type veth peer name mmveth1; } 2>/dev/null; then
    echo "SKIPPED: cannot create network namespaces and a veth pair here (needs root and CAP_NET_ADMIN)"
    exit 0
fi
ip link set mmveth0 netns $A
ip link set mmveth1 netns $B
ip -n $A addr add $IP_A/24 dev mmveth0
ip -n $B addr add $IP_B/24 dev mmveth1
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set mmveth0 up
ip -n $B link set mmveth1 up
printf '%s slots=1\n%s slots=1\n' $IP_A $IP_B > "$WORK/hostfile"

# Ranks and the launcher's daemons talk over the veth subnet only; short TCP keepalives let
# mpirun notice a vanished host in seconds rather than Linux's default minutes.
mpi() {
    ip netns exec $A mpirun --hostfile "$WORK/hostfile" -np 2 --mca plm_rsh_agent "$RSH" \
        --mca btl tcp,self --mca btl_tcp_if_include 10.231.0.0/24 --mca oob_tcp_if_include 10.231.0.0/24 \
        --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3 "$@"
}
cat > "$WORK/micro.json" <<'EOF'
{"embed_dim": 32,
 "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32, "mlp_ratio": 2.0},
 "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
EOF
DATA=(datasets/shapes/train.tsv --model "$WORK/micro.json" --warmup 5 --lr 1e-3)

echo "== 1. where the ranks run"
mpi sh -c 'echo "rank $OMPI_COMM_WORLD_RANK: network namespace $(ip netns identify), address $(ip -o -4 addr show | grep -o "10\.231\.0\.[0-9]*")"' | sort

echo "== 2. 2 hosts × 32 pairs vs 1 process × 64, 20 steps"
"$MM" train "${DATA[@]}" --batch-size 64 --steps 20 --epochs 1 -o "$WORK/one" 2> "$WORK/one.txt"
mpi "$MM" train "${DATA[@]}" --batch-size 32 --steps 20 --epochs 1 -o "$WORK/two" 2> "$WORK/two.txt"
python3 - "$WORK/one/log.jsonl" "$WORK/two/log.jsonl" <<'EOF'
import json, sys
one, two = ([r["loss"] for r in map(json.loads, open(p)) if "loss" in r] for p in sys.argv[1:])
worst = max(abs(a - b) / abs(a) for a, b in zip(one, two))
print(f"steps {len(one)} / {len(two)}; first loss {one[0]:.6f} / {two[0]:.6f}; last {one[-1]:.6f} / {two[-1]:.6f}; "
      f"largest relative difference {worst:.2e}")
sys.exit(0 if len(one) == len(two) == 20 and worst <= 1e-5 else 1)
EOF

echo "== 3. host B's link cut mid-epoch"
start_cut() {
    while [ ! -f "$WORK/cut/checkpoints/latest.safetensors" ]; do sleep 0.05; done
    sleep 0.5
    ip -n $B link set mmveth1 down
    date +%s.%N > "$WORK/cut.time"
}
start_cut &
status=0
mpi "$MM" train "${DATA[@]}" --batch-size 32 --epochs 3 --mpi-timeout 20 -o "$WORK/cut" > "$WORK/cut.txt" 2>&1 || status=$?
ended=$(date +%s.%N)
wait
grep -v '^epoch' "$WORK/cut.txt" | grep -v '^-*$' | sed 's/^/    /'
python3 -c "import sys; print(f'job ended {float(sys.argv[2]) - float(sys.argv[1]):.1f} s after the cut, exit status {sys.argv[3]}')" \
    "$(cat "$WORK/cut.time")" "$ended" "$status"
[ "$status" -ne 0 ] || { echo "FAILED: the job did not report the failure"; exit 1; }
ip -n $B link set mmveth1 up
mpi "$MM" train --resume "$WORK/cut" 2>&1 | grep -E '^(resuming|done)' | sed 's/^/    /'
test -f "$WORK/cut/checkpoints/epoch_3.safetensors"
echo "two-host checks passed"
