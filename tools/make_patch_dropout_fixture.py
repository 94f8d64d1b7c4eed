#!/usr/bin/env python3
"""Golden fixture for patch dropout (FLIP; Sources/MMVision/VisionTransformer.swift), produced by
open_clip's own VisionTransformer and PatchDropout in training mode.

    python3 tools/make_patch_dropout_fixture.py   # creates .venv-ref when missing

PatchDropout draws torch.randn(batch, patches) and keeps the top-k positions. The script draws
the same numbers first (same seed) to record which patches open_clip keeps, then runs the tower,
so mm can be fed those indices and must reproduce the features and every gradient.

Writes Tests/MMCLIPTests/Fixtures/patch_dropout.safetensors (float32 / int32):
    param.<key>        the tower's perturbed weights (open_clip VisionTransformer keys)
    in.images          [4, 3, 32, 32]            ids.kept   [4, K] patch indices open_clip kept
    out.train          features with patch dropout (training mode)
    out.eval           features in evaluation mode (no dropout)
    grad_out           upstream gradient of out.train; grad.<key>, grad.images: d(out·grad_out)
    ids.kept_counts    [n, 3]: patches, rate × 1000, kept count — open_clip's max(1, int(n·(1−p)))
__metadata__: versions, seed, `config` (tower arguments, JSON).
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261127
PATH = ROOT / "Tests/MMCLIPTests/Fixtures/patch_dropout.safetensors"
CONFIG = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "heads": 2, "mlp_ratio": 4.0,
          "output_dim": 32, "patch_dropout": 0.5}
# (patches, rate) pairs whose kept count depends on rounding n·(1 − p) in double precision.
COUNTS = [(16, 0.5), (10, 0.1), (49, 0.3), (196, 0.75), (50, 0.7), (3, 0.9), (64, 0.25), (100, 0.29)]

from reference_env import ensure_reference_env, with_sorted_header  # noqa: E402

ensure_reference_env("open_clip", "safetensors", "torch")

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
from open_clip.transformer import VisionTransformer  # noqa: E402
from safetensors.torch import save  # noqa: E402


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    tower = VisionTransformer(**CONFIG)
    with torch.no_grad():  # away from the initialisation: gains not ones, biases not zeros
        for p in tower.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tensors = {f"param.{k}": v.detach().clone().contiguous() for k, v in tower.state_dict().items()}

    batch, patches = 4, (CONFIG["image_size"] // CONFIG["patch_size"]) ** 2
    images = torch.randn(batch, 3, CONFIG["image_size"], CONFIG["image_size"])
    kept_count = max(1, int(patches * (1 - CONFIG["patch_dropout"])))

    tower.eval()
    with torch.no_grad():
        out_eval = tower(images)

    tower.train()
    draw_seed = SEED + 1
    torch.manual_seed(draw_seed)  # exactly PatchDropout's draw: the first random numbers of forward
    kept = torch.randn(batch, patches).topk(kept_count, dim=-1).indices
    torch.manual_seed(draw_seed)
    leaf = images.clone().requires_grad_(True)
    out = tower(leaf)
    grad_out = torch.randn_like(out)
    (out * grad_out).sum().backward()

    tensors.update({
        "in.images": images,
        "ids.kept": kept.to(torch.int32).contiguous(),
        "out.train": out.detach().clone(),
        "out.eval": out_eval,
        "grad_out": grad_out,
        "grad.images": leaf.grad.detach().clone(),
        "ids.kept_counts": torch.tensor([[n, round(p * 1000), max(1, int(n * (1 - p)))] for n, p in COUNTS],
                                        dtype=torch.int32),
    })
    for k, p in tower.named_parameters():
        tensors[f"grad.{k}"] = p.grad.detach().clone()
    meta = {"generator": "tools/make_patch_dropout_fixture.py", "torch": torch.__version__,
            "open_clip": open_clip.__version__, "safetensors": safetensors.__version__, "seed": str(SEED),
            "config": json.dumps(CONFIG, sort_keys=True)}
    PATH.write_bytes(with_sorted_header(save(tensors, metadata=meta)))
    print(f"wrote {PATH.relative_to(ROOT)}: {len(tensors)} tensors, {kept_count} of {patches} patches kept")


if __name__ == "__main__":
    main()
