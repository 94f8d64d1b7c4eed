#!/usr/bin/env python3
"""Generate the bundled `shapes` image-caption dataset under datasets/shapes/.

Every image is a small procedurally drawn scene: one to three copies of a coloured shape on a
neutral, textured background, with antialiasing, a little rotation, shading, pixel noise and
sometimes blur. The class is (colour, shape); every caption names both, the rest of the caption
(size, position, count, background, wording) varies so that the text tower has something to learn.

Deterministic: each image draws from its own generator seeded by (seed, split, index), so the
output is byte-identical for the same seed and the same numpy/Pillow versions.

    .venv-ref/bin/python tools/make_dataset.py                 # writes datasets/shapes/
    .venv-ref/bin/python tools/make_dataset.py --contact-sheet /tmp/sheet.png
    .venv-ref/bin/python tools/make_dataset.py --check-tokens  # caption lengths with open_clip's tokenizer

Run it from the repository root. It needs only numpy and Pillow (`make venv` provides both).
"""
import argparse
import hashlib
import os
import shutil
import sys

try:
    import numpy as np
    import PIL
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
except ImportError as error:
    sys.exit(f"make_dataset.py: {error} — create the reference env with `make venv` "
             "and run `.venv-ref/bin/python tools/make_dataset.py`")

SIZE = 64            # output images are SIZE x SIZE RGB
SUPERSAMPLE = 4      # shapes are drawn at 4x and box-filtered down: antialiased edges
JPEG_QUALITY = 90
PNG_EVERY, PNG_AT = 40, 17                 # image i is a PNG when i % 40 == 17 (2.5 %)
PROGRESSIVE_EVERY, PROGRESSIVE_AT = 40, 29  # and a progressive JPEG when i % 40 == 29

# Per-class image counts: every split is exactly balanced, so chance top-1 is 1/64.
SPLITS = [("train", 94), ("val", 8), ("test", 16)]

# Class colours: base RGB, jittered per image.
COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 215, 40),
    "purple": (135, 55, 180),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart", "ring", "diamond"]
PLURAL = {"cross": "crosses"}
CLASSES = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]

# Background colours: muted, and named with words that are not class colours, so that a caption's
# background never reads like a class. A background must differ enough from the shape colour.
BACKGROUNDS = {
    "grey": (128, 128, 128),
    "light grey": (192, 192, 188),
    "dark grey": (64, 64, 66),
    "beige": (214, 198, 164),
    "slate": (92, 106, 122),
    "khaki": (170, 160, 110),
    "teal": (50, 120, 120),
    "maroon": (115, 40, 55),
    "olive": (110, 115, 50),
    "lavender": (185, 170, 210),
    "mint": (170, 215, 185),
    "navy": (35, 45, 95),
}
MIN_CONTRAST = 110   # Euclidean RGB distance between shape and background base colours
TEXTURES = ["plain", "gradient", "striped", "checkered", "speckled"]
TEXTURE_WORDS = {
    "plain": ["plain", "flat", "solid"],
    "gradient": ["gradient", "shaded", "softly lit"],
    "striped": ["striped", "stripy"],
    "checkered": ["checkered", "chequered", "checked"],
    "speckled": ["speckled", "mottled", "textured", "noisy"],
}

SIZE_WORDS = {"small": ["small", "little", "tiny"], "medium": ["medium-sized", "mid-sized"],
              "large": ["large", "big", "huge"]}
POSITION_WORDS = {
    "top left": ["in the top left", "in the top left corner", "at the upper left", "near the top left"],
    "top": ["at the top", "near the top edge", "in the upper middle"],
    "top right": ["in the top right", "in the top right corner", "at the upper right", "near the top right"],
    "left": ["on the left", "at the left side", "on the left-hand side"],
    "centre": ["in the centre", "in the center", "in the middle", "at the centre of the image"],
    "right": ["on the right", "at the right side", "on the right-hand side"],
    "bottom left": ["in the bottom left", "in the bottom left corner", "at the lower left", "near the bottom left"],
    "bottom": ["at the bottom", "near the bottom edge", "in the lower middle"],
    "bottom right": ["in the bottom right", "in the bottom right corner", "at the lower right", "near the bottom right"],
}
PHOTO_WORDS = ["a photo of", "a picture of", "an image of", "a drawing of", "a rendering of",
               "a render of", "a sketch of", "a graphic of", "a low-resolution photo of",
               "a small picture of", "a cropped photo of", "a jpeg of", "a simple illustration of"]
COUNT_WORDS = {2: ["two", "2", "a pair of"], 3: ["three", "3"]}

# Caption templates. Slots: {np} noun phrase with determiner ("a small red circle", "two blue
# stars"), {thing} the same without the colour ("a small circle"), {photo}, {pos} (single shapes only), {bg} ("a striped grey background"), {the} ("the",
# "the two"), {shape} (singular or plural), {colour}, {be} (is/are), {blur}.
# A template is used only when every slot it names is available for the scene.
TEMPLATES = [
    "{np}",
    "{np} on {bg}",
    "{np} {pos}",
    "{np} {pos} on {bg}",
    "{np} against {bg}",
    "{np} drawn on {bg}",
    "{np} in the picture",
    "{photo} {np}",
    "{photo} {np} on {bg}",
    "{photo} {np} {pos}",
    "{photo} {np} {pos}, on {bg}",
    "there {be} {np}",
    "there {be} {np} {pos}",
    "there {be} {np} on {bg}",
    "you can see {np} {pos}",
    "{bg} with {np}",
    "{bg} with {np} {pos}",
    "{the} {shape} {be} {colour}",
    "{the} {shape} {pos} {be} {colour}",
    "{the} {shape} on {bg} {be} {colour}",
    "{colour} {shape}",
    "{colour} {shape} on {bg}",
    "{thing} coloured {colour}",
    "{thing} in {colour} on {bg}",
    "simple clip art: {np} on {bg}",
    "{photo} {np}, {blur}",
    "a blurry photo of {np}",
    "close-up of {np}",
]
BLUR_WORDS = ["slightly blurry", "a bit out of focus", "soft focus"]


def article(word):
    return "an" if word[0] in "aeiou" else "a"


# --- scene sampling --------------------------------------------------------------------------

def bounding_factor(shape):
    """How far the drawn outline reaches, in units of the shape's radius (rotation included)."""
    return {"square": 1.17, "triangle": 1.1, "diamond": 1.0}.get(shape, 1.0)


def sample_scene(rng, colour, shape):
    count = 1 if rng.random() < 0.8 else int(rng.choice([2, 3], p=[0.6, 0.4]))
    if count == 1:
        radius = float(rng.uniform(9, 24))
    else:
        radius = float(rng.uniform(7, 11.5))
    reach = radius * bounding_factor(shape) + 2
    centres = []
    for _ in range(500):
        if len(centres) == count:
            break
        c = rng.uniform(reach, SIZE - reach, size=2)
        if all(np.hypot(*(c - d)) > 2 * reach + 1 for d in centres):
            centres.append(c)
    count = len(centres)  # three large-ish shapes may not fit: keep the ones placed
    allowed = [b for b, rgb in BACKGROUNDS.items()
               if np.linalg.norm(np.subtract(rgb, COLOURS[colour])) >= MIN_CONTRAST]
    return {
        "colour": colour, "shape": shape, "count": count, "radius": radius,
        "centres": [tuple(map(float, c)) for c in centres],
        "angles": [float(rng.uniform(-15, 15)) for _ in centres],
        "brightness": float(rng.uniform(0.85, 1.12)),
        "tint": rng.normal(0, 8, size=3),
        "background": str(rng.choice(allowed)),
        "texture": str(rng.choice(TEXTURES, p=[0.3, 0.2, 0.17, 0.16, 0.17])),
        "noise": float(rng.uniform(1.0, 4.5)),
        "blur": float(rng.uniform(0.5, 0.9)) if rng.random() < 0.1 else 0.0,
    }


def size_name(radius):
    return "small" if radius < 13 else "large" if radius > 19 else "medium"


def position_name(centre):
    x, y = centre
    column = "left" if x < SIZE / 3 else "right" if x > 2 * SIZE / 3 else ""
    row = "top" if y < SIZE / 3 else "bottom" if y > 2 * SIZE / 3 else ""
    return f"{row} {column}".strip() or "centre"


# --- rendering -------------------------------------------------------------------------------

def outline(shape):
    """Polygon of a shape with radius 1 centred at the origin (y down), or None for round ones."""
    if shape == "square":
        return [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]
    if shape == "diamond":
        return [(0, -1), (0.62, 0), (0, 1), (-0.62, 0)]
    if shape == "triangle":  # equilateral, pointing up, bounding box centred
        r = 1.1
        return [(r * np.cos(a), r * np.sin(a) + r / 4) for a in np.radians([-90, 30, 150])]
    if shape == "star":
        angles = np.radians(-90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return list(zip(radii * np.cos(angles), radii * np.sin(angles)))
    if shape == "cross":
        w = 0.34
        return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
                (-w, w), (-1, w), (-1, -w), (-w, -w)]
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        y = y - (y.max() + y.min()) / 2
        scale = 1 / max(np.abs(x).max(), np.abs(y).max())
        return list(zip(x * scale, y * scale))
    return None


def shape_mask(scene):
    """Coverage in [0, 1] of all copies of the shape, antialiased by supersampling."""
    big = SIZE * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    r = scene["radius"] * SUPERSAMPLE
    for (cx, cy), angle in zip(scene["centres"], scene["angles"]):
        cx, cy = cx * SUPERSAMPLE, cy * SUPERSAMPLE
        if scene["shape"] in ("circle", "ring"):
            outer = 0.95 * r
            draw.ellipse([cx - outer, cy - outer, cx + outer, cy + outer], fill=255)
            if scene["shape"] == "ring":
                inner = 0.55 * r
                draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
            continue
        a = np.radians(angle)
        cos, sin = np.cos(a), np.sin(a)
        points = [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos))
                  for x, y in outline(scene["shape"])]
        draw.polygon(points, fill=255)
    small = mask.resize((SIZE, SIZE), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255


def ramp(rng):
    """A linear ramp over the image in a random direction, in [-1, 1]."""
    a = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1) - 0.5
    return (x * np.cos(a) + y * np.sin(a)) / 0.7071


def background(rng, scene):
    base = np.array(BACKGROUNDS[scene["background"]], np.float32) + rng.normal(0, 6, 3)
    texture = scene["texture"]
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    if texture == "plain":
        light = 6 * ramp(rng)
    elif texture == "gradient":
        light = rng.uniform(18, 32) * ramp(rng)
    elif texture == "striped":
        period, a = rng.uniform(6, 12), rng.uniform(0, np.pi)
        phase = 2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period + rng.uniform(0, 2 * np.pi)
        light = rng.uniform(12, 20) * np.tanh(3 * np.sin(phase))
    elif texture == "checkered":
        cell = rng.uniform(6, 12)
        ox, oy = rng.uniform(0, cell, 2)
        checks = (np.floor((x + ox) / cell) + np.floor((y + oy) / cell)) % 2
        light = rng.uniform(10, 16) * (2 * checks - 1)
    else:  # speckled: smooth low-resolution noise plus fine grain
        coarse = rng.normal(0, 1, (8, 8)).astype(np.float32)
        up = Image.fromarray(coarse, mode="F").resize((SIZE, SIZE), Image.BICUBIC)
        light = rng.uniform(14, 22) * np.asarray(up) + rng.normal(0, 5, (SIZE, SIZE))
    return base[None, None, :] + light[:, :, None]


def render(rng, scene):
    mask = shape_mask(scene)[:, :, None]
    back = background(rng, scene)
    base = np.array(COLOURS[scene["colour"]], np.float32)
    if scene["colour"] == "black":
        colour = base + 25 * (scene["brightness"] - 0.85) + scene["tint"] / 2
    elif scene["colour"] == "white":
        colour = base * min(scene["brightness"], 1.0) + scene["tint"] / 2
    else:
        colour = base * scene["brightness"] + scene["tint"]
    shading = 1 + 0.08 * ramp(rng)[:, :, None]
    pixels = back * (1 - mask) + colour[None, None, :] * shading * mask
    pixels = pixels + rng.normal(0, scene["noise"], pixels.shape)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    if scene["blur"]:
        image = image.filter(ImageFilter.GaussianBlur(scene["blur"]))
    return image


# --- captions --------------------------------------------------------------------------------

def caption(rng, scene):
    pick = lambda options: str(options[rng.integers(len(options))])
    colour, shape, count = scene["colour"], scene["shape"], scene["count"]
    shape_word = shape if count == 1 else PLURAL.get(shape, shape + "s")

    colour_phrase = colour
    if colour not in ("white", "black") and rng.random() < 0.12:
        if scene["brightness"] > 1.05:
            colour_phrase = pick(["bright", "light"]) + " " + colour
        elif scene["brightness"] < 0.9:
            colour_phrase = "dark " + colour
    size = size_name(scene["radius"])
    size_phrase = pick(SIZE_WORDS[size]) + " " if rng.random() < 0.5 else ""
    words = f"{size_phrase}{colour_phrase} {shape_word}"
    uncoloured = f"{size_phrase}{shape_word}"
    if count == 1:
        np_phrase = f"{article(words)} {words}"
        thing = f"{article(uncoloured)} {uncoloured}"
        the = "the"
    else:
        number = pick(COUNT_WORDS[count])
        np_phrase = f"{number} {words}"
        thing = f"{number} {uncoloured}"
        the = pick(["the two", "both"] if count == 2 else ["the three", "all three"])

    bg_name = scene["background"]
    if "grey" in bg_name and rng.random() < 0.25:
        bg_name = bg_name.replace("grey", "gray")
    texture = pick(TEXTURE_WORDS[scene["texture"]])
    noun = "backdrop" if rng.random() < 0.2 else "background"
    form = rng.random()
    if form < 0.45:
        bg_words = f"{bg_name} {noun}"
    elif form < 0.8:
        bg_words = f"{texture} {bg_name} {noun}"
    else:
        bg_words = f"{texture} {noun}"
    slots = {
        "np": np_phrase, "thing": thing, "photo": pick(PHOTO_WORDS), "bg": f"{article(bg_words)} {bg_words}",
        "the": the, "shape": shape_word, "colour": colour_phrase, "be": "is" if count == 1 else "are",
    }
    if count == 1:
        slots["pos"] = pick(POSITION_WORDS[position_name(scene["centres"][0])])
    if scene["blur"]:
        slots["blur"] = pick(BLUR_WORDS)
    usable = [t for t in TEMPLATES if template_fits(t, slots, scene)]
    text = pick(usable).format(**slots)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:] + "."
    return text


def template_fits(template, slots, scene):
    if template.startswith("a blurry photo") and not scene["blur"]:
        return False
    if template.startswith("close-up") and (scene["count"] > 1 or size_name(scene["radius"]) != "large"):
        return False
    names = {part.split("}")[0] for part in template.split("{")[1:]}
    return names <= slots.keys()


# --- writing ---------------------------------------------------------------------------------

def save(image, path, index):
    if index % PNG_EVERY == PNG_AT:
        path += ".png"
        image.save(path, "PNG", optimize=True)
    else:
        path += ".jpg"
        progressive = index % PROGRESSIVE_EVERY == PROGRESSIVE_AT
        image.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=progressive)
    return path


def generate_split(out, split_number, split, per_class, seed):
    order_rng = np.random.default_rng([seed, split_number])
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    order_rng.shuffle(labels)
    folder = os.path.join(out, "images", split)
    os.makedirs(folder)
    rows = []
    for index, label in enumerate(labels):
        rng = np.random.default_rng([seed, split_number, index])
        colour, shape = CLASSES[label].split()
        scene = sample_scene(rng, colour, shape)
        path = save(render(rng, scene), os.path.join(folder, f"{index:06d}"), index)
        rows.append((os.path.relpath(path, out), caption(rng, scene), CLASSES[label], scene))
    return rows


def write_tsv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def write_bad(out, train_rows):
    """bad.tsv: good train rows with deliberately broken ones mixed in, for the bad-input tests."""
    folder = os.path.join(out, "bad")
    os.makedirs(folder)
    jpeg = next(r[0] for r in train_rows if r[0].endswith(".jpg"))
    png = next(r[0] for r in train_rows if r[0].endswith(".png"))
    data = open(os.path.join(out, jpeg), "rb").read()
    open(os.path.join(folder, "truncated.jpg"), "wb").write(data[: len(data) // 2])
    data = open(os.path.join(out, png), "rb").read()
    open(os.path.join(folder, "truncated.png"), "wb").write(data[: len(data) // 2])
    open(os.path.join(folder, "empty.jpg"), "wb").close()
    with open(os.path.join(folder, "not_an_image.jpg"), "w", encoding="utf-8") as f:
        f.write("This is a text file with a .jpg name, not an image.\n")

    good = [f"{path}\t{text}".encode("utf-8") for path, text, _, _ in train_rows[:64]]
    bad = [  # (what, raw line bytes)
        ("truncated JPEG (first half of a valid file)", b"bad/truncated.jpg\ta red circle on a grey background"),
        ("empty file", b"bad/empty.jpg\ta blue square in the centre"),
        ("text file named .jpg", b"bad/not_an_image.jpg\ta green star"),
        ("missing file", b"bad/missing.jpg\ta yellow heart on a beige background"),
        ("no tab: one column only", b"images/train/000000.jpg a caption separated by a space"),
        ("caption with invalid UTF-8 bytes",
         train_rows[1][0].encode() + b"\ta purple ring \xff\xfe caf\xe9"),
        ("truncated PNG (first half of a valid file)", b"bad/truncated.png\tan orange cross"),
    ]
    lines, notes = [b"filepath\ttitle"], []
    for i, line in enumerate(good):
        lines.append(line)
        if i % 9 == 4 and bad:
            what, raw = bad.pop(0)
            lines.append(raw)
            notes.append((len(lines), what, raw))
    with open(os.path.join(out, "bad.tsv"), "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return notes, len(good)


def digest(out, skip=("README.md",)):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(out)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, out)
            if rel in skip:
                continue
            h.update(rel.encode() + b"\0" + open(path, "rb").read())
    return h.hexdigest()


def folder_bytes(out):
    sizes = [os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out) for f in files]
    return sum(sizes), max(sizes), len(sizes)


def contact_sheet(out, split, path, n=32, columns=8):
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, f"{split}.tsv"), encoding="utf-8")][1 : n + 1]
    scale, text_height = 2, 44
    tile_w, tile_h = SIZE * scale + 24, SIZE * scale + text_height
    sheet = Image.new("RGB", (columns * tile_w, -(-len(rows) // columns) * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=10)
    for i, (file, text) in enumerate(rows):
        x, y = (i % columns) * tile_w, (i // columns) * tile_h
        image = Image.open(os.path.join(out, file)).convert("RGB")
        sheet.paste(image.resize((SIZE * scale, SIZE * scale), Image.NEAREST), (x + 12, y + 2))
        lines, line = [], ""
        for word in (os.path.basename(file) + " | " + text).split():
            if draw.textlength(line + " " + word, font=font) > tile_w - 4 and line:
                lines.append(line)
                line = word
            else:
                line = (line + " " + word).strip()
        lines.append(line)
        draw.multiline_text((x + 2, y + SIZE * scale + 4), "\n".join(lines[:3]), fill="black", font=font, spacing=1)
    sheet.save(path)


def check_tokens(captions, context=32):
    """Longest caption in open_clip's tokenizer (needs torch/open_clip): must fit the context."""
    import open_clip
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    lengths = [int((row != 0).sum()) for row in tokenizer(sorted(set(captions)), context_length=77)]
    longest = max(lengths)
    print(f"tokens per caption (with SOT/EOT): mean {np.mean(lengths):.1f}, max {longest} "
          f"({'fits' if longest <= context else 'DOES NOT FIT'} context {context})")
    return longest <= context


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="datasets/shapes", help="output folder (replaced)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--contact-sheet", metavar="PNG", help="also draw the first 32 test images with captions")
    parser.add_argument("--check-tokens", action="store_true", help="check caption lengths with open_clip's tokenizer")
    args = parser.parse_args()

    out = args.out
    for sub in ("images", "bad"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)

    splits = {}
    for number, (split, per_class) in enumerate(SPLITS):
        rows = generate_split(out, number, split, per_class, args.seed)
        splits[split] = rows
        write_tsv(os.path.join(out, f"{split}.tsv"), ["filepath", "title"], [r[:2] for r in rows])
        if split != "train":
            write_tsv(os.path.join(out, f"{split}_labels.tsv"), ["filepath", "label"], [(r[0], r[2]) for r in rows])
        print(f"{split}: {len(rows)} images")
    train = splits["train"]
    write_tsv(os.path.join(out, "train_labeled.tsv"), ["filepath", "title", "label"], [r[:3] for r in train])
    with open(os.path.join(out, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(CLASSES) + "\n")
    with open(os.path.join(out, "captions.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(r[1] for r in train) + "\n")
    bad_notes, bad_good = write_bad(out, train)

    stats = summarise(splits)
    data_digest = digest(out)
    write_readme(out, args, splits, stats, bad_notes, bad_good, data_digest)
    total, largest, files = folder_bytes(out)
    print(f"{files} files, {total / 1e6:.2f} MB, largest {largest} bytes; sha256 of data {data_digest}")
    if args.contact_sheet:
        contact_sheet(out, "test", args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet}")
    if args.check_tokens and not check_tokens([r[1] for rows in splits.values() for r in rows]):
        sys.exit(1)


def summarise(splits):
    stats = {}
    for split, rows in splits.items():
        counts = {c: 0 for c in CLASSES}
        for r in rows:
            counts[r[2]] += 1
        scenes = [r[3] for r in rows]
        stats[split] = {
            "images": len(rows),
            "per_class": (min(counts.values()), max(counts.values())),
            "distinct_captions": len({r[1] for r in rows}),
            "png": sum(r[0].endswith(".png") for r in rows),
            "count": {k: sum(s["count"] == k for s in scenes) for k in (1, 2, 3)},
            "size": {k: sum(s["count"] == 1 and size_name(s["radius"]) == k for s in scenes) for k in SIZE_WORDS},
            "blurred": sum(bool(s["blur"]) for s in scenes),
        }
        print(f"  {split}: per class min {stats[split]['per_class'][0]} max {stats[split]['per_class'][1]}, "
              f"distinct captions {stats[split]['distinct_captions']}, PNG {stats[split]['png']}, "
              f"counts {stats[split]['count']}, single-shape sizes {stats[split]['size']}, blurred {stats[split]['blurred']}")
    caption_counts = {}
    for r in splits["train"]:
        caption_counts[r[1]] = caption_counts.get(r[1], 0) + 1
    stats["shared"] = sum(n for n in caption_counts.values() if n > 1)
    print(f"  train images whose caption is also another train image's: {stats['shared']}")
    train_captions = {r[1] for r in splits["train"]}
    held_out = [r for s in ("val", "test") for r in splits[s]]
    stats["unseen"] = sum(r[1] not in train_captions for r in held_out) / len(held_out)
    print(f"  held-out captions not seen in train: {100 * stats['unseen']:.0f} %")
    return stats


def write_readme(out, args, splits, stats, bad_notes, bad_good, data_digest):
    s = {k: stats[k] for k in splits}
    examples = [r[1] for r in splits["train"][:12]]
    bad_table = "\n".join(f"| {line} | {what} | `{raw.decode('utf-8', 'backslashreplace').replace(chr(9), '<TAB>')}` |"
                          for line, what, raw in bad_notes)
    template_list = "\n".join(f"- `{t}`" for t in TEMPLATES)
    background_list = ", ".join(BACKGROUNDS)
    text = f"""# shapes — a small generated image–caption dataset

Procedurally drawn 64×64 RGB scenes of a coloured shape on a muted background, with varied
English captions. Small enough to train a tiny CLIP on a 2-core CPU in minutes, structured enough
that what it learns can be measured: the class of an image is (colour, shape), and every caption
names both. Generated by [`tools/make_dataset.py`](../../tools/make_dataset.py) — never edit these
files by hand; change the script and regenerate.

## Regenerate

From the repository root:

    .venv-ref/bin/python tools/make_dataset.py

(`make venv` creates `.venv-ref`; only numpy and Pillow are used.) Options: `--seed N` (default
{args.seed}), `--out DIR`, `--contact-sheet sheet.png` (first 32 test images with their captions),
`--check-tokens` (caption lengths with open_clip's tokenizer). The output is byte-identical for the
same seed, numpy {np.__version__} and Pillow {PIL.__version__}: SHA-256 over all files except this
README is `{data_digest}` (the script prints it). Other versions of Pillow's bundled libjpeg/zlib
can change bytes, not content.

## Contents

| file | what |
|---|---|
| `images/{{train,val,test}}/NNNNNN.jpg` | the images (JPEG quality {JPEG_QUALITY}, 4:2:0; every 40th is a PNG, and another in 40 is a progressive JPEG, to exercise both decoders and both JPEG modes) |
| `train.tsv`, `val.tsv`, `test.tsv` | open_clip CSV/TSV format: header `filepath<TAB>title`, paths relative to the TSV |
| `train_labeled.tsv` | the train pairs with a third column `label` (for `--labels-key label`) |
| `labels.txt` | the {len(CLASSES)} class names, one per line, in class-index order (`red circle`, `red square`, …) |
| `test_labels.tsv`, `val_labels.tsv` | header `filepath<TAB>label`, label = a line of `labels.txt` |
| `captions.txt` | every train caption, one per line (for tokenizer/BPE training) |
| `bad.tsv`, `bad/` | deliberately broken samples for the bad-input tests (never in the real splits) |

| split | images | per class | distinct captions | PNG | 1 / 2 / 3 shapes | blurred |
|---|---|---|---|---|---|---|
""" + "\n".join(
        f"| {k} | {v['images']} | {v['per_class'][0]} | {v['distinct_captions']} | {v['png']} | "
        f"{v['count'][1]} / {v['count'][2]} / {v['count'][3]} | {v['blurred']} |" for k, v in s.items()) + f"""

Every split is exactly balanced over the {len(CLASSES)} classes, so **chance zero-shot top-1 is
1/{len(CLASSES)} = {100 / len(CLASSES):.2f} %** (and a model that gets only the colour, or only the shape, right
tops out at 12.5 %). {100 * stats['unseen']:.0f} % of val/test captions never occur in train. Exact
duplicate captions are rare ({stats['shared']} of {stats['train']['images']} train images share their caption
with another), but same-class pairs are not: in a random batch of 128, about 110 images have another image of their class
in the batch — false negatives for plain InfoNCE, which `train_labeled.tsv` lets a
label-aware loss treat as positives.

## Classes

8 colours × 8 shapes = 64 classes, index = 8·colour + shape:

- colours: {", ".join(COLOURS)}
- shapes: {", ".join(SHAPES)}

## How an image is made

Each image has its own random generator seeded by (seed, split, index).

- **Count**: one shape (80 %), or two or three copies of the same shape, not overlapping.
- **Size**: radius 9–24 px for one shape (captioned small < 13 ≤ medium ≤ 19 < large), 7–11.5 px
  for several. **Position**: uniform over the image with the shape fully inside; captioned by
  thirds of the image (top left … centre … bottom right).
- **Shape**: drawn at 4× resolution and box-filtered down (antialiased edges), rotated by up to
  ±15° (circle and ring are round; the diamond is a narrow rhombus so it is not a rotated square).
- **Colour**: a base RGB per class, with per-image brightness (0.85–1.12×), a per-channel tint
  (σ 8) and a ±8 % lighting ramp across the shape.
- **Background**: one of {background_list} — muted colours whose names are not class colours, and
  at least {MIN_CONTRAST} apart (RGB distance) from the shape's colour — with a texture: plain,
  gradient, striped, checkered or speckled.
- **Noise**: Gaussian pixel noise σ 1–4.5 grey levels; 10 % are also Gaussian-blurred (radius 0.5–0.9 px).

## Captions

A template is picked uniformly among those whose slots fit the scene (position only for a single
shape, `close-up` only for a large single shape, blur words only for blurred images), then filled
with synonyms; 30 % get a capital letter and a full stop. Slots: `{{np}}` = determiner + optional
size word (small/little/tiny, medium-sized/mid-sized, large/big/huge) + colour (sometimes
"bright"/"light"/"dark") + shape (plural for 2–3: "two", "2", "a pair of", "three", "3");
`{{thing}}` = the same without the colour; `{{pos}}` =
a phrase for the position ("in the top left corner", "at the upper left", "in the middle", …);
`{{bg}}` = "a [texture word] [background colour] background/backdrop" (grey is sometimes spelled
gray); `{{photo}}` = "a photo of", "a picture of", "a drawing of", "a jpeg of", …;
`{{the}}`/`{{be}}` agree with the count.

{template_list}

Examples (first train captions):

""" + "\n".join(f"- {e}" for e in examples) + f"""

Captions are at most 32 tokens with open_clip's tokenizer (SOT and EOT included), so they fit the
context of `mm-tiny` (`--check-tokens` verifies).

## Bad samples (`bad.tsv`)

`bad.tsv` has the same header and {bad_good} good train rows, with these broken lines mixed in
(line numbers count the header as line 1):

| line | what | raw line |
|---|---|---|
{bad_table}

The truncated JPEG is cut inside its entropy-coded data: libjpeg(-turbo) only emits warnings
("Premature end of JPEG file", "Corrupt JPEG data: premature end of data segment") and fills the
rest with grey, so a decoder must treat warnings as corruption (Pillow raises `image file is
truncated`). The other broken files fail outright. A run with `--skip-bad` over this file should
finish and report 2 bad lines and 5 bad images skipped.

## Licence

Generated data with no third-party content, released under CC0 1.0 (public-domain dedication);
the generating script is part of the project and under its licence.
"""
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
