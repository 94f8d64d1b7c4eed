#!/usr/bin/env python3
"""The README table of tools/ablation_contrastive.sh: per run, the final validation recall@1
(image→text, text→image), zero-shot top-1 on the test split, steps, training time and samples/s
(from each run's log.jsonl), and the option's cost relative to the default as measured
interleaved by tools/bench/bench_contrastive.sh (cost.txt)."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation")
rows = []
for log in sorted(out.glob("*/log.jsonl")):
    name = log.parent.name
    records = [json.loads(line) for line in log.open()]
    steps = [r for r in records if "loss" in r and "event" not in r]
    finals = [r for r in records if r.get("event") == "epoch"]
    if not finals:
        continue  # still running
    final = finals[-1]
    options = json.load((log.parent / "options.json").open())
    samples = len(steps) * options["batchSize"] * options["accumFreq"]
    load = [(out / f"{name}.load-{w}").read_text().split()[0] for w in ("before", "after")
            if (out / f"{name}.load-{w}").exists()]
    rows.append(dict(name=name, steps=final["step"], seconds=final["train_seconds"], rate=samples / final["train_seconds"],
                     i2t=final.get("image_to_text_R@1", float("nan")), t2i=final.get("text_to_image_R@1", float("nan")),
                     zs=final.get("zeroshot_top1", float("nan")), loss=steps[-1]["loss"], load="→".join(load)))
cost = {}
if (out / "cost.txt").exists():
    cost = {n: float(v) for n, v in (line.split() for line in (out / "cost.txt").open())}
order = ["default", "multi-positive", "multi-positive+labels", "queue", "simclr", "byol", "simcse"]
rows.sort(key=lambda r: (order.index(r["name"].split("@")[0]) if r["name"].split("@")[0] in order else 99, r["name"]))
print("| run | steps | zero-shot top-1 | val R@1 image→text | val R@1 text→image | samples/s vs default (interleaved) "
      "| train time | samples/s in this run | load avg (1 min) before→after |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    option = r["name"].split("@")[0].replace("+labels", "")
    rel = f"{cost[option]:.2f}×" if option in cost else "–"
    label = r["name"].replace("@clock", " (same time as default)").replace("@seed1", " (seed 1)")
    print(f"| {label} | {r['steps']} | {100 * r['zs']:.1f} % | {100 * r['i2t']:.1f} % | {100 * r['t2i']:.1f} % | "
          f"{rel} | {r['seconds'] / 60:.1f} min | {r['rate']:.1f} | {r['load']} |")
