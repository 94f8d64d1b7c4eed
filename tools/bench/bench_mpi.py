#!/usr/bin/env python3
"""Data-parallel throughput on this machine: 1 rank × 2 threads against 2 ranks × 1 thread (mpirun),
the same global batch of mm-tiny on the bundled shapes data (real JPEG decoding in the loop), and
the share of a 2-rank step spent in collectives. Then a model of how throughput scales with ranks
and link bandwidth, from the measured compute rate and the bytes each step moves.

    python3 tools/bench/bench_mpi.py [--steps 30] [--batch 128] [--mm .build/release/mm]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Trainable parameters and training FLOPs per sample (forward + backward ≈ 3 × forward).
MODELS = {
    "mm-tiny": {"params": 22_347_521, "embed": 256, "gflop_per_sample": 2.75},   # ANCHORS.md
    "ViT-B-32": {"params": 151_277_313, "embed": 512, "gflop_per_sample": 3 * (4.41 + 2.93)},
}


def run(command, env, log):
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(l) for l in open(log)]
    return [r for r in records if "loss" in r]


def step_seconds(steps, global_batch):
    """Per-step wall times from the log's cumulative samples/s (step k at k·B/rate_k seconds)."""
    at = [r["step"] * global_batch / r["samples_per_s"] for r in steps]
    return [b - a for a, b in zip(at, at[1:])]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=128, help="global batch")
    p.add_argument("--mm", default=os.path.join(ROOT, ".build/release/mm"))
    a = p.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("MM_THREADS", None)
    common = ["train", "datasets/shapes/train.tsv", "--model", "mm-tiny", "--steps", str(a.steps), "--epochs", "1", "--warmup", "5"]
    with tempfile.TemporaryDirectory() as tmp:
        one = run([a.mm] + common + ["--batch-size", str(a.batch), "-o", f"{tmp}/one"],
                  dict(env, MM_THREADS="2"), f"{tmp}/one/log.jsonl")
        two = run(["mpirun", "-np", "2", a.mm] + common + ["--batch-size", str(a.batch // 2), "-o", f"{tmp}/two"],
                  env, f"{tmp}/two/log.jsonl")
    skip = 3  # start-up and first steps
    t1 = statistics.median(step_seconds(one, a.batch)[skip:])
    t2 = statistics.median(step_seconds(two, a.batch)[skip:])
    share = statistics.median(r["communication_share"] for r in two[skip:])
    print(f"mm-tiny, global batch {a.batch}, {a.steps} steps, median step after {skip}:")
    print(f"  1 rank × 2 threads : {a.batch / t1:7.1f} samples/s  ({t1:.3f} s/step)")
    print(f"  2 ranks × 1 thread : {a.batch / t2:7.1f} samples/s  ({t2:.3f} s/step), "
          f"communication {100 * share:.1f} % of a step")
    print(f"  ratio 2 ranks / 1 rank: {t1 / t2:.2f}×")

    # Model: a step on R hosts of `cores` cores each, per-rank batch n, is compute plus a ring
    # all-reduce of the gradients (each host sends and receives 2(R−1)/R × 4·P bytes) plus the
    # feature all-gathers (2 × R·n·D floats, negligible); no overlap with backward assumed.
    gflops = MODELS["mm-tiny"]["gflop_per_sample"] * a.batch / t1   # measured on this 2-core host
    print(f"\nscaling model (compute at the measured {gflops:.0f} GFLOP/s per 2-core host, per-rank batch 128):")
    print("  model      params  all-reduce/step  gather/step   efficiency at R=2 / 8 / 32 ranks on 1, 10, 100 Gbit/s")
    for name, m in MODELS.items():
        grad_bytes = 4 * m["params"]
        compute = m["gflop_per_sample"] * 128 / gflops
        cells = []
        for gbit in (1, 10, 100):
            effs = []
            for ranks in (2, 8, 32):
                comm = 2 * (ranks - 1) / ranks * grad_bytes / (gbit * 1e9 / 8)
                effs.append(f"{100 * compute / (compute + comm):.0f}%")
            cells.append("/".join(effs))
        gather = 2 * 128 * 32 * m["embed"] * 4
        print(f"  {name:9s} {m['params'] / 1e6:6.1f} M  {grad_bytes / 1e6:8.0f} MB  {gather / 1e6:8.1f} MB (R=32)   "
              + "   ".join(cells) + f"   (compute {compute:.1f} s/step)")


if __name__ == "__main__":
    sys.exit(main())
