#!/usr/bin/env python3
"""Golden fixture for the ResNet image tower (Sources/MMVision/ModifiedResNet.swift), produced by
open_clip's own ModifiedResNet.

    python3 tools/make_resnet_fixture.py   # creates .venv-ref when missing

Weights and running statistics are perturbed away from the initialisation (batch-norm gains not
ones, running variances not ones, the zero-initialised bn3 gains non-zero), float32 on one thread.

Writes Tests/MMCLIPTests/Fixtures/resnet.safetensors (float32):
    param.<key>          the tower's state_dict (open_clip keys; num_batches_tracked as float32)
    in.images            [4, 3, 64, 64]
    out.eval             features in evaluation mode (running statistics)
    out.train            features in training mode (batch statistics)
    after.<key>          running_mean / running_var / num_batches_tracked after that training pass
    grad_out             upstream gradient of out.train; grad.images, grad.<key>: d(out·grad_out)
and Tests/MMCLIPTests/Fixtures/resnet_clip.safetensors: a whole open_clip CLIP with such a tower,
its state_dict exactly as torch holds it (num_batches_tracked int64; model-config JSON in the
metadata key `config`), and resnet_clip_io.safetensors: `in.images` and `out.eval`, its normalised
image embeddings in evaluation mode.
__metadata__: versions, seed, `config` (tower arguments, JSON); resnet.safetensors also holds
`rn50_config` (open_clip's bundled RN50 model config) and `rn50_parameters` (its parameter count).
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261128
FIXTURES = ROOT / "Tests/MMCLIPTests/Fixtures"
TOWER = {"layers": [1, 2, 1, 1], "output_dim": 32, "heads": 4, "image_size": 64, "width": 8}
CLIP_CONFIG = {"embed_dim": 32,
               "vision_cfg": {"image_size": 64, "layers": [1, 2, 1, 1], "width": 8, "head_width": 64},
               "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 1}}

from reference_env import ensure_reference_env, with_sorted_header  # noqa: E402

ensure_reference_env("open_clip", "safetensors", "torch")

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
from open_clip.modified_resnet import ModifiedResNet  # noqa: E402
from safetensors.torch import save  # noqa: E402


def perturb(module):
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(3)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.1)
            elif t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)


def state(module, prefix):
    return {f"{prefix}{k}": v.detach().clone().float().contiguous() for k, v in module.state_dict().items()}


def meta(config):
    return {"generator": "tools/make_resnet_fixture.py", "torch": torch.__version__,
            "open_clip": open_clip.__version__, "safetensors": safetensors.__version__, "seed": str(SEED),
            "config": json.dumps(config, sort_keys=True)}


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    tower = ModifiedResNet(**TOWER)
    perturb(tower)
    tensors = state(tower, "param.")
    images = torch.randn(4, 3, 64, 64)

    tower.eval()
    with torch.no_grad():
        out_eval = tower(images)

    tower.train()
    leaf = images.clone().requires_grad_(True)
    out = tower(leaf)
    grad_out = torch.randn_like(out)
    (out * grad_out).sum().backward()
    tensors.update({"in.images": images, "out.eval": out_eval, "out.train": out.detach().clone(),
                    "grad_out": grad_out, "grad.images": leaf.grad.detach().clone()})
    tensors.update({k.replace("param.", "after."): v for k, v in state(tower, "param.").items()
                    if "running" in k or "num_batches" in k})
    for k, p in tower.named_parameters():
        tensors[f"grad.{k}"] = p.grad.detach().clone()
    rn50 = open_clip.get_model_config("RN50")
    rn50_parameters = sum(p.numel() for p in open_clip.create_model("RN50").parameters())
    path = FIXTURES / "resnet.safetensors"
    path.write_bytes(with_sorted_header(save(tensors, metadata=meta(TOWER) | {
        "rn50_config": json.dumps(rn50, sort_keys=True), "rn50_parameters": str(rn50_parameters)})))
    print(f"wrote {path.relative_to(ROOT)}: {len(tensors)} tensors")

    torch.manual_seed(SEED + 1)
    model = open_clip.model.CLIP(**CLIP_CONFIG)
    perturb(model)
    model.eval()
    with torch.no_grad():
        embeds = model.encode_image(images, normalize=True)
    checkpoint = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    path = FIXTURES / "resnet_clip.safetensors"
    path.write_bytes(with_sorted_header(save(checkpoint, metadata=meta(CLIP_CONFIG))))
    print(f"wrote {path.relative_to(ROOT)}: {len(checkpoint)} tensors "
          f"({sum(v.dtype == torch.int64 for v in checkpoint.values())} int64)")
    path = FIXTURES / "resnet_clip_io.safetensors"
    path.write_bytes(with_sorted_header(save({"in.images": images, "out.eval": embeds}, metadata=meta(CLIP_CONFIG))))


if __name__ == "__main__":
    main()
