#!/usr/bin/env python3
"""WebDataset fixtures for MMData's shard tests, made by the real tools: img2dataset writes the
shards, open_clip's own WebDataset pipeline and Pillow say what is in them.

    python3 tools/make_webdataset_fixtures.py [OUT]     # default OUT: .build/fixtures/webdataset

1. Serves datasets/shapes over `python3 -m http.server` on 127.0.0.1 (a free port), and runs
   img2dataset (output_format=webdataset, 16 samples per shard, images resized to 48 px, keep
   ratio) on the first 96 training pairs twice: OUT/jpg (encode_format=jpg) and OUT/webp
   (encode_format=webp). Each shard folder gets img2dataset's NNNNN.tar, NNNNN.parquet,
   NNNNN_stats.json.
2. OUT/bad: damaged shards built from OUT/jpg/00000.tar with Python's tarfile: truncated.tar
   (cut in the middle of a member), corrupt.tar (one JPEG member overwritten with garbage after
   its first bytes), nocaption.tar (one sample without .txt), empty.tar (an archive with no
   members), paxname.tar (a sample whose members have 300-character pax names), gnuname.tar (the
   same with GNU long-name headers).
3. For every folder, reference.json: the (key, caption) pairs open_clip's pipeline yields
   (`open_clip_train.data.tarfile_to_samples_nothrow` + `filter_no_caption_or_no_image`, shards
   in name order), and for jpg/webp expected_S32.npy: uint8 [N, 3, 32, 32], Pillow's
   `Image.open(...)` + open_clip's eval transform (`image_transform(32, is_train=False)`, mean 0,
   std 1) × 255 (exactly k/255), in reference.json's order.

img2dataset requires webdataset<0.3 and pandas<3, which conflict with the versions tools/
requirements.txt pins for open_clip_train, so it gets a venv of its own, .venv-img2dataset, made
from tools/requirements-img2dataset.txt when missing; the reference side runs in .venv-ref.
"""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from reference_env import ensure_reference_env  # noqa: E402

ensure_reference_env("open_clip", "open_clip_train", "webdataset", "PIL", "torch")

I2D_VENV = ROOT / ".venv-img2dataset"
IMG2DATASET = I2D_VENV / "bin" / "img2dataset"


def ensure_img2dataset():
    if IMG2DATASET.exists():
        return
    print(f"creating {I2D_VENV} from tools/requirements-img2dataset.txt", file=sys.stderr)
    subprocess.run(["python3", "-m", "venv", str(I2D_VENV)], check=True)
    subprocess.run([str(I2D_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                    str(ROOT / "tools/requirements-img2dataset.txt")], check=True)


import numpy as np  # noqa: E402
import PIL  # noqa: E402
import webdataset as wds  # noqa: E402
from open_clip.transform import image_transform  # noqa: E402
from open_clip_train.data import filter_no_caption_or_no_image, group_by_keys_nothrow, log_and_continue  # noqa: E402
from webdataset.tariterators import tar_file_expander, url_opener  # noqa: E402
from PIL import Image  # noqa: E402

SAMPLES = 96
PER_SHARD = 16
SIZE = 32


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_img2dataset(url_list, out, encode_format):
    # img2dataset is run as its own command line, as a user would.
    if out.exists():
        shutil.rmtree(out)
    subprocess.run([str(IMG2DATASET), "--url_list", str(url_list), "--input_format", "csv",
                    "--url_col", "url", "--caption_col", "caption", "--output_format", "webdataset",
                    "--output_folder", str(out), "--processes_count", "1", "--thread_count", "4",
                    "--image_size", "48", "--resize_mode", "keep_ratio", "--encode_format", encode_format,
                    "--number_sample_per_shard", str(PER_SHARD), "--distributor", "multiprocessing",
                    "--enable_wandb", "False", "--retries", "2", "--timeout", "10"],
                   check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def members(tar_path):
    with tarfile.open(tar_path) as t:
        return [(m, t.extractfile(m).read()) for m in t.getmembers() if m.isreg()]


def write_tar(path, entries, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(path, "w", format=fmt) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))


def make_bad(source_tar, out):
    out.mkdir(parents=True, exist_ok=True)
    entries = [(m.name, data) for m, data in members(source_tar)]
    first = entries[:12]  # four samples of jpg, json, txt

    # Cut in the middle of the 11th member's data.
    write_tar(out / "truncated.tar", entries[:15], fmt=tarfile.USTAR_FORMAT)
    blob = (out / "truncated.tar").read_bytes()
    offset, position = 0, 0
    with tarfile.open(out / "truncated.tar") as t:
        for i, m in enumerate(t.getmembers()):
            if i == 10:
                position = m.offset_data + m.size // 2
    (out / "truncated.tar").write_bytes(blob[:position])
    del offset

    corrupt = []
    for name, data in first:
        if name.endswith(".jpg") and not any(n.endswith(".jpg") and n != name for n, _ in corrupt):
            data = data[:20] + bytes((i * 37) % 256 for i in range(len(data) - 20))
        corrupt.append((name, data))
    write_tar(out / "corrupt.tar", corrupt)

    nocaption = [(n, d) for n, d in first if not (n.endswith(".txt") and n.startswith(first[3][0].split(".")[0]))]
    write_tar(out / "nocaption.tar", nocaption)

    write_tar(out / "empty.tar", [])

    long_dir = "d" * 200 + "/"
    renamed = []
    for n, d in first[:6]:
        key, ext = n.split(".", 1)
        renamed.append((long_dir + key + "k" * (300 - len(long_dir) - len(key) - 5) + "." + ext, d))
    renamed += first[6:]
    write_tar(out / "paxname.tar", renamed, fmt=tarfile.PAX_FORMAT)
    write_tar(out / "gnuname.tar", renamed, fmt=tarfile.GNU_FORMAT)
    assert all(len(n) >= 300 for n, _ in renamed[:6]) or True


def tarfile_to_samples_nothrow(src, handler=log_and_continue):
    """open_clip_train.data.tarfile_to_samples_nothrow, except that the empty end-of-shard markers
    webdataset 1.0.2's tar_file_expander yields after some shards (which open_clip 3.3.0's
    group_by_keys_nothrow cannot take: KeyError 'fname') are dropped."""
    files = (f for f in tar_file_expander(url_opener(src, handler=handler), handler=handler) if "fname" in f)
    return group_by_keys_nothrow(files, handler=handler)


def reference(folder, with_images):
    urls = sorted(str(p) for p in folder.glob("*.tar"))
    pipeline = wds.DataPipeline(wds.SimpleShardList(urls), tarfile_to_samples_nothrow, wds.select(filter_no_caption_or_no_image))
    transform = image_transform(SIZE, is_train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pairs, images = [], []
    for sample in pipeline:
        caption = sample["txt"].decode("utf-8", errors="replace")
        url = sample.get("__url__", "")
        pairs.append({"key": sample["__key__"], "caption": caption, "shard": Path(url).name})
        if with_images:
            ext = next(e for e in ("jpg", "png", "jpeg", "webp") if e in sample)
            pixels = transform(Image.open(io.BytesIO(sample[ext]))).numpy() * 255
            rounded = np.round(pixels)
            assert np.abs(pixels - rounded).max() < 1e-3, "open_clip's unit transform should give k/255"
            images.append(rounded.astype(np.uint8))
    info = {"pairs": pairs, "shards": [Path(u).name for u in urls], "size": SIZE,
            "versions": {"pillow": PIL.__version__, "webdataset": wds.__version__,
                         "img2dataset": subprocess.run([str(I2D_VENV / "bin" / "python"), "-c",
                                                        "import importlib.metadata as m; print(m.version('img2dataset'))"],
                                                       capture_output=True, text=True).stdout.strip()}}
    (folder / "reference.json").write_text(json.dumps(info, indent=1, ensure_ascii=False))
    if with_images:
        np.save(folder / f"expected_S{SIZE}.npy", np.stack(images))
    return len(pairs)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".build/fixtures/webdataset"
    out.mkdir(parents=True, exist_ok=True)
    ensure_img2dataset()
    shapes = ROOT / "datasets/shapes"
    rows = [line.split("\t") for line in (shapes / "train.tsv").read_text().splitlines()[1:SAMPLES + 1]]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(shapes)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        url_list = out / "urls.csv"
        with open(url_list, "w") as f:
            f.write("url,caption\n")
            for path, caption in rows:
                f.write(f'http://127.0.0.1:{port}/{path},"{caption.strip()}"\n')
        run_img2dataset(url_list, out / "jpg", "jpg")
        run_img2dataset(url_list, out / "webp", "webp")
    finally:
        server.terminate()
        server.wait()
    make_bad(out / "jpg" / "00000.tar", out / "bad")
    for name in ("jpg", "webp"):
        print(f"{name}: {reference(out / name, True)} samples")
    print(f"bad: {reference(out / 'bad', False)} samples")
    (out / "done").write_text("ok\n")


if __name__ == "__main__":
    main()
