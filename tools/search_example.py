#!/usr/bin/env python3
"""Text→image search from a script, through mm's JSON output.

Usage: search_example.py CHECKPOINT IMAGES_FOLDER "a query" [K]
Builds IMAGES_FOLDER.mmi with `mm index build` the first time, then runs
`mm search --json` and prints the best matches. Set MM to the mm binary (default: mm on PATH).
"""
import json
import os
import subprocess
import sys


def main(checkpoint, folder, query, k=5):
    mm = os.environ.get("MM", "mm")
    index = folder.rstrip("/") + ".mmi"
    if not os.path.exists(index):
        subprocess.run([mm, "index", "build", folder, "-o", index, "-c", checkpoint], check=True)
    out = subprocess.run([mm, "search", index, "-c", checkpoint, "--text", query, "-k", str(k), "--json"],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    for hit in result["results"]:
        print(f"{hit['score']:.4f}  {hit['path']}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 5)
