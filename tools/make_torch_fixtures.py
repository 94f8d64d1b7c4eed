#!/usr/bin/env python3
"""Golden PyTorch checkpoints for mm's reader (Sources/MMCLIP/TorchArchive.swift), made by the
pinned torch/open_clip/transformers, with the embeddings the reference computes from each.

    python3 tools/make_torch_fixtures.py                 # → Tests/MMCLIPTests/Fixtures/torch/
    python3 tools/make_torch_fixtures.py fuzz-seeds       # → tools/fuzz/corpus/torch_checkpoint/
    python3 tools/make_torch_fixtures.py verify-strict OUT.safetensors CONFIG.json IO.safetensors FIXTURE TOL
        (open_clip load_state_dict(strict=True) of a file `mm convert` wrote, embeddings compared)

Writes (small models, so everything is committed, ≈1.5 MB):
    tiny.json                 the open_clip config of the open_clip fixtures (GELU, 1 head of 64)
    epoch_3.pt                torch.save({"epoch", "name", "state_dict" (module.-prefixed), "optimizer"})
                              as open_clip's training loop writes it (DDP), AdamW state after 1 step
    plain.pt                  torch.save(model.state_dict())
    views.pt                  the same weights saved as non-contiguous views: transposed (W.t().contiguous().t()),
                              sliced out of a larger storage (storage offset), and biases sharing one storage
    openai_jit.pt             torch.jit.save(torch.jit.script(model)) of an open_clip QuickGELU model in
                              OpenAI's key layout (+ input_resolution/context_length/vocab_size buffers),
                              fp16 storages (open_clip.model.convert_weights_to_fp16), as OpenAI's ViT-B-32.pt
    hub/                      open_clip hub folder: open_clip_config.json (model_cfg + preprocess_cfg with a
                              non-default mean/std) + open_clip_pytorch_model.bin
    transformers/             config.json (CLIPConfig.save_pretrained) + pytorch_model.bin (torch.save of
                              transformers.CLIPModel's state_dict, as transformers < 5 wrote it)
    io.safetensors            in.images [2,3,8,8], ids.text [2,8] int32, and per fixture F:
                              F.image_embeds / F.text_embeds, normalised, as the reference loads F
                              (open_clip create_model(pretrained=F), load_openai_model(F, precision="fp32"),
                              create_model("local-dir:hub"), transformers CLIPModel.from_pretrained)
    hostile/                  pickles that would run code (os.system, posix.system, builtins.eval, a
                              __reduce__ of an unknown class, subprocess) — each would create
                              /tmp/mm-torch-marker-<name> if executed — and broken archives (truncated,
                              wrong magic, a member whose declared size exceeds the file, a missing
                              storage, big-endian)
"""

import io as iolib
import json
import logging
import math
import os
import pickle
import shutil
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from reference_env import ensure_reference_env, with_sorted_header  # noqa: E402

ensure_reference_env("open_clip", "safetensors", "torch", "transformers")

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save  # noqa: E402

transformers.logging.set_verbosity_error()
logging.disable(logging.WARNING)

OUT = ROOT / "Tests/MMCLIPTests/Fixtures/torch"
SEED = 20261127
# One head per tower (heads = max(width / 64, 1), what shapes imply), so that inferring the config
# from the shapes is exact; one block per tower keeps the files small.
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 8, "layers": 1, "width": 32, "patch_size": 4, "head_width": 32, "mlp_ratio": 1.0},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 1, "layers": 1, "mlp_ratio": 1.0},
}
# The OpenAI-layout model, as load_openai_model builds it: 64-wide heads, mlp_ratio 4, QuickGELU.
OPENAI = {"embed_dim": 32, "quick_gelu": True,
          "vision_cfg": {"image_size": 8, "layers": 1, "width": 64, "patch_size": 4, "head_width": 64},
          "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 1, "layers": 1}}
SOT, EOT = 62, 63
MARKER = "/tmp/mm-torch-marker-"
PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic", "resize_mode": "shortest"}


def register(config, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)


def perturbed(name):
    torch.manual_seed(SEED)
    model = open_clip.create_model(name, pretrained=None).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key != "logit_scale":
                p.add_(0.1 * torch.randn_like(p))
    return model


def embeds(model, images, ids):
    with torch.no_grad():
        return model.encode_image(images, normalize=True), model.encode_text(ids, normalize=True)


def inputs():
    g = torch.Generator().manual_seed(SEED)
    images = torch.randn(2, 3, 8, 8, generator=g)
    ids = torch.zeros(2, 8, dtype=torch.int64)
    for row, eot in enumerate([7, 4]):
        ids[row, 0] = SOT
        ids[row, 1:eot] = torch.randint(1, SOT, (eot - 1,), generator=g)
        ids[row, eot] = EOT
    return images, ids


def report(path):
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).is_dir() else Path(path).stat().st_size
    print(f"wrote {path.relative_to(ROOT)}: {size} bytes")


def views_state(state):
    """The same values as `state`, saved as views that torch.save keeps as they are."""
    out = {}
    shared_keys = [k for k, v in state.items() if k.endswith(".bias") and v.ndim == 1]
    shared = torch.cat([state[k] for k in shared_keys])  # one storage, biases at offsets into it
    at = 0
    for k in shared_keys:
        n = state[k].numel()
        out[k] = shared[at:at + n]
        at += n
    for k, v in state.items():
        if k in out:
            continue
        if v.ndim == 2:
            out[k] = v.t().contiguous().t()  # transposed strides
            assert not out[k].is_contiguous()
        elif v.ndim == 4:
            big = torch.zeros(v.shape[0] + 3, *v.shape[1:])  # a slice of a larger storage: offset
            big[3:] = v
            out[k] = big[3:]
            assert out[k].storage_offset() > 0
        else:
            out[k] = v.clone()
    for k in state:
        assert torch.equal(out[k], state[k]), k
    return out


def fake_zip(path, pickle_bytes, extra=None, prefix="archive"):
    """A torch.save-style stored zip around pickle bytes we wrote ourselves."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pickle_bytes)
        z.writestr(f"{prefix}/byteorder", "little")
        for name, data in (extra or {}).items():
            z.writestr(f"{prefix}/{name}", data)
        z.writestr(f"{prefix}/version", "3\n")


def hostile(dirpath, plain):
    dirpath.mkdir(parents=True, exist_ok=True)

    def global_call(module, name, arg):  # GLOBAL module name; (arg,) REDUCE; STOP
        return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(arg)) + arg.encode()
                + b"\x85R.")

    payloads = {
        "os_system": global_call("os", "system", f"touch {MARKER}os_system"),
        "posix_system": global_call("posix", "system", f"touch {MARKER}posix_system"),
        "builtins_eval": global_call("builtins", "eval", f"open('{MARKER}builtins_eval', 'w')"),
        "subprocess": global_call("subprocess", "getoutput", f"touch {MARKER}subprocess"),
    }

    # a __reduce__ of a class nobody allowed: pickle.dumps(Payload()) where Payload.__reduce__
    # returns (Payload, ("touch …",)), written out so the class need not exist here
    payloads["unknown_class"] = global_call("__main__", "Payload", f"touch {MARKER}unknown_class")
    # the call hidden inside an otherwise genuine state dict
    payloads["nested_os_system"] = (b"\x80\x02}q\x00X\x0a\x00\x00\x00state_dictq\x01"
                                    + global_call("os", "system", f"touch {MARKER}nested_os_system")[2:-1] + b"s.")
    for name, data in payloads.items():
        fake_zip(dirpath / f"{name}.pt", data)

    blob = plain.read_bytes()
    (dirpath / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    (dirpath / "wrong_magic.pt").write_bytes(b"PQ" + blob[2:])
    # missing storage: the archive without its first data/ member
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(dirpath / "missing_storage.pt", "w", zipfile.ZIP_STORED) as dst:
        dropped = next(n for n in src.namelist() if "/data/" in n)
        for info in src.infolist():
            if info.filename != dropped:
                dst.writestr(info, src.read(info))
    # big-endian: the same archive claiming another byte order
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(dirpath / "big_endian.pt", "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, b"big" if info.filename.endswith("/byteorder") else src.read(info))
    # a central-directory entry declaring a 4 GB member in a small file
    huge = bytearray(blob)
    cd = huge.rfind(b"PK\x01\x02")  # the last member's directory entry
    huge[cd + 20:cd + 28] = struct.pack("<II", 0xFFFFFFF0, 0xFFFFFFF0)
    (dirpath / "huge_declared_size.pt").write_bytes(bytes(huge))
    for f in sorted(dirpath.iterdir()):
        report(f)


def make():
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    register(TINY, "mm_torch_tiny")
    register(OPENAI, "mm_torch_openai")
    images, ids = inputs()
    io = {"in.images": images, "ids.text": ids.to(torch.int32)}

    def record(name, model):
        image, text = embeds(model, images, ids)
        io[f"{name}.image_embeds"], io[f"{name}.text_embeds"] = image, text

    model = perturbed("mm_torch_tiny")
    state = model.state_dict()
    (OUT / "tiny.json").write_text(json.dumps(TINY, indent=2) + "\n")

    # open_clip's training checkpoint, as its train loop saves it under DDP
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    loss = open_clip.ClipLoss()(*model(images, ids))
    loss.backward()
    opt.step()  # moves the weights: the checkpoint holds the stepped ones
    model.zero_grad()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "name": "tiny-run", "state_dict": {"module." + k: v for k, v in state.items()},
                "optimizer": opt.state_dict()}, OUT / "epoch_3.pt")
    torch.save(state, OUT / "plain.pt")
    torch.save(views_state(state), OUT / "views.pt")
    for name in ("epoch_3", "plain", "views"):
        record(name, open_clip.create_model("mm_torch_tiny", pretrained=str(OUT / f"{name}.pt")).eval())
        report(OUT / f"{name}.pt")

    # OpenAI's TorchScript archive: fp16 storages, OpenAI's extra buffers, QuickGELU
    openai = perturbed("mm_torch_openai")
    open_clip.model.convert_weights_to_fp16(openai)
    for key, value in [("input_resolution", 8), ("context_length", 8), ("vocab_size", 64)]:
        if hasattr(openai, key):
            delattr(openai, key)  # open_clip keeps them as ints; OpenAI's archive holds tensors
        openai.register_buffer(key, torch.tensor(value))
    # OpenAI's causal mask is a plain tensor attribute, not in its state_dict (open_clip's is a
    # non-persistent buffer, which a scripted module would save as state)
    mask = openai._buffers.pop("attn_mask")
    openai.attn_mask = mask
    scripted = torch.jit.script(openai)
    torch.jit.save(scripted, OUT / "openai_jit.pt")
    reference = open_clip.load_openai_model(str(OUT / "openai_jit.pt"), precision="fp32", device="cpu").eval()
    record("openai_jit", reference)
    report(OUT / "openai_jit.pt")

    # open_clip hub folder
    hub = OUT / "hub"
    shutil.rmtree(hub, ignore_errors=True)
    hub.mkdir()
    (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": PREPROCESS}, indent=2))
    torch.save(state, hub / "open_clip_pytorch_model.bin")
    hub_model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + str(hub))
    assert list(preprocess.transforms[-1].mean) == PREPROCESS["mean"], preprocess
    record("hub", hub_model.eval())
    report(hub)

    # transformers folder (pytorch_model.bin)
    sys.path.insert(0, str(ROOT / "tools"))
    import make_model_fixtures as mmf  # its open_clip → HF mapping and config, validated there
    tf = OUT / "transformers"
    shutil.rmtree(tf, ignore_errors=True)
    hf = transformers.CLIPModel(mmf.hf_config(TINY))
    hf.load_state_dict(mmf.openclip_to_hf(state), strict=True)
    tf.mkdir()
    hf.config.save_pretrained(tf)
    torch.save(hf.state_dict(), tf / "pytorch_model.bin")  # transformers 5 writes only safetensors itself
    loaded = transformers.CLIPModel.from_pretrained(tf, local_files_only=True).eval()
    image, text = mmf.hf_features(loaded, images, ids)
    io["transformers.image_embeds"] = torch.nn.functional.normalize(image, dim=-1)
    io["transformers.text_embeds"] = torch.nn.functional.normalize(text, dim=-1)
    report(tf)

    meta = {"generator": "tools/make_torch_fixtures.py", "torch": torch.__version__, "open_clip": open_clip.__version__,
            "transformers": transformers.__version__, "safetensors": safetensors.__version__, "seed": str(SEED),
            "tiny_config": json.dumps(TINY), "openai_config": json.dumps(OPENAI), "preprocess_cfg": json.dumps(PREPROCESS)}
    tensors = {k: v.detach().contiguous() for k, v in io.items()}
    (OUT / "io.safetensors").write_bytes(with_sorted_header(save(tensors, metadata=meta)))
    report(OUT / "io.safetensors")
    hostile(OUT / "hostile", OUT / "plain.pt")


def verify_strict(checkpoint, config_path, io_path, fixture, tol):
    """A file `mm convert` wrote loads into open_clip with strict=True and gives the fixture's embeddings."""
    config = json.loads(Path(config_path).read_text())
    register(config, f"mm_verify_{os.getpid()}")
    model = open_clip.create_model(f"mm_verify_{os.getpid()}", pretrained=None).eval()
    state = load_file(checkpoint)
    model.load_state_dict(state, strict=True)
    io = load_file(io_path)
    image, text = embeds(model, io["in.images"], io["ids.text"].long())
    worst = max((image - io[f"{fixture}.image_embeds"]).abs().max().item(),
                (text - io[f"{fixture}.text_embeds"]).abs().max().item())
    print(f"open_clip strict load of {checkpoint}: max|Δ| embeddings {worst:.3g} (tolerance {tol:g})")
    return worst <= tol


def fuzz_seeds():
    """Small valid inputs for tools/fuzz/harnesses/torch_checkpoint.swift (plus data.pkl of the fixtures)."""
    out = ROOT / "tools/fuzz/corpus/torch_checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    base = torch.randn(4, 6)
    torch.save({"epoch": 1, "state_dict": {"module.w": base.t(), "module.s": base[1:, 2:], "module.h": base.half(),
                                           "module.b": base.bfloat16()[0], "module.i": torch.arange(3)},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.98), "params": [0, 1]}]}},
               out / "small_state.pt")
    for name, pkl in [("epoch_data.pkl", OUT / "epoch_3.pt"), ("jit_data.pkl", OUT / "openai_jit.pt")]:
        with zipfile.ZipFile(pkl) as z:
            (out / name).write_bytes(z.read(next(n for n in z.namelist() if n.endswith("/data.pkl"))))
    for f in sorted(out.iterdir()):
        report(f)


if __name__ == "__main__":
    if sys.argv[1:2] == ["fuzz-seeds"]:
        fuzz_seeds()
        sys.exit(0)
    if sys.argv[1:2] == ["verify-strict"]:
        ckpt, cfg, io_path, fixture, tol = sys.argv[2:7]
        sys.exit(0 if verify_strict(ckpt, cfg, io_path, fixture, float(tol)) else 1)
    make()
