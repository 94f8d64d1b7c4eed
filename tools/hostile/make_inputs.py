#!/usr/bin/env python3
"""Writes a folder of hostile inputs for mm's embed / zeroshot / eval commands (see check.py).

    python3 tools/hostile/make_inputs.py --mm .build/release/mm OUT

Standard library only. A small model is trained with mm itself (2 steps of mm-tiny on the
bundled shapes data); broken checkpoints are derived from it byte by byte: every float
NaN, a zeroed image projection, truncation. Files that are not files (a FIFO, /dev/zero,
a directory, a 4 GiB sparse file) stand where images, labels, manifests and checkpoints go.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ROOT / "datasets" / "shapes"


def safetensors_read(path):
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def safetensors_write(path, header, body):
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + bytes(body))


def with_floats(header, body, keys, value):
    """`body` with every F32 element of `keys` (all when None) set to `value`."""
    body = bytearray(body)
    bits = struct.pack("<f", value)
    for key, entry in header.items():
        if key == "__metadata__" or entry["dtype"] != "F32" or (keys is not None and key not in keys):
            continue
        begin, end = entry["data_offsets"]
        body[begin:end] = bits * ((end - begin) // 4)
    return body


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mm", required=True)
    parser.add_argument("out")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = dict(os.environ, MM_THREADS="2")

    # A real (if barely trained) model.
    subprocess.run([args.mm, "train", str(SHAPES / "train.tsv"), "--model", "mm-tiny", "--steps", "2",
                    "--batch-size", "8", "--warmup", "1", "-o", str(out / "run")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    good = out / "good.safetensors"
    shutil.copy(out / "run" / "checkpoints" / "epoch_1.safetensors", good)
    header, body = safetensors_read(good)
    safetensors_write(out / "nan.safetensors", header, with_floats(header, body, None, float("nan")))
    safetensors_write(out / "inf.safetensors", header, with_floats(header, body, None, float("inf")))
    safetensors_write(out / "zero_proj.safetensors", header, with_floats(header, body, {"visual.proj", "text_projection"}, 0.0))
    data = good.read_bytes()
    (out / "truncated.safetensors").write_bytes(data[: len(data) // 2])

    # Images: real ones, and things named like images that are not.
    images = out / "images"
    images.mkdir()
    for i in range(4):
        shutil.copy(SHAPES / "images" / "test" / f"{i:06d}.jpg", images / f"ok{i}.jpg")
    os.mkfifo(out / "fifo.jpg")
    os.symlink("/dev/zero", out / "zero.jpg")
    with open(out / "sparse.jpg", "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(4 << 30)
    (out / "two_bytes.jpg").write_bytes(b"\xff\xd8")
    (out / "text.jpg").write_text("this is a caption, not a photo\n")
    (out / "dir.jpg").mkdir()
    shutil.copy(images / "ok0.jpg", out / "new\nline.jpg")

    # Labels and templates.
    labels = (SHAPES / "labels.txt").read_text().splitlines()
    (out / "labels.txt").write_text("\n".join(labels) + "\n")
    (out / "labels_crlf.txt").write_bytes(("\r\n".join(labels) + "\r\n").encode())
    (out / "labels_cr.txt").write_bytes(("\r".join(labels) + "\r").encode())
    (out / "labels_binary.txt").write_bytes(b"\xff\xfe\x00c\x00a\x00t")
    (out / "labels_empty.txt").write_text("\n \n|\n")
    os.mkfifo(out / "labels_fifo.txt")
    os.symlink("/dev/zero", out / "labels_zero.txt")
    (out / "templates_nobraces.txt").write_text("a photo of a {}.\na photo\n")
    (out / "templates_crlf.txt").write_bytes(b"a photo of a {}.\r\nart of the {}.\r\n")

    # Manifests.
    lines = (SHAPES / "test_labels.tsv").read_text().splitlines()[:9]
    rows = [line.split("\t") for line in lines]
    fixed = [rows[0]] + [[str(SHAPES / r[0]), r[1]] for r in rows[1:]]
    (out / "labels_manifest.tsv").write_text("\n".join("\t".join(r) for r in fixed) + "\n")
    (out / "cr_only.tsv").write_bytes(("\r".join("\t".join(r) for r in fixed) + "\r").encode())
    (out / "no_header_cr.tsv").write_bytes(("\r".join(f"x{i}.jpg, caption {i} " * 20 for i in range(200))).encode())
    pairs = (SHAPES / "test.tsv").read_text().splitlines()[:9]
    prow = [p.split("\t") for p in pairs]
    (out / "pairs.tsv").write_text("\n".join([pairs[0]] + [f"{SHAPES / r[0]}\t{r[1]}" for r in prow[1:]]) + "\n")
    os.mkfifo(out / "fifo.tsv")
    os.symlink("/dev/zero", out / "zero.tsv")
    (out / "fifo_image.tsv").write_text(f"filepath\tlabel\n{out / 'fifo.jpg'}\t{fixed[1][1]}\n{fixed[1][0]}\t{fixed[1][1]}\n")
    (out / "texts.txt").write_bytes(b"a red circle\r\na blue square\rgreen star\n")
    print(f"hostile inputs in {out}")


if __name__ == "__main__":
    main()
