#!/usr/bin/env python3
"""No-leak check for MMImage: decode 10,000 images, good and bad mixed, and watch resident memory.

    python3 tools/bench/soak_image.py [--mm .build/release/mm] [--images 10000] [--threads 2]

The list cycles through every fixture image (JPEG and PNG in all variants, 1×1 to 640×427), a
2560×1707 JPEG, and bad files: truncated JPEG/PNG, empty, scrambled, text named .jpg, and real
GIF/BMP/WebP/TIFF files — about one in four entries fails. `mm preprocess --memory` reads its
resident set size from /proc/self/statm after each pass over the list; the script prints the
series and the growth from the end of the first pass to the end of the last. Decoder buffers
grow to the largest image within the first pass, so afterwards the figure must stay flat.
Needs only the Python standard library.
"""
import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests/MMImageTests/Fixtures"


def bad_files(directory):
    good_jpeg = (FIXTURES / "images/jpeg_444.jpg").read_bytes()
    progressive = (FIXTURES / "images/jpeg_420_progressive.jpg").read_bytes()
    good_png = (FIXTURES / "images/png_rgb8.png").read_bytes()
    rng = random.Random(1)
    scrambled = bytearray(good_jpeg)
    tail = scrambled[700:]
    rng.shuffle(tail)
    scrambled[700:] = tail
    made = {
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "truncated_progressive.jpg": progressive[: len(progressive) * 2 // 3],
        "truncated.png": good_png[: len(good_png) // 2],
        "empty.jpg": b"",
        "scrambled.jpg": bytes(scrambled),
        "notes.jpg": b"This is a caption, not a photo.\n" * 4,
    }
    paths = []
    for name, data in made.items():
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    paths += sorted((FIXTURES / "bad").iterdir())
    paths.append(directory / "missing.jpg")
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mm", default=str(ROOT / ".build/release/mm"))
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        good = sorted((FIXTURES / "images").iterdir())
        bad = bad_files(directory)
        large = directory / "large.jpg"
        # A large JPEG without third-party modules: the fixture photo is re-used if PIL is absent.
        try:
            from PIL import Image
            Image.open(FIXTURES / "images/china.jpg").resize((2560, 1707)).save(large, quality=90)
            good.append(large)
        except ImportError:
            pass
        entries = good + bad
        per_pass = options.images // options.passes
        listing = [str(entries[i % len(entries)]) for i in range(per_pass)]
        random.Random(2).shuffle(listing)
        (directory / "list.txt").write_text("\n".join(listing) + "\n")
        bad_share = sum(1 for p in listing if Path(p) in bad) / len(listing)
        print(f"{per_pass} entries per pass × {options.passes} passes, {options.threads} threads; "
              f"{len(good)} good files, {len(bad)} bad ({bad_share:.0%} of entries fail)")
        out = subprocess.run([options.mm, "preprocess", "--list", str(directory / "list.txt"), "--memory",
                              "--repeat", str(options.passes), "--threads", str(options.threads), "--batch-size", "32"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"mm failed: {out.stderr.strip()}")
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        for r in rows:
            print(f"  after {r['images']:6d} images ({r['failures']:5d} failed): RSS {r['rss_kib'] / 1024:7.1f} MiB")
        growth = rows[-1]["rss_kib"] - rows[0]["rss_kib"]
        print(f"growth from the end of pass 1 to the end of pass {len(rows)}: {growth / 1024:+.2f} MiB "
              f"({growth * 1024 / max(1, rows[-1]['images'] - rows[0]['images']):+.1f} bytes per image)")


if __name__ == "__main__":
    main()
