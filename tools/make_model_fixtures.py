#!/usr/bin/env python3
"""Golden fixtures for MMVision / MMText / MMCLIP, produced by the reference (open_clip and
Hugging Face transformers), and the checks the Swift round-trip tests run against them.

    python3 tools/make_model_fixtures.py                   # small config → Tests/MMCLIPTests/Fixtures/
    python3 tools/make_model_fixtures.py --vitb32 OUTDIR   # real ViT-B-32 (≈600 MB, not committed)
    python3 tools/make_model_fixtures.py verify-openclip CHECKPOINT.safetensors CONFIG.json IO.safetensors
    python3 tools/make_model_fixtures.py verify-hf HF_DIR IO.safetensors

The script re-runs itself inside .venv-ref (creating it from tools/requirements.txt when missing).
Every weight is perturbed away from open_clip's initialisation (LayerNorm gains are not ones, biases
not zeros), computation is float32 on one thread with a fixed seed, so reruns are byte-identical.

Default mode writes:
    clip_small.json            the small config in open_clip's model-config schema
    clip_small.safetensors     param.<open_clip key>   perturbed weights
                               in.images [4,3,32,32], ids.text [4,16] int32 (SOT 998 … EOT 999, pad 0)
                               out.image_features / out.text_features   encode_image/encode_text
                               out.image_embeds / out.text_embeds       the same, normalised
                               out.logits_per_image   logit_scale.exp() · I·Tᵀ (normalised)
                               out.loss               open_clip ClipLoss on the normalised features
                               grad.<key>             d loss / d parameter
                               train.loss [10]        AdamW trajectory on the same batch (before each step)
                               train.final.<key>      parameters after the 10 steps
    clip_small_hf/             the same weights as a transformers CLIPModel (config.json,
                               model.safetensors) and hf_outputs.safetensors: in.images, ids.text,
                               out.image_features / out.text_features from get_image/text_features
__metadata__: versions, seed, `config` (model-config JSON), `train` (optimizer settings, JSON),
`perturbation` (how the weights were moved).
"""

import argparse
import copy
import json
import logging
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 20260523
FIXTURES = ROOT / "Tests/MMCLIPTests/Fixtures"
REQUIRED = ("open_clip", "safetensors", "torch", "transformers")

SMALL_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 2},
}
SOT, EOT = 998, 999          # the small vocabulary's last two ids, as open_clip's 49406/49407
EOT_AT = [15, 3, 9, 6]       # per row: one full-length caption, one short one
LOGIT_SCALE = math.log(1 / 0.07) + 0.1
TRAIN = {"lr": 1e-3, "betas": [0.9, 0.98], "eps": 1e-6, "weight_decay": 0.2, "steps": 10}
CAPTIONS = ["a photo of a cat sitting on a red sofa", "two towers above a river at night"]
TOLERANCE = 1e-4


from reference_env import ensure_reference_env, with_sorted_header  # noqa: E402

ensure_reference_env(*REQUIRED)

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
logging.disable(logging.WARNING)  # open_clip warns on every model created without pretrained weights


# ---------------------------------------------------------------------------------------------
# files

def provenance():
    return {
        "generator": "tools/make_model_fixtures.py",
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "seed": str(SEED),
        "dtype": "float32 compute, float32/int32 storage",
    }


def write_safetensors(path, tensors, meta):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(with_sorted_header(save(tensors, metadata=meta)))
    os.replace(tmp, path)
    print(f"wrote {path}: {len(tensors)} tensors, {path.stat().st_size} bytes")


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    print(f"wrote {path}: {path.stat().st_size} bytes")


def fail(message):
    sys.exit(f"error: {message}")


# ---------------------------------------------------------------------------------------------
# open_clip models

def create_openclip(config, name="mm_config"):
    """open_clip.create_model on a config that is not bundled: register it under `name` first."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
        model = open_clip.create_model(name, pretrained=None)  # warns "no pretrained weights"
    model.eval()
    return model


def perturb(model):
    """Moves every parameter off its initialisation by normal noise of half the tensor's own spread
    (so deep towers stay well-conditioned); constant tensors (LayerNorm gains, zero biases) get
    std 0.1; logit_scale is set to LOGIT_SCALE."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            before = p.clone()
            if name == "logit_scale":
                p.fill_(LOGIT_SCALE)
                continue
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_((0.5 * spread if spread > 0 else 0.1) * torch.randn_like(p))
            # a few of millions of draws can be too small to change a float32; the tensor still moves
            assert (p != before).float().mean() > 0.999, name
    return ("normal noise, std = 0.5 × the tensor's std at initialisation, or 0.1 for constant "
            f"tensors (LayerNorm gains, zero biases); logit_scale = ln(1/0.07) + 0.1 = {LOGIT_SCALE}")


def small_text_ids():
    """[4, 16]: SOT, random ids 1…997, EOT at a row-specific position, 0 padding.
    EOT is each row's largest id, as open_clip's argmax pooling requires."""
    ids = torch.zeros(len(EOT_AT), SMALL_CONFIG["text_cfg"]["context_length"], dtype=torch.int64)
    for row, eot in enumerate(EOT_AT):
        ids[row, 0] = SOT
        ids[row, 1:eot] = torch.randint(1, SOT, (eot - 1,))
        ids[row, eot] = EOT
    assert ids.argmax(dim=-1).tolist() == EOT_AT
    return ids


def decays(name, p):
    """The weight-decay rule of the trajectory: open_clip's training script's rule, plus no decay
    for embeddings (mm's choice; open_clip decays token and positional embeddings)."""
    return not (p.ndim < 2 or "ln" in name or "bn" in name or "bias" in name
                or "logit_scale" in name or "embedding" in name)


DECAY_RULE = ('decay iff not (p.ndim < 2 or "ln" in name or "bn" in name or "bias" in name '
              'or "logit_scale" in name or "embedding" in name)')


def make_small():
    torch.manual_seed(SEED)
    model = create_openclip(SMALL_CONFIG, "clip_small")
    perturbation = perturb(model)
    images = torch.randn(4, 3, 32, 32)
    ids = small_text_ids()
    params = dict(model.named_parameters())
    state = model.state_dict()
    assert list(state) == list(params), "state_dict holds buffers besides the parameters"
    skipped = sorted(k for k, _ in model.named_buffers() if k not in state)
    print(f"open_clip keys ({len(state)}; non-persistent buffers left out: {skipped}):")
    for k, v in state.items():
        print(f"  {k} {list(v.shape)}")
    initial = copy.deepcopy(model.state_dict())

    tensors = {f"param.{k}": v for k, v in initial.items()}  # copies: training moves `state`
    tensors["in.images"] = images
    tensors["ids.text"] = ids.to(torch.int32)
    with torch.no_grad():
        image_features = model.encode_image(images)
        text_features = model.encode_text(ids)
        image_embeds = model.encode_image(images, normalize=True)
        text_embeds = model.encode_text(ids, normalize=True)
        logits = model.logit_scale.exp() * image_embeds @ text_embeds.T
    tensors.update({
        "out.image_features": image_features, "out.text_features": text_features,
        "out.image_embeds": image_embeds, "out.text_embeds": text_embeds,
        "out.logits_per_image": logits,
    })

    # one forward/backward of the symmetric InfoNCE loss
    loss_fn = open_clip.ClipLoss()
    loss = loss_fn(*model(images, ids))
    loss.backward()
    tensors["out.loss"] = loss.detach()
    for k, p in params.items():
        tensors[f"grad.{k}"] = p.grad.clone()

    # ten AdamW steps on the same batch, from the same weights, as open_clip's train loop does them
    model.load_state_dict(initial)
    model.zero_grad(set_to_none=True)
    model.train()  # dropout is 0: no numerical difference, but the mode training runs in
    decay = [k for k, p in params.items() if decays(k, p)]
    no_decay = [k for k in params if k not in decay]
    opt = torch.optim.AdamW(
        [{"params": [params[k] for k in no_decay], "weight_decay": 0.0},
         {"params": [params[k] for k in decay], "weight_decay": TRAIN["weight_decay"]}],
        lr=TRAIN["lr"], betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"])
    losses = []
    for _ in range(TRAIN["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(*model(images, ids))
        losses.append(loss.detach())
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    assert torch.equal(losses[0], tensors["out.loss"]), "trajectory does not start at out.loss"
    tensors["train.loss"] = torch.stack(losses)
    for k, v in model.state_dict().items():
        tensors[f"train.final.{k}"] = v
    print("train.loss", [round(x.item(), 6) for x in losses])

    meta = provenance()
    meta["config"] = json.dumps(SMALL_CONFIG)
    meta["perturbation"] = perturbation
    meta["text"] = json.dumps({"sot": SOT, "eot": EOT, "pad": 0, "eot_positions": EOT_AT})
    meta["train"] = json.dumps({
        **TRAIN, "decay_rule": DECAY_RULE, "decay": decay, "no_decay": no_decay,
        "loss": "open_clip.ClipLoss()(normalize(I), normalize(T), logit_scale.exp()) on the same "
                "batch every step; train.loss[k] is the loss before update k+1",
        "clamp": "logit_scale.clamp_(0, ln 100) after every optimizer step",
        "optimizer": "torch.optim.AdamW, param groups [no_decay (wd 0), decay (wd 0.2)]",
    })
    write_json(FIXTURES / "clip_small.json", SMALL_CONFIG)
    write_safetensors(FIXTURES / "clip_small.safetensors", tensors, meta)
    make_hf(model_state=initial, images=images, ids=ids,
            image_features=image_features, text_features=text_features)


# ---------------------------------------------------------------------------------------------
# Hugging Face layout

def hf_config(config):
    """transformers.CLIPConfig for an open_clip model config (ViT towers, GELU or QuickGELU)."""
    vision, text = config["vision_cfg"], config["text_cfg"]
    act = "quick_gelu" if config.get("quick_gelu", False) else "gelu"
    common = {"hidden_act": act, "layer_norm_eps": 1e-5, "projection_dim": config["embed_dim"],
              "attention_dropout": 0.0}
    text_config = {
        **common,
        "vocab_size": text["vocab_size"],
        "hidden_size": text["width"],
        "intermediate_size": int(text["width"] * text.get("mlp_ratio", 4.0)),
        "num_hidden_layers": text["layers"],
        "num_attention_heads": text["heads"],
        "max_position_embeddings": text["context_length"],
        # transformers pools at input_ids.argmax() (open_clip's rule) only when eos_token_id == 2;
        # any other value pools at the first occurrence of that id.
        "eos_token_id": 2,
        "bos_token_id": text["vocab_size"] - 2,
        "pad_token_id": 0,
    }
    vision_config = {
        **common,
        "hidden_size": vision["width"],
        "intermediate_size": int(vision["width"] * vision.get("mlp_ratio", 4.0)),
        "num_hidden_layers": vision["layers"],
        "num_attention_heads": vision["width"] // vision.get("head_width", 64),
        "image_size": vision["image_size"],
        "patch_size": vision["patch_size"],
        "num_channels": 3,
    }
    return transformers.CLIPConfig(text_config=text_config, vision_config=vision_config,
                                   projection_dim=config["embed_dim"],
                                   logit_scale_init_value=math.log(1 / 0.07))


def openclip_to_hf(state):
    """open_clip state_dict → transformers CLIPModel state_dict (our own mapping; the Swift side
    implements the same one, so this is what the HF fixture validates)."""
    hf = {}
    block_renames = {
        "ln_1": "layer_norm1", "ln_2": "layer_norm2",
        "attn.out_proj": "self_attn.out_proj", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
    }
    renames = {
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",  # sic: HF's spelling
        "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
        "visual.ln_post.weight": "vision_model.post_layernorm.weight",
        "visual.ln_post.bias": "vision_model.post_layernorm.bias",
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias",
        "logit_scale": "logit_scale",
    }
    towers = {"visual.transformer.resblocks.": "vision_model.encoder.layers.",
              "transformer.resblocks.": "text_model.encoder.layers."}
    for key, value in state.items():
        if key in renames:
            hf[renames[key]] = value
        elif key == "visual.proj":  # x @ proj  ==  Linear with weight proj.T
            hf["visual_projection.weight"] = value.T
        elif key == "text_projection":
            hf["text_projection.weight"] = value.T
        else:
            src = next(s for s in towers if key.startswith(s))  # visual.… is tested first
            index, rest = key[len(src):].split(".", 1)
            dst = f"{towers[src]}{index}."
            if rest.startswith("attn.in_proj_"):  # packed [q; k; v] rows → three Linears
                kind = rest[len("attn.in_proj_"):]
                for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                    hf[f"{dst}self_attn.{part}_proj.{kind}"] = chunk
            else:
                module, param = rest.rsplit(".", 1)
                hf[f"{dst}{block_renames[module]}.{param}"] = value
    return {k: v.contiguous() for k, v in hf.items()}


def hf_features(model, images, ids):
    def pooled(out):  # transformers ≥ 5 returns a model output, older versions a tensor
        return out if torch.is_tensor(out) else out.pooler_output
    with torch.no_grad():
        return (pooled(model.get_image_features(pixel_values=images)),
                pooled(model.get_text_features(input_ids=ids)))


def make_hf(model_state, images, ids, image_features, text_features):
    out_dir = FIXTURES / "clip_small_hf"
    config = hf_config(SMALL_CONFIG)
    model = transformers.CLIPModel(config)
    model.load_state_dict(openclip_to_hf(model_state), strict=True)
    model.eval()
    print(f"HF keys ({len(model.state_dict())}):")
    for k, v in model.state_dict().items():
        print(f"  {k} {list(v.shape)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)  # transformers 5 always writes model.safetensors
    for name in ("config.json", "model.safetensors"):
        print(f"wrote {out_dir / name}: {(out_dir / name).stat().st_size} bytes")

    loaded = transformers.CLIPModel.from_pretrained(out_dir, local_files_only=True)
    loaded.eval()
    hf_image, hf_text = hf_features(loaded, images, ids)
    assert hf_image.dtype == torch.float32
    image_diff = (hf_image - image_features).abs().max().item()
    text_diff = (hf_text - text_features).abs().max().item()
    print(f"transformers vs open_clip: image_features max|Δ| {image_diff:.3g}, "
          f"text_features max|Δ| {text_diff:.3g}")
    if max(image_diff, text_diff) > 1e-5:
        fail("the open_clip → Hugging Face mapping does not reproduce open_clip's outputs")
    meta = provenance()
    meta["max_abs_diff_vs_open_clip"] = json.dumps({"image_features": image_diff,
                                                    "text_features": text_diff})
    write_safetensors(out_dir / "hf_outputs.safetensors", {
        "in.images": images, "ids.text": ids.to(torch.int32),
        "out.image_features": hf_image, "out.text_features": hf_text,
    }, meta)


# ---------------------------------------------------------------------------------------------
# ViT-B-32

def make_vitb32(out_dir):
    torch.manual_seed(SEED)
    out_dir = Path(out_dir)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    config = open_clip.get_model_config("ViT-B-32")
    perturbation = perturb(model)
    images = torch.randn(2, 3, 224, 224)
    ids = open_clip.get_tokenizer("ViT-B-32")(CAPTIONS)
    with torch.no_grad():
        image_embeds = model.encode_image(images, normalize=True)
        text_embeds = model.encode_text(ids, normalize=True)
    meta = provenance()
    meta["config"] = json.dumps(config)
    meta["perturbation"] = perturbation
    write_json(out_dir / "vitb32.json", config)
    write_safetensors(out_dir / "vitb32.safetensors", model.state_dict(), meta)
    meta["captions"] = json.dumps(CAPTIONS)
    write_safetensors(out_dir / "vitb32_io.safetensors", {
        "in.images": images, "ids.text": ids.to(torch.int32),
        "out.image_embeds": image_embeds, "out.text_embeds": text_embeds,
    }, meta)


# ---------------------------------------------------------------------------------------------
# checks run by the Swift tests

def load_io(path):
    try:
        io = load_file(path)
    except Exception as e:
        fail(f"{path}: cannot read safetensors ({e})")
    for key in ("in.images", "ids.text", "out.image_embeds", "out.text_embeds"):
        if key not in io:
            fail(f"{path}: missing tensor '{key}'")
    return io


def compare(label, ours, io, tol):
    """Prints max |Δ| of the normalised embeddings against IO's; True when within tol."""
    ok = True
    for name, value in zip(("image_embeds", "text_embeds"), ours):
        want = io[f"out.{name}"]
        if value.shape != want.shape:
            print(f"{label} {name}: shape {list(value.shape)}, expected {list(want.shape)}")
            ok = False
            continue
        diff = (value - want).abs().max().item()
        print(f"{label} {name}: max|Δ| {diff:.3g} (tolerance {tol:g})")
        ok = ok and diff <= tol
    print("OK" if ok else "FAIL")
    return ok


def verify_openclip(checkpoint, config_path, io_path, tol):
    """A checkpoint written by mm loads strictly into open_clip and reproduces IO's embeddings."""
    try:
        config = json.loads(Path(config_path).read_text())
    except (OSError, ValueError) as e:
        fail(f"{config_path}: cannot read model config ({e})")
    config = config.get("model_cfg", config)  # also accept open_clip_config.json from the HF hub
    io = load_io(io_path)
    try:
        state = load_file(checkpoint)  # __metadata__ is not part of the state
    except Exception as e:
        fail(f"{checkpoint}: cannot read safetensors ({e})")
    torch.manual_seed(SEED)
    try:
        model = create_openclip(config, f"mm_verify_{os.getpid()}")
    except Exception as e:
        fail(f"{config_path}: open_clip rejects the config ({e})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        fail(f"{checkpoint}: open_clip load_state_dict(strict=True) failed: "
             + " ".join(str(e).split()))
    with torch.no_grad():
        ours = (model.encode_image(io["in.images"], normalize=True),
                model.encode_text(io["ids.text"].long(), normalize=True))
    return compare("open_clip", ours, io, tol)


def verify_hf(model_dir, io_path, tol):
    """A Hugging Face CLIPModel directory written by mm reproduces IO's embeddings in transformers."""
    io = load_io(io_path)
    if not (Path(model_dir) / "config.json").is_file():
        fail(f"{model_dir}: not a Hugging Face model directory (no config.json)")
    try:
        model = transformers.CLIPModel.from_pretrained(model_dir, local_files_only=True)
    except Exception as e:
        fail(f"{model_dir}: transformers cannot load it as CLIPModel ({' '.join(str(e).split())})")
    model.eval()
    image, text = hf_features(model, io["in.images"], io["ids.text"].long())
    ours = (torch.nn.functional.normalize(image, dim=-1),
            torch.nn.functional.normalize(text, dim=-1))
    return compare("transformers", ours, io, tol)


def main():
    torch.set_num_threads(1)  # bit-identical reruns on one machine; the machine is shared
    argv = sys.argv[1:]
    if argv and argv[0] in ("verify-openclip", "verify-hf"):
        parser = argparse.ArgumentParser(prog=f"make_model_fixtures.py {argv[0]}")
        if argv[0] == "verify-openclip":
            parser.add_argument("checkpoint")
            parser.add_argument("config")
        else:
            parser.add_argument("model_dir")
        parser.add_argument("io")
        parser.add_argument("--tol", type=float, default=TOLERANCE)
        args = parser.parse_args(argv[1:])
        if argv[0] == "verify-openclip":
            ok = verify_openclip(args.checkpoint, args.config, args.io, args.tol)
        else:
            ok = verify_hf(args.model_dir, args.io, args.tol)
        sys.exit(0 if ok else 1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vitb32", metavar="OUTDIR",
                        help="write the perturbed real ViT-B-32 and its inputs/outputs to OUTDIR")
    args = parser.parse_args(argv)
    if args.vitb32:
        make_vitb32(args.vitb32)
    else:
        make_small()


if __name__ == "__main__":
    main()
