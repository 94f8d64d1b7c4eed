#!/usr/bin/env python3
"""Zero-shot golden fixture: an open_clip model and open_clip's own zero-shot predictions on the
datasets/shapes test images, for MMEvalTests' OpenCLIPZeroShotTests (mm must predict the same).

    .venv-ref/bin/python tools/make_zeroshot_fixture.py [OUTDIR]   # default .build/fixtures/zeroshot
    # or `make fixtures-zeroshot` (run by `make test` when .venv-ref exists)

Not committed (the token embedding alone is 49,408 × 64 floats, ≈13 MB); the test skips with a
reason while it is absent. Steps, all open_clip / PyTorch (float32, CPU, seeded):
1. open_clip.create_model_and_transforms on the small config CONFIG below (image 48² so that the
   64² shapes images go through open_clip's bicubic resize and centre crop; CLIP's BPE vocabulary,
   context 32); seeded random initialisation;
2. a short training run with open_clip.ClipLoss and torch AdamW on datasets/shapes/train.tsv
   (eval transform, batch 128, STEPS steps) so that the predictions are far from uniform;
3. the state dict saved as safetensors with open_clip's keys (model.safetensors, config in model.json);
4. open_clip.build_zero_shot_classifier with the 64 classes of datasets/shapes/labels.txt and
   open_clip's 80 OPENAI_IMAGENET_TEMPLATES, then 100 · encode_image(preprocess(img), normalize) @ W
   on all 1,024 images of datasets/shapes/test_labels.tsv (open_clip's eval preprocess on PIL images).

zeroshot.safetensors holds, in test_labels.tsv order: logits [N, C], probabilities [N, C]
(softmax), predicted [N] int32 (argmax), truth [N] int32, image_embeds [N, D], classifier [C, D];
__metadata__: versions, seed, config, the image paths (relative to datasets/shapes), the class
names, the template set name, the training loss and the zero-shot top-1/top-5.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets/shapes"
SEED = 20260707
STEPS = 120
CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 48, "layers": 2, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
NAME = "mm-zeroshot-fixture"

from reference_env import ensure_reference_env, with_sorted_header  # noqa: E402

ensure_reference_env("open_clip", "torch", "safetensors")

import logging  # noqa: E402

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save  # noqa: E402

logging.disable(logging.WARNING)  # "no pretrained weights"


def read_tsv(path, columns):
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    at = [header.index(c) for c in columns]
    return [[row.split("\t")[i] for i in at] for row in lines[1:] if row]


def load_images(paths, preprocess):
    return torch.stack([preprocess(Image.open(DATA / p)) for p in paths])


def write(path, tensors, meta):
    tmp = path.with_suffix(".tmp")
    blob = save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata=meta)
    tmp.write_bytes(with_sorted_header(blob))
    os.replace(tmp, path)
    print(f"wrote {path}: {path.stat().st_size:,} bytes")


def train(model, preprocess, tokenizer):
    pairs = read_tsv(DATA / "train.tsv", ["filepath", "title"])
    images = load_images([p for p, _ in pairs], preprocess)
    texts = tokenizer([t for _, t in pairs])
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2}, {"params": rest, "weight_decay": 0}],
                                  lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.ClipLoss()
    order = torch.randperm(len(pairs))
    batch, losses = 128, []
    model.train()
    for step in range(STEPS):
        start = (step * batch) % (len(pairs) - batch)
        idx = order[start:start + batch]
        image_features, text_features, logit_scale = model(images[idx], texts[idx])[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        losses.append(loss.item())
    model.eval()
    return losses


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".build/fixtures/zeroshot"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{NAME}.json"
        path.write_text(json.dumps(CONFIG))
        open_clip.add_model_config(path)
    model, _, preprocess = open_clip.create_model_and_transforms(NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(NAME)

    t = time.time()
    losses = train(model, preprocess, tokenizer)
    print(f"trained {STEPS} steps in {time.time() - t:.0f} s: loss {losses[0]:.3f} → {losses[-1]:.3f}")

    classes = [line.strip() for line in (DATA / "labels.txt").read_text().splitlines() if line.strip()]
    samples = read_tsv(DATA / "test_labels.tsv", ["filepath", "label"])
    truth = torch.tensor([classes.index(label) for _, label in samples], dtype=torch.int32)
    with torch.no_grad():
        weights = open_clip.build_zero_shot_classifier(model, tokenizer, classes, open_clip.OPENAI_IMAGENET_TEMPLATES)
        images = torch.cat([model.encode_image(load_images([p for p, _ in samples[i:i + 256]], preprocess), normalize=True)
                            for i in range(0, len(samples), 256)])
        logits = 100.0 * images @ weights
        probabilities = logits.softmax(dim=1)
    predicted = logits.argmax(dim=1).to(torch.int32)
    top5 = (logits.topk(5, dim=1).indices == truth[:, None]).any(dim=1).float().mean().item()
    top1 = (predicted == truth).float().mean().item()
    print(f"open_clip zero-shot on {len(samples)} images: top-1 {top1:.3f}, top-5 {top5:.3f}, "
          f"{len(set(predicted.tolist()))} distinct predicted classes")

    meta = {
        "generator": "tools/make_zeroshot_fixture.py", "torch": torch.__version__,
        "open_clip": open_clip.__version__, "safetensors": safetensors.__version__, "seed": str(SEED),
        "config": json.dumps(CONFIG),
    }
    (out / "model.json").write_text(json.dumps(CONFIG) + "\n")
    write(out / "model.safetensors", model.state_dict(), meta)
    meta.update({
        "images": json.dumps([p for p, _ in samples]), "classes": json.dumps(classes), "templates": "openai",
        "train": json.dumps({"steps": STEPS, "batch": 128, "lr": 1e-3, "first_loss": losses[0], "last_loss": losses[-1]}),
        "top1": str(top1), "top5": str(top5),
    })
    write(out / "zeroshot.safetensors", {
        "logits": logits, "probabilities": probabilities, "predicted": predicted, "truth": truth,
        "image_embeds": images, "classifier": weights.T,
    }, meta)


if __name__ == "__main__":
    main()
