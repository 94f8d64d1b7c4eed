"""Prints the JSON reports of `mm index bench --ann` (one a line) as a Markdown table."""

import json
import sys

print("| rows × dim | factory | build s | RSS MB before → after build (peak) | breadth | recall@10 (ties) "
      "| exact q/s batch / one | ANN q/s batch / one | speed-up batch / one | CPU-time speed-up batch / one |")
print("|---|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    for p in r.get("points", []):
        breadth = (f"nprobe {p['nprobe']}" if "nprobe" in p else f"efSearch {p['ef_search']}" if "ef_search" in p
                   else f"candidates {p['candidates_per_result']}/result")
        print(f"| {r['rows']:,} × {r['dim']} | {r['ann']} | {r['build_seconds']:.0f} "
              f"| {r['rss_before_build_mb']:,.0f} → {r['rss_after_build_mb']:,.0f} ({r['peak_rss_mb']:,.0f}) "
              f"| {breadth} | {p['recall_at_k']:.3f} ({p['recall_at_k_ties']:.3f}) "
              f"| {p['exact_queries_per_s']:,.0f} / {p.get('exact_single_queries_per_s', 0):,.1f} "
              f"| {p['ann_queries_per_s']:,.0f} / {p.get('ann_single_queries_per_s', 0):,.0f} "
              f"| {p['speedup']:.1f}× / {p.get('single_speedup', 0):.1f}× "
              f"| {p['cpu_speedup']:.1f}× / {p.get('single_cpu_speedup', 0):.1f}× |")
