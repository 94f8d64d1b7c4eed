#!/usr/bin/env python3
"""Two small image–caption sets of other kinds than the bundled shapes, for judging training
defaults on more than one task (never pick a default by looking at shapes alone).

    .venv-ref/bin/python tools/make_eval_sets.py [--out DIR]     # default: .build/datasets

- `digits`: the 1,797 handwritten digits that scikit-learn ships (8×8 grey scans, 10 classes),
  upscaled to 64×64, shown in random ink/paper colours with a small random shift and rotation;
  captions name the digit as a word and sometimes as a numeral ("a handwritten seven (7)").
  Real, noisy data: the classes overlap (1/7, 3/8/9) the way handwriting does.
- `patterns`: generated textures, 8 kinds × 4 colours = 32 classes (horizontal stripes, vertical
  stripes, diagonal stripes, checkerboard, polka dots, concentric rings, zigzag, grid), random
  period, phase, paper shade, noise and blur; captions name pattern and colour in varied words.
  Unlike shapes, the class is a texture that fills the image, not an object on a background.

Each set has the layout of datasets/shapes: images/{train,val,test}/NNNNNN.jpg, train.tsv /
val.tsv / test.tsv (filepath, title), test_labels.tsv / val_labels.tsv (filepath, label),
labels.txt (class names in index order). Deterministic: every image draws from its own generator
seeded by (set, split, index); byte-identical for the same numpy / Pillow / scikit-learn versions.
"""
import argparse
import math
import os
import sys
from pathlib import Path

try:
    import numpy as np
    from PIL import Image, ImageFilter
    from sklearn.datasets import load_digits
except ImportError as error:
    sys.exit(f"make_eval_sets.py: {error} — run it with .venv-ref/bin/python (`make venv`)")

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64
JPEG_QUALITY = 92

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_TEMPLATES = [
    "a handwritten {w}", "a handwritten {w} ({d})", "the digit {w}", "the number {w}, written by hand",
    "a scan of a handwritten {w}", "a {w} written by hand", "a photo of the digit {w}",
    "a blurry handwritten {w}", "the numeral {d}, which is {w}", "a hand-drawn {w}",
    "someone wrote the number {w}", "a low-resolution scan of a {w}",
]
INKS = [(20, 20, 20), (30, 40, 120), (120, 30, 30), (20, 90, 40), (240, 240, 240), (230, 220, 120)]
PAPERS = [(235, 235, 228), (250, 245, 230), (200, 210, 220), (40, 40, 45), (60, 70, 90), (170, 180, 160)]

PATTERNS = {
    "horizontal stripes": ["horizontal stripes", "horizontally striped", "horizontal lines"],
    "vertical stripes": ["vertical stripes", "vertically striped", "vertical lines"],
    "diagonal stripes": ["diagonal stripes", "diagonally striped", "slanted lines"],
    "checkerboard": ["checkerboard", "chequered", "checked pattern"],
    "polka dots": ["polka dots", "dotted pattern", "spots"],
    "concentric rings": ["concentric rings", "concentric circles", "a target of rings"],
    "zigzag": ["zigzag", "zigzag lines", "chevrons"],
    "grid": ["grid", "grid of lines", "square grid"],
}
COLOURS = {"red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 210), "yellow": (235, 205, 40)}
PATTERN_TEMPLATES = [
    "{c} {p}", "a {c} {p} pattern", "a texture of {c} {p}", "{p} in {c}", "a photo of {c} {p}",
    "fabric with {c} {p}", "a close-up of a {c} {p} surface", "wallpaper with {c} {p}",
    "{c} {p} on a pale background", "a swatch of {c} {p}", "a blurry picture of {c} {p}",
]
PATTERN_SPLITS = [("train", 60), ("val", 5), ("test", 15)]


def rng_for(name, split, index):
    return np.random.default_rng([sum(map(ord, name)), sum(map(ord, split)), index])


def save(img, out, split, index):
    rel = f"images/{split}/{index:06d}.jpg"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=JPEG_QUALITY)
    return rel


def write_tsv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def write_set(out, classes, splits):
    """splits: {split: [(rel, caption, label)]}."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("".join(c + "\n" for c in classes), encoding="utf-8")
    for split, rows in splits.items():
        write_tsv(out / f"{split}.tsv", ["filepath", "title"], [(r, c) for r, c, _ in rows])
        if split != "train":
            write_tsv(out / f"{split}_labels.tsv", ["filepath", "label"], [(r, l) for r, _, l in rows])
    counts = ", ".join(f"{s} {len(r)}" for s, r in splits.items())
    print(f"wrote {out}: {len(classes)} classes; {counts}")


def digit_image(pixels, g):
    grey = (pixels / 16.0).astype(np.float32)                         # 8×8, 1 = ink
    small = Image.fromarray((grey * 255).astype(np.uint8), "L")
    big = small.resize((SIZE - 8, SIZE - 8), Image.BICUBIC)
    canvas = Image.new("L", (SIZE, SIZE), 0)
    canvas.paste(big, (4 + int(g.integers(-3, 4)), 4 + int(g.integers(-3, 4))))
    canvas = canvas.rotate(float(g.uniform(-12, 12)), resample=Image.BILINEAR)
    ink = np.array(INKS[g.integers(len(INKS))], np.float32)
    paper = np.array(PAPERS[g.integers(len(PAPERS))], np.float32)
    if np.linalg.norm(ink - paper) < 120:
        paper = 255 - ink
    a = np.asarray(canvas, np.float32)[..., None] / 255
    rgb = paper * (1 - a) + ink * a + g.normal(0, 6, (SIZE, SIZE, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def make_digits(out):
    digits = load_digits()
    order = np.random.default_rng(7).permutation(len(digits.target))
    # Per class: 10 % validation, 25 % test, the rest training.
    splits = {"train": [], "val": [], "test": []}
    seen = [0] * 10
    for i in order:
        label = int(digits.target[i])
        k = seen[label]
        seen[label] += 1
        split = "val" if k % 20 in (3, 13) else "test" if k % 4 == 1 else "train"
        g = rng_for("digits", split, int(i))
        rel = save(digit_image(digits.images[i], g), out, split, len(splits[split]))
        template = DIGIT_TEMPLATES[g.integers(len(DIGIT_TEMPLATES))]
        caption = template.format(w=DIGIT_WORDS[label], d=label)
        splits[split].append((rel, caption, DIGIT_WORDS[label]))
    write_set(out, DIGIT_WORDS, splits)


def pattern_mask(kind, g):
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    period = float(g.uniform(7, 14))
    phase = float(g.uniform(0, period))
    width = float(g.uniform(0.35, 0.55))
    wave = lambda t: ((t + phase) % period) / period < width  # noqa: E731
    if kind == "horizontal stripes":
        m = wave(y)
    elif kind == "vertical stripes":
        m = wave(x)
    elif kind == "diagonal stripes":
        m = wave((x + y) / math.sqrt(2) if g.integers(2) else (x - y + SIZE) / math.sqrt(2))
    elif kind == "checkerboard":
        m = wave(x) ^ wave(y)
    elif kind == "polka dots":
        cx, cy = (x + phase) % period - period / 2, (y + phase) % period - period / 2
        m = cx * cx + cy * cy < (period * width * 0.6) ** 2
    elif kind == "concentric rings":
        ox, oy = g.uniform(16, 48, 2)
        m = wave(np.sqrt((x - ox) ** 2 + (y - oy) ** 2))
    elif kind == "zigzag":
        m = wave(y + np.abs(((x + phase) % period) - period / 2) * 1.5)
    else:  # grid
        m = ((x + phase) % period < 2) | ((y + phase) % period < 2)
    return m.astype(np.float32)


def make_patterns(out):
    kinds, colours = list(PATTERNS), list(COLOURS)
    classes = [f"{c} {p}" for p in kinds for c in colours]
    splits = {s: [] for s, _ in PATTERN_SPLITS}
    for split, per_class in PATTERN_SPLITS:
        for n in range(per_class):
            for ci, cls in enumerate(classes):
                kind, colour = kinds[ci // len(colours)], colours[ci % len(colours)]
                index = len(splits[split])
                g = rng_for("patterns", split, index)
                m = pattern_mask(kind, g)[..., None]
                ink = np.array(COLOURS[colour], np.float32) + g.normal(0, 12, 3)
                paper = np.full(3, g.uniform(200, 250), np.float32) + g.normal(0, 6, 3)
                rgb = paper * (1 - m) + ink * m + g.normal(0, 8, (SIZE, SIZE, 3))
                img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
                img = img.rotate(float(g.uniform(-10, 10)), resample=Image.BILINEAR, fillcolor=tuple(int(v) for v in paper))
                if g.uniform() < 0.25:
                    img = img.filter(ImageFilter.GaussianBlur(float(g.uniform(0.5, 1.2))))
                rel = save(img, out, split, index)
                words = PATTERNS[kind][g.integers(len(PATTERNS[kind]))]
                template = PATTERN_TEMPLATES[g.integers(len(PATTERN_TEMPLATES))]
                splits[split].append((rel, template.format(c=colour, p=words), cls))
    write_set(out, classes, splits)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / ".build/datasets"), help="parent folder of digits/ and patterns/")
    args = parser.parse_args()
    out = Path(args.out)
    make_digits(out / "digits")
    make_patterns(out / "patterns")


if __name__ == "__main__":
    main()
