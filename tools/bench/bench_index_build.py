#!/usr/bin/env python3
"""`mm index build` of a folder of JPEG photos (decode + preprocess + ViT-B-32 encode) against
open_clip + PIL with a 2-worker torch DataLoader on the same folder, in the same run.

    .venv-ref/bin/python tools/bench/bench_index_build.py [--mm .build/release/mm] [--images 192]
        [--checkpoint .build/fixtures/vitb32/vitb32.safetensors]   # `make fixtures-vitb32`

Photos: --images photo-like JPEGs with both sides 256–640 px (quality 85–95, 4:2:0): random
crops (aspect 3:4…3:2), scales, flips and colour shifts of scikit-learn's two sample photos
(640×427), made here with Pillow (seeded).
Both sides use the same weights (the ViT-B-32 fixture: open_clip's architecture, perturbed
random weights — throughput does not depend on the values), batches of 32, 2 threads.

Reference: `open_clip.create_model("ViT-B-32")` with the weights loaded, the eval transform
`image_transform(224, is_train=False)` on `Image.open(path).convert("RGB")` in a DataLoader with
num_workers=2, `encode_image` under `torch.inference_mode()`, torch.set_num_threads(2); timed from
the DataLoader's creation to the last batch (model already loaded).
Ours: `mm index build FOLDER -c CHECKPOINT -o OUT.mmi --batch-size 32`, whole process, minus the
same command on one photo (so the model load and start-up are not counted): images/s =
(N − 1) / (t_N − t_1). Each side runs --rounds times; the median is reported. Also prints the
cosine between mm's and open_clip's embedding of each photo (same work on both sides).
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import numpy as np
    import open_clip
    import torch
    from open_clip.transform import image_transform
    from PIL import Image, ImageEnhance
    from safetensors.torch import load_file
    from sklearn.datasets import load_sample_image
except ImportError as error:
    sys.exit(f"bench_index_build.py: {error} — run `make venv` and use .venv-ref/bin/python")


def make_photos(directory, count, seed=0):
    rng = random.Random(seed)
    sources = [Image.fromarray(load_sample_image(n)) for n in ("china.jpg", "flower.jpg")]
    for i in range(count):
        image = sources[i % 2]
        w, h = image.size  # 640×427
        # A crop of aspect 3:4…3:2, scaled so that both sides are 256–640 px.
        ch = rng.randint(h // 2, h)
        cw = min(w, round(ch * rng.uniform(0.75, 1.5)))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        photo = image.crop((left, top, left + cw, top + ch))
        scale = rng.uniform(256 / min(cw, ch), 640 / max(cw, ch))
        photo = photo.resize((round(cw * scale), round(ch * scale)), Image.BICUBIC)
        if rng.random() < 0.5:
            photo = photo.transpose(Image.FLIP_LEFT_RIGHT)
        photo = ImageEnhance.Color(photo).enhance(rng.uniform(0.6, 1.4))
        photo = ImageEnhance.Brightness(photo).enhance(rng.uniform(0.8, 1.2))
        photo.save(directory / f"photo{i:05d}.jpg", quality=rng.randint(85, 95), subsampling=2)


class Photos(torch.utils.data.Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB"))


def reference(model, paths, batch_size):
    loader = torch.utils.data.DataLoader(
        Photos(paths, image_transform(224, is_train=False)), batch_size=batch_size, num_workers=2)
    started = time.perf_counter()
    features = []
    with torch.inference_mode():
        for batch in loader:
            features.append(model.encode_image(batch, normalize=True))
    return time.perf_counter() - started, torch.cat(features).numpy()


def run_mm(args, folder, out):
    command = [args.mm, "index", "build", str(folder), "-c", args.checkpoint, "-o", str(out), "--batch-size", "32"]
    config = Path(args.checkpoint).with_name("vitb32.json")
    if config.exists():
        command += ["--model", str(config)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mm", default=str(ROOT / ".build/release/mm"))
    parser.add_argument("--checkpoint", default=str(ROOT / ".build/fixtures/vitb32/vitb32.safetensors"))
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, one = tmp / "photos", tmp / "one"
        folder.mkdir()
        one.mkdir()
        make_photos(folder, args.images)
        paths = sorted(folder.glob("*.jpg"))
        os.link(paths[0], one / paths[0].name)
        sizes = [Image.open(p).size for p in paths]

        model = open_clip.create_model("ViT-B-32", pretrained=None)
        model.load_state_dict(load_file(args.checkpoint))
        model.eval()
        reference(model, paths[:8], 32)  # warm-up (page cache, torch kernels)
        ref_times, ref_features = [], None
        for _ in range(args.rounds):
            seconds, ref_features = reference(model, paths, 32)
            ref_times.append(seconds)

        mm_times = []
        for _ in range(args.rounds):
            full = run_mm(args, folder, tmp / "all.mmi")
            single = run_mm(args, one, tmp / "one.mmi")
            mm_times.append(full - single)
        subprocess.run([args.mm, "index", "export", str(tmp / "all.mmi"), "-o", str(tmp / "all.npy")], check=True)
        names = (tmp / "all.npy.txt").read_text().split("\n")[:-1]
        ours = np.load(tmp / "all.npy")
        order = {Path(n).name: i for i, n in enumerate(names)}
        cosines = [float(ours[order[p.name]] @ ref_features[i]) for i, p in enumerate(paths)]

    ref_rate = args.images / statistics.median(ref_times)
    mm_rate = (args.images - 1) / statistics.median(mm_times)
    print(json.dumps({
        "images": args.images, "sizes": f"{min(min(s) for s in sizes)}–{max(max(s) for s in sizes)} px",
        "open_clip_dataloader_s": [round(t, 2) for t in ref_times], "mm_s_minus_one_photo": [round(t, 2) for t in mm_times],
        "open_clip_images_per_s": round(ref_rate, 2), "mm_images_per_s": round(mm_rate, 2),
        "mm_speed": f"{mm_rate / ref_rate:.2f}× open_clip", "min_cosine_mm_vs_open_clip": round(min(cosines), 5),
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__, "threads": 2},
    }))


if __name__ == "__main__":
    main()
