#!/usr/bin/env python3
"""Golden fixtures for MMImage, produced by the reference: Pillow decoding + open_clip's preprocess.

    python3 tools/make_image_fixtures.py   # creates .venv-ref from tools/requirements.txt when missing

Inputs are real photographs (china.jpg and flower.jpg, shipped in scikit-learn), re-encoded
into every variant MMImage must read: JPEG baseline/progressive, 4:4:4/4:2:2/4:2:0, greyscale,
CMYK, optimised Huffman, restart markers, odd and tiny sizes; PNG 8/16-bit RGB, RGBA, grey,
grey+alpha, 1/2/4-bit grey, palette (8- and 4-bit, with tRNS), tRNS colour keys, Adam7
interlacing. Pillow writes most of them; pypng writes what Pillow cannot (16-bit colour,
2/4-bit grey, interlacing).

Writes Tests/MMImageTests/Fixtures/:
    images/<name>.jpg|png     the inputs
    bad/<name>.gif|bmp|webp|tiff   real files in formats MMImage refuses
    expected/<case>.npy       uint8 [3, S, S]: open_clip `image_transform(S, is_train=False,
                              mean=0, std=1)` output × 255 (it is exactly k/255, checked below)
    expected/<case>.decode.npy  uint8 [H, W, 3]: PIL `Image.open(f).convert("RGB")` (JPEG only)
    expected/<case>.crop.npy  uint8 [3, S, S]: torchvision `resized_crop` with a fixed box, then
                              open_clip's convert + ToTensor (the deterministic half of training)
    expected/china_224_openai.npy  float32 [3, 224, 224]: the default open_clip eval preprocess
                              (OpenAI mean/std) of the unmodified china.jpg
    index.json                every case, with Pillow/open_clip/torchvision versions

One deliberate deviation: PIL opens 16-bit greyscale PNGs as mode "I;16" and its convert("RGB")
clamps values to 255 instead of scaling (every pixel brighter than 255/65535 becomes white). MMImage
keeps the high byte, as PIL itself does for 16-bit RGB; for that case the reference decode is
PIL's 16-bit array >> 8, and the rest of the pipeline is open_clip's. index.json marks it.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests/MMImageTests/Fixtures"
SEED = 20260524


from reference_env import ensure_reference_env  # noqa: E402

ensure_reference_env("open_clip", "png", "sklearn", "torch")

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import PIL  # noqa: E402
import png  # noqa: E402  (pypng)
import sklearn  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
import torchvision.transforms.functional as TF  # noqa: E402
from open_clip.transform import image_transform  # noqa: E402
from PIL import Image, features  # noqa: E402
from sklearn.datasets import load_sample_image  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402

rng = np.random.default_rng(SEED)


def photo(name, size=None):
    """A scikit-learn sample photo (427×640 RGB), optionally resized with Lanczos."""
    im = Image.fromarray(load_sample_image(name))
    return im if size is None else im.resize(size, Image.LANCZOS)


def save_pil(im, name, **options):
    path = OUT / "images" / name
    im.save(path, **options)
    return path


def save_pypng(rows, name, width, height, **options):
    path = OUT / "images" / name
    with open(path, "wb") as f:
        png.Writer(width, height, **options).write(f, rows)
    return path


def unit_transform(size):
    """open_clip's eval preprocess without normalisation: values are exactly k/255."""
    return image_transform(size, is_train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def as_bytes(tensor, what):
    """uint8 copy of a k/255 tensor, after checking that it really is k/255."""
    scaled = tensor.numpy().astype(np.float64) * 255
    k = np.rint(scaled)
    assert np.abs(scaled - k).max() < 1e-3, f"{what}: not a multiple of 1/255"
    assert k.min() >= 0 and k.max() <= 255
    return k.astype(np.uint8)


cases, decodes, crops = [], [], []


def add_case(path, size, fmt, note="", reference_image=None, decode=False):
    """Expected eval output of `path` at `size` (and, for JPEGs, the full decode)."""
    name = path.stem
    opened = Image.open(path)
    mode = opened.mode
    image = reference_image if reference_image is not None else opened
    out = unit_transform(size)(image)
    key = f"{name}_{size}"
    np.save(OUT / "expected" / f"{key}.npy", as_bytes(out, key))
    cases.append({"case": key, "file": f"images/{path.name}", "size": size, "format": fmt,
                  "pil_mode": mode, "width": opened.size[0], "height": opened.size[1],
                  "expected": f"expected/{key}.npy", "note": note})
    if decode:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        np.save(OUT / "expected" / f"{name}.decode.npy", rgb)
        decodes.append({"file": f"images/{path.name}", "expected": f"expected/{name}.decode.npy",
                        "width": rgb.shape[1], "height": rgb.shape[0]})


def add_crop(path, size, box):
    """torchvision's resized_crop with a fixed (top, left, height, width), as RandomResizedCrop
    applies it, then open_clip's convert("RGB") + ToTensor."""
    top, left, height, width = box
    image = Image.open(path)
    cropped = TF.resized_crop(image, top, left, height, width, [size, size], InterpolationMode.BICUBIC)
    out = TF.to_tensor(cropped.convert("RGB"))
    key = f"{path.stem}_crop{size}"
    np.save(OUT / "expected" / f"{key}.crop.npy", as_bytes(out, key))
    crops.append({"case": key, "file": f"images/{path.name}", "size": size, "box": list(box),
                  "expected": f"expected/{key}.crop.npy"})


def cmyk_of(rgb):
    """A realistic CMYK separation (grey component replacement), so K is not all zero."""
    a = np.asarray(rgb).astype(np.float64) / 255
    k = 1 - a.max(axis=2)
    denom = np.where(k < 1, 1 - k, 1)
    cmy = (1 - a - k[..., None]) / denom[..., None]
    cmyk = np.concatenate([cmy, k[..., None]], axis=2)
    return Image.fromarray(np.rint(cmyk * 255).astype(np.uint8), "CMYK")


def alpha_ramp(width, height):
    """Alpha with fully transparent, fully opaque and everything-between regions."""
    x = np.linspace(-0.3, 1.3, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    a = np.clip(x + 0.25 * np.sin(9 * y), 0, 1)
    return np.rint(a * 255).astype(np.uint8)


def main():
    for sub in ("images", "bad", "expected"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
        for f in (OUT / sub).iterdir():
            f.unlink()

    china = photo("china.jpg", (120, 80))
    flower = photo("flower.jpg", (120, 80))
    china_mid = photo("china.jpg", (320, 213))

    # --- JPEG -------------------------------------------------------------------------------
    jpeg_variants = [
        ("jpeg_444", china, dict(quality=90, subsampling=0)),
        ("jpeg_422", china, dict(quality=90, subsampling=1)),
        ("jpeg_420", flower, dict(quality=90, subsampling=2)),
        ("jpeg_420_progressive", china, dict(quality=90, subsampling=2, progressive=True)),
        ("jpeg_444_progressive", flower, dict(quality=85, subsampling=0, progressive=True)),
        ("jpeg_optimized", flower, dict(quality=75, subsampling=2, optimize=True)),
        ("jpeg_restart", china, dict(quality=90, subsampling=2, restart_marker_blocks=4)),
        ("jpeg_q30", flower, dict(quality=30, subsampling=2)),
        ("jpeg_gray", china.convert("L"), dict(quality=90)),
        ("jpeg_gray_progressive", flower.convert("L"), dict(quality=90, progressive=True)),
        ("jpeg_cmyk", cmyk_of(china), dict(quality=90)),
        ("jpeg_portrait_420", flower.transpose(Image.ROTATE_90), dict(quality=90, subsampling=2)),
        ("jpeg_odd_420", photo("china.jpg", (101, 67)), dict(quality=90, subsampling=2)),
        ("jpeg_1x1", photo("flower.jpg", (1, 1)), dict(quality=95)),
        ("jpeg_3x17_420", photo("china.jpg", (3, 17)), dict(quality=95, subsampling=2)),
        ("jpeg_wide_420", photo("flower.jpg", (97, 9)), dict(quality=90, subsampling=2)),
    ]
    for name, im, options in jpeg_variants:
        path = save_pil(im, f"{name}.jpg", **options)
        add_case(path, 64, "jpeg", decode=True)
    add_case(save_pil(china_mid, "jpeg_mid_420.jpg", quality=90), 64, "jpeg", "downscale ×3.3")
    add_case(save_pil(photo("flower.jpg", (213, 320)), "jpeg_mid_portrait_422.jpg", quality=90, subsampling=1),
             64, "jpeg", "portrait: the center crop drops rows")
    add_case(OUT / "images/jpeg_444.jpg", 96, "jpeg", "upscale ×1.2")

    # The unmodified photo, default (OpenAI) normalisation, 224.
    china_full = OUT / "images" / "china.jpg"
    china_full.write_bytes(Path(sklearn.datasets.__file__).parent.joinpath("images/china.jpg").read_bytes())
    add_case(china_full, 224, "jpeg", "sklearn's china.jpg as shipped")
    normalised = image_transform(224, is_train=False)(Image.open(china_full)).numpy().astype(np.float32)
    np.save(OUT / "expected" / "china_224_openai.npy", normalised)
    add_case(OUT / "images/jpeg_420.jpg", 96, "jpeg", "upscale ×1.2")

    # --- PNG --------------------------------------------------------------------------------
    rgb = np.asarray(china)
    h, w = rgb.shape[:2]
    low = rng.integers(0, 256, size=rgb.shape, dtype=np.uint16)  # 16-bit: the low byte must not matter
    rgb16 = (rgb.astype(np.uint16) << 8) | low
    alpha = alpha_ramp(w, h)
    gray = np.asarray(flower.convert("L"))
    gray16 = (gray.astype(np.uint16) << 8) | rng.integers(0, 256, size=gray.shape, dtype=np.uint16)

    add_case(save_pil(china, "png_rgb8.png"), 64, "png")
    add_case(save_pil(flower.convert("L"), "png_gray8.png"), 64, "png")
    add_case(save_pil(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "png_rgba8.png"), 64, "png",
             "PIL resizes RGBA premultiplied")
    add_case(save_pil(Image.fromarray(np.dstack([gray, alpha]), "LA"), "png_la8.png"), 64, "png",
             "PIL resizes LA premultiplied")
    add_case(save_pil(flower.quantize(256), "png_palette8.png"), 64, "png", "P: nearest-neighbour resize")
    add_case(save_pil(china.quantize(16), "png_palette4.png", bits=4), 64, "png", "4-bit palette")
    trns = flower.quantize(64)
    add_case(save_pil(trns, "png_palette_trns.png", transparency=bytes([0, 128] + [255] * 62)), 64, "png",
             "palette with tRNS (ignored by convert)")
    add_case(save_pil(flower.convert("L").convert("1"), "png_gray1.png"), 64, "png", "mode 1: nearest")

    add_case(save_pypng(rgb16.reshape(h, -1), "png_rgb16.png", w, h, greyscale=False, bitdepth=16), 64, "png")
    add_case(save_pypng(np.dstack([rgb16, (alpha.astype(np.uint16) << 8) | 0x5A]).reshape(h, -1),
                        "png_rgba16.png", w, h, greyscale=False, alpha=True, bitdepth=16), 64, "png")
    add_case(save_pypng(np.dstack([gray16, (alpha.astype(np.uint16) << 8) | 0xA5]).reshape(h, -1),
                        "png_la16.png", w, h, greyscale=True, alpha=True, bitdepth=16), 64, "png")
    path = save_pypng(gray16, "png_gray16.png", w, h, greyscale=True, bitdepth=16)
    high = Image.fromarray((np.asarray(Image.open(path)).astype(np.uint16) >> 8).astype(np.uint8), "L")
    add_case(path, 64, "png", "reference decode: PIL's I;16 array >> 8 (PIL's own convert clamps)", high)
    add_case(save_pypng(gray >> 6, "png_gray2.png", w, h, greyscale=True, bitdepth=2), 64, "png")
    add_case(save_pypng(gray >> 4, "png_gray4.png", w, h, greyscale=True, bitdepth=4), 64, "png")
    add_case(save_pypng(rgb.reshape(h, -1), "png_rgb8_trns.png", w, h, greyscale=False, bitdepth=8,
                        transparent=tuple(int(v) for v in rgb[0, 0])), 64, "png", "tRNS colour key")
    add_case(save_pypng(gray, "png_gray8_trns.png", w, h, greyscale=True, bitdepth=8,
                        transparent=int(gray[0, 0])), 64, "png", "tRNS grey key")
    add_case(save_pypng(rgb.reshape(h, -1), "png_rgb8_interlaced.png", w, h, greyscale=False, bitdepth=8,
                        interlace=True), 64, "png", "Adam7")
    add_case(save_pypng(np.dstack([rgb16, (alpha.astype(np.uint16) << 8)]).reshape(h, -1),
                        "png_rgba16_interlaced.png", w, h, greyscale=False, alpha=True, bitdepth=16,
                        interlace=True), 64, "png", "Adam7")
    pal = flower.quantize(16)
    palette = [tuple(pal.getpalette()[3 * i:3 * i + 3]) for i in range(16)]
    add_case(save_pypng(np.asarray(pal), "png_palette4_interlaced.png", w, h, palette=palette, bitdepth=4,
                        interlace=True), 64, "png", "Adam7, 4-bit palette")
    add_case(save_pil(photo("flower.jpg", (1, 1)), "png_1x1.png"), 64, "png")
    add_case(save_pil(photo("china.jpg", (13, 200)), "png_tall.png"), 64, "png")
    add_case(save_pil(photo("flower.jpg", (210, 140)), "png_mid_rgb8.png"), 64, "png", "downscale ×2.2")

    # --- Training crops (fixed boxes) ---------------------------------------------------------
    add_crop(OUT / "images/jpeg_444.jpg", 64, (3, 7, 72, 96))
    add_crop(OUT / "images/png_rgba8.png", 64, (0, 10, 80, 101))
    add_crop(OUT / "images/png_palette8.png", 48, (5, 5, 70, 90))
    add_crop(OUT / "images/jpeg_mid_420.jpg", 96, (20, 31, 190, 250))

    # --- Formats MMImage refuses: real files ----------------------------------------------------
    small = photo("flower.jpg", (16, 12))
    small.save(OUT / "bad/flower.gif")
    small.save(OUT / "bad/flower.bmp")
    small.save(OUT / "bad/flower.webp")
    small.save(OUT / "bad/flower.tiff")

    index = {
        "generator": "tools/make_image_fixtures.py",
        "seed": SEED,
        "versions": {"pillow": PIL.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
                     "zlib": features.version("zlib"), "open_clip": open_clip.__version__,
                     "torchvision": torchvision.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                     "pypng": png.__version__},
        "normalised": {"file": "images/china.jpg", "size": 224, "expected": "expected/china_224_openai.npy",
                       "mean": list(open_clip.constants.OPENAI_DATASET_MEAN),
                       "std": list(open_clip.constants.OPENAI_DATASET_STD)},
        "cases": cases,
        "decodes": decodes,
        "crops": crops,
        "unsupported": {"bad/flower.gif": "GIF", "bad/flower.bmp": "BMP", "bad/flower.webp": "WebP",
                        "bad/flower.tiff": "TIFF"},
    }
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{len(cases)} eval cases, {len(decodes)} decodes, {len(crops)} crops; {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
