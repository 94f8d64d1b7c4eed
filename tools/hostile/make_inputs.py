#!/usr/bin/env python3
"""Writes a folder of hostile inputs for mm's embed / zeroshot / eval commands (see check.py).

    python3 tools/hostile/make_inputs.py --mm .build/release/mm OUT

Standard library only. A small model is trained with mm itself (2 steps of mm-tiny on the
bundled shapes data); broken checkpoints are derived from it byte by byte: every float
NaN, a zeroed image projection, truncation. Files that are not files (a FIFO, /dev/zero,
a directory, a 4 GiB sparse file) stand where images, labels, manifests and checkpoints go.
"""
import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
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
        for mount in ("full", "readonly", "readonly_run"):
            subprocess.run(["umount", str(out / mount)], stderr=subprocess.DEVNULL, check=False)
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

    # Image folders: a symlink loop, a zero-byte image, a FIFO named like an image.
    loop = out / "loop"
    loop.mkdir()
    shutil.copy(images / "ok0.jpg", loop / "a.jpg")
    os.symlink(".", loop / "again")
    odd = out / "odd_images"
    odd.mkdir()
    shutil.copy(images / "ok1.jpg", odd / "b.jpg")
    (odd / "empty.jpg").write_bytes(b"")
    os.mkfifo(odd / "pipe.jpg")

    # Indexes: a good one, and damaged copies.
    subprocess.run([args.mm, "index", "build", str(images), "-c", str(good), "-o", str(out / "good.mmi")], check=True,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = (out / "good.mmi").read_bytes()
    (out / "truncated.mmi").write_bytes(index[: len(index) // 2])
    flipped = bytearray(index)
    flipped[len(flipped) // 2] ^= 0xFF
    (out / "flipped.mmi").write_bytes(bytes(flipped))
    (out / "empty.mmi").write_bytes(b"")
    os.mkfifo(out / "fifo.mmi")
    os.symlink("/dev/zero", out / "zero.mmi")
    (out / "dir.mmi").mkdir()

    # clip-retrieval's indices_paths.json, hostile.
    (out / "indices_not_json.json").write_text("{not json")
    (out / "indices_list.json").write_text('["good.mmi"]')
    (out / "indices_bad_name.json").write_text('{"../up": "good.mmi"}')
    (out / "indices_fifo_index.json").write_text('{"pipe": "fifo.mmi"}')
    (out / "indices_missing.json").write_text('{"gone": "nowhere.mmi"}')
    (out / "indices_deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (out / "indices_bom.json").write_bytes(b"\xff\xfe{\x00}\x00")

    # Labels files of other encodings and shapes.
    (out / "labels_utf16.txt").write_bytes("\n".join(labels).encode("utf-16"))
    (out / "labels_nul.txt").write_bytes(b"circle\x00square\ntriangle\n")
    (out / "labels_bom.txt").write_bytes(b"\xef\xbb\xbf" + ("\n".join(labels) + "\n").encode())
    (out / "labels_dup.txt").write_text("circle\ncircle\n\nCircle\n")
    (out / "labels_long_line.txt").write_text("x" * (8 << 20))

    # Training: manifests, run folders to resume and options.
    (out / "empty.tsv").write_text("")
    (out / "header_only.tsv").write_text("filepath\ttitle\n")
    (out / "utf16.tsv").write_bytes("\n".join([pairs[0]] + [f"{SHAPES / r[0]}\t{r[1]}" for r in prow[1:]]).encode("utf-16"))
    (out / "binary.tsv").write_bytes(bytes(range(256)) * 64)
    runs = out / "runs"
    runs.mkdir()
    (runs / "empty").mkdir()

    def run_copy(name):
        shutil.copytree(out / "run", runs / name, symlinks=True)
        return runs / name

    (run_copy("run_garbage") / "run.json").write_text("{this is not json")
    r = run_copy("run_fifo")
    (r / "run.json").unlink()
    os.mkfifo(r / "run.json")
    r = run_copy("run_zero")
    (r / "run.json").unlink()
    os.symlink("/dev/zero", r / "run.json")
    for name, change in [("run_types", lambda c: c["training"].update(batchSize="many")),
                         ("run_huge_batch", lambda c: c["training"].update(batchSize=10 ** 12)),
                         ("run_negative_epochs", lambda c: c["training"].update(epochs=-5)),
                         ("run_nan_lr", lambda c: c["training"].update(learningRate="nan")),
                         ("run_pairs_fifo", lambda c: c["data"].update(pairs=str(out / "fifo.tsv"))),
                         ("run_vocab_zero", lambda c: c["model"].update(vocab="/dev/zero"))]:
        r = run_copy(name)
        config = json.loads((r / "run.json").read_text())
        change(config)
        (r / "run.json").write_text(json.dumps(config))
    r = run_copy("run_log_fifo")
    (r / "log.jsonl").unlink()
    os.mkfifo(r / "log.jsonl")
    r = run_copy("run_log_garbage")
    (r / "log.jsonl").write_bytes(b"\x00\xff garbage\n{\"event\": 3}\n" + (r / "log.jsonl").read_bytes() if (r / "log.jsonl").exists() else b"")
    latest = out / "run" / "checkpoints" / "latest.safetensors"
    if latest.exists():
        r = run_copy("latest_truncated")
        data = latest.read_bytes()
        (r / "checkpoints" / "latest.safetensors").write_bytes(data[: len(data) // 3])
        r = run_copy("latest_fifo")
        (r / "checkpoints" / "latest.safetensors").unlink()
        os.mkfifo(r / "checkpoints" / "latest.safetensors")
        r = run_copy("latest_nan")
        h, b = safetensors_read(latest)
        safetensors_write(r / "checkpoints" / "latest.safetensors", h, with_floats(h, b, None, float("nan")))
        r = run_copy("latest_missing")
        (r / "checkpoints" / "latest.safetensors").unlink()
    (out / "garbage_model.json").write_text('{"embed_dim": "wide"}')
    (out / "a_file").write_text("not a folder\n")

    # A shard whose second sample's image is empty.
    with tarfile.open(out / "empty_member.tar", "w") as tar:
        for key, image in [("a", (images / "ok0.jpg").read_bytes()), ("b", b"")]:
            for name, data in [(f"{key}.jpg", image), (f"{key}.txt", b"a shape")]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    # Filesystems that refuse writes: a full one, a read-only one, and a run folder made
    # read-only after it was written (root only; else skipped).
    for name, options in [("full", "size=64k"), ("readonly", "size=64k,ro"), ("readonly_run", "size=1g")]:
        (out / name).mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(out / name)], stderr=subprocess.DEVNULL).returncode != 0:
            (out / name).rmdir()
    if (out / "readonly_run").exists():
        shutil.copytree(out / "run", out / "readonly_run" / "run", symlinks=True)
        subprocess.run(["mount", "-o", "remount,ro", str(out / "readonly_run")], check=True)
    if (out / "full").exists():
        with open(out / "full" / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
    print(f"hostile inputs in {out}")


if __name__ == "__main__":
    main()
