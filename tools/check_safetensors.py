#!/usr/bin/env python3
"""The Python half of mm's safetensors tests, using the reference `safetensors` library.

    check_safetensors.py make-fixtures [DIR]    write the reading fixtures (torch + safetensors)
    check_safetensors.py verify FILE EXPECTED   check a file written by mm against a JSON listing
    check_safetensors.py bench-file FILE [MB]   write a large F32+F16 file and time loading it

`make-fixtures` writes, into DIR (default Tests/MMTensorTests/Fixtures/safetensors):
  mixed.safetensors   F32, F16, BF16, F64, I32 and I64 keys plus __metadata__, saved by
                      safetensors.torch.save_file;
  mixed.json          for each key its dtype, shape and the values torch gives when converting
                      it to float32 (as uint32 bit patterns) or to int32; for the "*.large" keys,
                      too long to list, torch's float32 conversion is stored in the safetensors
                      file itself under "<key>.expected";
  i64_overflow.safetensors   an I64 key holding 2^31, which mm must refuse to narrow.

`verify` loads FILE with safetensors (numpy and torch) and checks keys, dtypes, shapes, bit-exact
values and metadata against EXPECTED, written by the Swift test:
  {"metadata": {...}, "tensors": {key: {"dtype": "F32"|"I32", "shape": [...], "values": [...]}}}
with F32 values as uint32 bit patterns. It also re-saves the tensors with the Python library
and checks that the header (ignoring metadata order) and data bytes are identical.
Exits 1 with a one-line reason on any difference.
"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from reference_env import ensure_reference_env  # noqa: E402

ensure_reference_env("numpy", "safetensors", "torch")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import save as np_save  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

SEED = 20240607
INF, NAN = float("inf"), float("nan")


def float32_bits(t):
    """A tensor converted to float32 by torch, as a list of uint32 bit patterns."""
    return t.to(torch.float32).contiguous().view(torch.int32).numpy().view(np.uint32).ravel().tolist()


def make_fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(SEED)
    special = [0.0, -0.0, 1.0, -2.5, 0.1, 1 / 3, INF, -INF, NAN]
    tensors = {
        "f32.matrix": torch.tensor([[1.5, -0.0, 3.4e38], [1e-45, NAN, -INF]], dtype=torch.float32),
        # Largest normal, smallest subnormal and a subnormal of each 16-bit format.
        "f16.values": torch.tensor(special + [65504.0, 6e-8, 3e-5], dtype=torch.float16).reshape(3, 4),
        "bf16.values": torch.tensor(special + [3.38e38, 1e-40, 9.2e-41], dtype=torch.bfloat16).reshape(3, 4),
        # Values that round on narrowing, overflow to inf, or underflow to zero.
        "f64.values": torch.tensor([0.1, 1 / 3, -2.0 ** 0.5, 1e300, -1e300, 1e-50, 1e-40, NAN],
                                   dtype=torch.float64).reshape(2, 2, 2),
        "f16.scalar": torch.tensor(-0.33325, dtype=torch.float16),
        "f32.empty": torch.zeros(0, 3, dtype=torch.float32),
        "i32.ids": torch.tensor([[49406, 320, 49407], [0, -1, 2 ** 31 - 1]], dtype=torch.int32),
        "i64.ids": torch.tensor([-2 ** 31, 2 ** 31 - 1, -1, 0, 49407], dtype=torch.int64),
        # Longer than mm's 65,536-element conversion block, so the block loop is exercised.
        "f16.large": torch.randn(70_001, generator=g).mul(100).to(torch.float16),
        "bf16.large": torch.randn(70_001, generator=g).mul(1e6).to(torch.bfloat16),
    }
    expected = {"seed": SEED, "torch": torch.__version__, "safetensors": safetensors.__version__,
                "tensors": {}}
    for key, t in list(tensors.items()):
        dtype = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}[t.dtype]
        if key.endswith(".large"):
            tensors[key + ".expected"] = t.to(torch.float32)
            continue
        values = t.ravel().tolist() if dtype.startswith("I") else float32_bits(t)
        expected["tensors"][key] = {"dtype": dtype, "shape": list(t.shape), "values": values}
    metadata = {"format": "pt", "note": "fixture for mm — ünïcödé ✓, \"quoted\"\n"}
    expected["metadata"] = metadata

    save_file(tensors, os.path.join(out_dir, "mixed.safetensors"), metadata=metadata)
    with open(os.path.join(out_dir, "mixed.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    save_file({"ids": torch.tensor([1, 2 ** 31, 3], dtype=torch.int64)},
              os.path.join(out_dir, "i64_overflow.safetensors"))
    print(f"wrote fixtures to {out_dir} (torch {torch.__version__}, safetensors {safetensors.__version__})")


def fail(message):
    print(f"check_safetensors verify: {message}")
    sys.exit(1)


def verify(path, expected_path):
    with open(expected_path) as f:
        expected = json.load(f)
    want = expected["tensors"]

    with safe_open(path, framework="np") as f:
        metadata = f.metadata() or {}
        loaded = {k: f.get_tensor(k) for k in f.keys()}
    if metadata != expected.get("metadata", {}):
        fail(f"metadata {metadata!r} != expected {expected.get('metadata')!r}")
    if sorted(loaded) != sorted(want):
        fail(f"keys {sorted(loaded)} != expected {sorted(want)}")
    for key, spec in want.items():
        a = loaded[key]
        dtype = {"F32": np.float32, "I32": np.int32}[spec["dtype"]]
        if a.dtype != dtype:
            fail(f"{key}: dtype {a.dtype} != {spec['dtype']}")
        if list(a.shape) != spec["shape"]:
            fail(f"{key}: shape {list(a.shape)} != {spec['shape']}")
        if spec["dtype"] == "F32":
            got, ref = a.view(np.uint32).ravel(), np.array(spec["values"], dtype=np.uint32)
        else:
            got, ref = a.ravel(), np.array(spec["values"], dtype=np.int32)
        if got.shape != ref.shape or not np.array_equal(got, ref):
            bad = int(np.argmax(got != ref)) if got.shape == ref.shape else 0
            fail(f"{key}: values differ at flat index {bad}: got {got[:8].tolist()}, want {ref[:8].tolist()}")

    # The torch loader must agree too (it takes a different path through the library).
    from safetensors.torch import load_file
    for key, t in load_file(path).items():
        a = t.numpy()
        if a.dtype != loaded[key].dtype or a.shape != loaded[key].shape or a.tobytes() != loaded[key].tobytes():
            fail(f"{key}: torch and numpy loaders disagree")

    # Same layout as the Python library's own writer: header entries, padding and data bytes.
    with open(path, "rb") as f:
        ours = f.read()
    theirs = np_save(loaded, metadata=metadata or None)
    n_ours, n_theirs = (int.from_bytes(b[:8], "little") for b in (ours, theirs))
    if n_ours % 8:
        fail(f"header length {n_ours} is not a multiple of 8, so the data is not 8-byte aligned")
    if n_ours != n_theirs:
        fail(f"header length {n_ours} != {n_theirs}, the length of the Python library's header")
    h_ours, h_theirs = ours[8:8 + n_ours], theirs[8:8 + n_theirs]
    if json.loads(h_ours) != json.loads(h_theirs) or h_ours.rstrip(b" ") != h_ours.rstrip():
        fail(f"header {h_ours[:200]!r}… differs from Python's {h_theirs[:200]!r}…")
    if ours[8 + n_ours:] != theirs[8 + n_theirs:]:
        fail("data section differs from the one the Python library writes")
    print(f"check_safetensors verify: OK, {len(want)} tensors and {len(metadata)} metadata entries "
          f"match (safetensors {safetensors.__version__})")


def bench_file(path, megabytes):
    """Writes ~MB of F32 and F16 tensors shaped like a ViT checkpoint, then times loading it."""
    g = torch.Generator().manual_seed(SEED)
    tensors = {}
    for layer in range(max(1, round(megabytes / 24))):  # 16 MiB of F32 and 8 MiB of F16 each
        tensors[f"layer{layer:03d}.f32"] = torch.randn(1024, 4096, generator=g)
        tensors[f"layer{layer:03d}.f16"] = torch.randn(1024, 4096, generator=g).half()
    save_file(tensors, path)
    from safetensors.torch import load_file
    torch.set_num_threads(2)
    size = os.path.getsize(path)

    def best_of(runs, fn):
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    # load_file maps the file and copies nothing; what mm does (every tensor as float32 in its
    # own memory) is load_file plus a converting copy.
    load_file(path)  # warm the page cache
    lazy = best_of(3, lambda: load_file(path))
    full = best_of(3, lambda: [t.to(torch.float32, copy=True) for t in load_file(path).values()])
    print(f"{path}: {size / 2 ** 20:.0f} MiB, {len(tensors)} tensors; best of 3, 2 threads:\n"
          f"  safetensors.torch.load_file (mapped, not copied): {lazy:.3f} s\n"
          f"  load_file + .to(float32, copy=True):              {full:.3f} s ({size / full / 2 ** 30:.2f} GiB/s of file)")


def main():
    args = sys.argv[1:]
    if args[:1] == ["make-fixtures"] and len(args) <= 2:
        make_fixtures(args[1] if len(args) == 2 else
                      os.path.join(ROOT, "Tests", "MMTensorTests", "Fixtures", "safetensors"))
    elif args[:1] == ["verify"] and len(args) == 3:
        verify(args[1], args[2])
    elif args[:1] == ["bench-file"] and len(args) in (2, 3):
        bench_file(args[1], float(args[2]) if len(args) == 3 else 1024)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
