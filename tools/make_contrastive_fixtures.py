#!/usr/bin/env python3
"""Golden fixtures for the contrastive family (Sources/MMCLIP/Losses.swift, Sources/MMTrain/
Objective.swift, FeatureQueue.swift), produced by the reference: open_clip's ClipLoss and
SigLipLoss where open_clip has the loss, otherwise the loss written here in PyTorch the way its
paper's public code computes it (SLIP's SIMCLRLoss, ALBEF's queue and soft targets, BYOL's
normalised MSE, MoCo's momentum update and ring-buffer queue).

    python3 tools/make_contrastive_fixtures.py   # creates .venv-ref when missing

Writes Tests/MMTrainTests/Fixtures/contrastive.safetensors (float32 / int32). Per case:
    <case>.in.<name>      float input            <case>.ids.<name>   int32 input (keys)
    <case>.out            forward value           <case>.grad.<name>  d out / d input
__metadata__: versions, seed, `cases` and `<case>.attrs` (JSON) per case.
Momentum cases: `momentum.in.*` → `momentum.out.<key>` after three updates.
Queue case: `queue.in.batch<i>` enqueued in order → `queue.out.image` rows and attrs pointer/count.
"""

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261123
PATH = ROOT / "Tests/MMTrainTests/Fixtures/contrastive.safetensors"

from reference_env import ensure_reference_env, with_sorted_header  # noqa: E402

ensure_reference_env("open_clip", "safetensors", "torch")

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from open_clip.loss import ClipLoss, SigLipLoss  # noqa: E402
from safetensors.torch import save  # noqa: E402

torch.manual_seed(SEED)
tensors, meta, cases = {}, {
    "generator": "tools/make_contrastive_fixtures.py",
    "torch": torch.__version__,
    "open_clip": open_clip.__version__,
    "safetensors": safetensors.__version__,
    "seed": str(SEED),
}, []


def case(name, attrs, inputs, ids, loss_fn):
    """Runs loss_fn(**inputs) with autograd and stores inputs, keys, value and input gradients."""
    cases.append(name)
    meta[f"{name}.attrs"] = json.dumps(attrs)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = loss_fn(**leaves)
    out.backward()
    tensors[f"{name}.out"] = out.detach().clone()
    for k, v in leaves.items():
        tensors[f"{name}.in.{k}"] = v.detach().clone()
        grad = v.grad if v.grad is not None else torch.zeros_like(v)  # a detached input: no gradient
        tensors[f"{name}.grad.{k}"] = grad.detach().clone()
    for k, v in ids.items():
        tensors[f"{name}.ids.{k}"] = v.to(torch.int32).contiguous()


def unit(n, d):
    return F.normalize(torch.randn(n, d), dim=-1)


def positives(rows_caption, rows_label, cols_caption, cols_label):
    """mask[i, j]: same caption key, or same (non-negative) label."""
    same = rows_caption[:, None] == cols_caption[None, :]
    if rows_label is not None:
        same |= (rows_label[:, None] == cols_label[None, :]) & (rows_label[:, None] >= 0)
    return same


def soft_ce(logits, mask):
    """ALBEF-style cross-entropy against soft targets: the uniform distribution over positives."""
    targets = mask.float() / mask.float().sum(1, keepdim=True)
    return -(F.log_softmax(logits, dim=1) * targets).sum(1).mean()


N, D, K = 6, 8, 5
# Duplicates on purpose: captions 0 = 3, 1 = 4, label 2 = 5 (and queue rows matching batch rows).
caption = torch.tensor([10, 11, 12, 10, 11, 13])
label = torch.tensor([0, 1, 2, 0, 1, 2])
queue_caption = torch.tensor([12, 20, 10, 21, 22])
queue_label = torch.tensor([2, 3, 0, -1, 1])
scale = torch.tensor(2.3)


# --- InfoNCE: open_clip's ClipLoss, then with a queue / multi-positive targets (ALBEF's form).
def clip_loss(image, text, logit_scale):
    return ClipLoss()(image, text, logit_scale.exp())


case("infonce", {}, {"image": unit(N, D), "text": unit(N, D), "logit_scale": scale}, {}, clip_loss)


def queued_loss(image, text, logit_scale, queue_image, queue_text, mask=None):
    s = logit_scale.exp()
    i2t = s * image @ torch.cat([text, queue_text.detach()]).t()
    t2i = s * text @ torch.cat([image, queue_image.detach()]).t()
    if mask is None:
        target = torch.arange(image.shape[0])
        return (F.cross_entropy(i2t, target) + F.cross_entropy(t2i, target)) / 2
    return (soft_ce(i2t, mask) + soft_ce(t2i, mask)) / 2


qi, qt = unit(K, D), unit(K, D)
inputs = {"image": unit(N, D), "text": unit(N, D), "logit_scale": scale}
case("infonce_queue", {}, inputs, {},
     lambda image, text, logit_scale: queued_loss(image, text, logit_scale, qi, qt))
tensors["infonce_queue.const.queue_image"], tensors["infonce_queue.const.queue_text"] = qi, qt


def multi_loss(image, text, logit_scale, labels):
    s = logit_scale.exp()
    mask = positives(caption, label if labels else None, caption, label if labels else None)
    return (soft_ce(s * image @ text.t(), mask) + soft_ce(s * text @ image.t(), mask)) / 2


base = {"image": unit(N, D), "text": unit(N, D), "logit_scale": scale}
case("infonce_multi", {}, base, {"caption": caption},
     lambda image, text, logit_scale: multi_loss(image, text, logit_scale, False))
case("infonce_multi_labels", {}, base, {"caption": caption, "label": label},
     lambda image, text, logit_scale: multi_loss(image, text, logit_scale, True))
# Without duplicates the multi-positive loss is open_clip's ClipLoss (checked against its value).
case("infonce_multi_unique", {}, base, {"caption": torch.arange(N)}, clip_loss)

mask_q = positives(caption, label, torch.cat([caption, queue_caption]), torch.cat([label, queue_label]))
case("infonce_queue_multi", {}, inputs, {"caption": caption, "label": label,
                                          "queue_caption": queue_caption, "queue_label": queue_label},
     lambda image, text, logit_scale: queued_loss(image, text, logit_scale, qi, qt, mask_q))
tensors["infonce_queue_multi.const.queue_image"], tensors["infonce_queue_multi.const.queue_text"] = qi, qt


# --- NT-Xent, as SLIP's SIMCLRLoss computes it (two views, large negative on self-similarity).
def nt_xent(a, b, tau, mask=None):
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    if mask is None:
        big = 1e9
        self_mask = torch.eye(n) * big
        aa = a @ a.t() / tau - self_mask
        bb = b @ b.t() / tau - self_mask
        ab = a @ b.t() / tau
        ba = b @ a.t() / tau
        target = torch.arange(n)
        return (F.cross_entropy(torch.cat([ab, aa], 1), target) + F.cross_entropy(torch.cat([ba, bb], 1), target)) / 2
    # SupCon over the 2N views: positives are every other view with the same key.
    z = torch.cat([a, b])
    logits = z @ z.t() / tau - torch.eye(2 * n) * 1e9
    return soft_ce(logits, mask & ~torch.eye(2 * n, dtype=torch.bool))


views = {"a": torch.randn(N, D), "b": torch.randn(N, D)}
case("ntxent", {"temperature": 0.1}, views, {}, lambda a, b: nt_xent(a, b, 0.1))
mask2 = positives(torch.cat([caption, caption]), None, torch.cat([caption, caption]), None)
case("ntxent_multi", {"temperature": 0.05}, views, {"caption": caption}, lambda a, b: nt_xent(a, b, 0.05, mask2))


# --- Sigmoid: open_clip's SigLipLoss; multi-positive: +1 labels on every same-key pair.
def siglip(image, text, logit_scale, logit_bias):
    return SigLipLoss()(image, text, logit_scale.exp(), logit_bias)


sig = {"image": unit(N, D), "text": unit(N, D), "logit_scale": torch.tensor(2.3), "logit_bias": torch.tensor(-1.5)}
case("sigmoid", {}, sig, {}, siglip)


def siglip_multi(image, text, logit_scale, logit_bias):
    labels = 2 * positives(caption, None, caption, None).float() - 1
    logits = logit_scale.exp() * image @ text.t() + logit_bias
    return -F.logsigmoid(labels * logits).sum() / image.shape[0]


case("sigmoid_multi", {}, sig, {"caption": caption}, siglip_multi)


# --- BYOL's regression loss (mean over the batch of 2 − 2 cos); the target gets no gradient.
def byol(prediction, target):
    return (2 - 2 * (F.normalize(prediction, dim=-1) * F.normalize(target.detach(), dim=-1)).sum(-1)).mean()


case("byol", {}, {"prediction": torch.randn(N, D), "target": torch.randn(N, D)}, {}, byol)


# --- MoCo/BYOL momentum update θk ← m θk + (1 − m) θq, three steps with a changing online net.
cases.append("momentum")
meta["momentum.attrs"] = json.dumps({"momentum": 0.9, "steps": 3})
online, target = nn.Linear(D, 4), nn.Linear(D, 4)
for k, v in target.state_dict().items():
    tensors[f"momentum.in.target.{k}"] = v.clone()
for step in range(3):
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for k, v in online.state_dict().items():
            tensors[f"momentum.in.online{step}.{k}"] = v.clone()
        for pk, pq in zip(target.parameters(), online.parameters()):
            pk.data.mul_(0.9).add_(pq.data, alpha=0.1)
for k, v in target.state_dict().items():
    tensors[f"momentum.out.{k}"] = v.clone()

# --- The queue: MoCo's _dequeue_and_enqueue generalised to any batch size (rows written at
# ptr, ptr+1, … modulo K, one after another, so a batch larger than K keeps its last K rows).
cases.append("queue")
QK, sizes = 8, [3, 3, 4, 10]
queue = torch.zeros(QK, D)
keys = torch.full((QK,), -1, dtype=torch.int64)
ptr, count, serial = 0, 0, 0
for i, b in enumerate(sizes):
    batch = torch.randn(b, D)
    batch_keys = torch.arange(serial, serial + b)
    serial += b
    tensors[f"queue.in.batch{i}"] = batch
    tensors[f"queue.ids.keys{i}"] = batch_keys.to(torch.int32)
    for r in range(b):
        queue[ptr] = batch[r]
        keys[ptr] = batch_keys[r]
        ptr = (ptr + 1) % QK
    count = min(QK, count + b)
    tensors[f"queue.out.image{i}"] = queue.clone()
    tensors[f"queue.ids.out_keys{i}"] = keys.to(torch.int32).clone()
    meta[f"queue.after{i}"] = json.dumps({"pointer": ptr, "count": count})
meta["queue.attrs"] = json.dumps({"capacity": QK, "batches": len(sizes)})

meta["cases"] = json.dumps(cases)
PATH.parent.mkdir(parents=True, exist_ok=True)
tmp = PATH.with_suffix(".tmp")
tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
tmp.write_bytes(with_sorted_header(save(tensors, metadata=meta)))
os.replace(tmp, PATH)
print(f"wrote {PATH.relative_to(ROOT)}: {len(tensors)} tensors, {len(cases)} cases, {PATH.stat().st_size} bytes")
