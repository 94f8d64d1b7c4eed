#!/usr/bin/env python3
"""WebP golden fixtures for MMImage, produced by the reference: Pillow (libwebp) + open_clip.

    python3 tools/make_webp_fixtures.py   # creates .venv-ref from tools/requirements.txt when missing

Inputs are crops of scikit-learn's china.jpg and flower.jpg encoded by Pillow as lossy, lossless,
lossy with alpha, lossless with alpha, a tiny odd-sized image and a two-frame animation (mm reads
the first frame, as `Image.open` does). Writes Tests/MMImageTests/Fixtures/webp/:
    <name>.webp                 the inputs
    <case>.npy                  uint8 [3, S, S]: `image_transform(S, is_train=False, mean=0, std=1)`
                                of `Image.open(f)` × 255 (exactly k/255, checked below)
    <name>.decode.npy           uint8 [H, W, 3]: `Image.open(f).convert("RGB")`
    index.json                  every case, with the Pillow/libwebp/open_clip versions
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests/MMImageTests/Fixtures/webp"

from reference_env import ensure_reference_env  # noqa: E402

ensure_reference_env("open_clip", "sklearn", "torch")

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import PIL  # noqa: E402
from open_clip.transform import image_transform  # noqa: E402
from PIL import Image, features  # noqa: E402
from sklearn.datasets import load_sample_image  # noqa: E402


def photo(name, box, size):
    return Image.fromarray(load_sample_image(name)).crop(box).resize(size, Image.LANCZOS)


def with_alpha(im):
    """A radial alpha ramp, fully transparent and fully opaque regions included."""
    w, h = im.size
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    alpha = np.clip(255 * (1.3 - r), 0, 255).astype(np.uint8)
    alpha[: h // 6, : w // 6] = 0
    rgba = im.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    china = photo("china.jpg", (100, 50, 420, 290), (160, 120))
    flower = photo("flower.jpg", (200, 80, 520, 400), (96, 96))
    inputs = {
        "lossy": (china, dict(quality=80)),
        "lossless": (flower, dict(lossless=True)),
        "alpha_lossy": (with_alpha(china), dict(quality=75)),
        "alpha_lossless": (with_alpha(flower), dict(lossless=True)),
        "odd": (photo("china.jpg", (0, 0, 77, 33), (37, 23)), dict(quality=90)),
    }
    for name, (im, options) in inputs.items():
        im.save(OUT / f"{name}.webp", **options)
    frames = [china, china.transpose(Image.FLIP_LEFT_RIGHT)]
    frames[0].save(OUT / "animated.webp", save_all=True, append_images=frames[1:], duration=100, loop=0, quality=85)

    cases, decodes = [], []
    for name in [*inputs, "animated"]:
        path = OUT / f"{name}.webp"
        im = Image.open(path)
        rgb = np.asarray(im.convert("RGB"))
        np.save(OUT / f"{name}.decode.npy", rgb)
        decodes.append({"file": f"webp/{name}.webp", "expected": f"webp/{name}.decode.npy",
                        "width": im.width, "height": im.height})
        for size in (32, 64):
            t = image_transform(size, is_train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
            x = t(Image.open(path)).numpy() * 255
            k = np.round(x)
            assert np.abs(x - k).max() < 1e-3
            np.save(OUT / f"{name}_{size}.npy", k.astype(np.uint8))
            cases.append({"case": f"webp_{name}_{size}", "file": f"webp/{name}.webp", "size": size, "format": "webp",
                          "pil_mode": im.mode, "width": im.width, "height": im.height,
                          "expected": f"webp/{name}_{size}.npy",
                          "note": "first frame of 2" if name == "animated" else ""})
    index = {"generator": "tools/make_webp_fixtures.py",
             "versions": {"pillow": PIL.__version__, "libwebp": features.version("webp") or "",
                          "open_clip": open_clip.__version__},
             "cases": cases, "decodes": decodes}
    (OUT / "index.json").write_text(json.dumps(index, indent=1))
    print(f"{len(cases)} cases, {len(decodes)} decodes → {OUT}")


if __name__ == "__main__":
    main()
