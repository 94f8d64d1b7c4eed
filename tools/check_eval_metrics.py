#!/usr/bin/env python3
"""Zero-shot and retrieval metrics computed by open_clip itself, on given embeddings.

Usage: check_eval_metrics.py DIR  — DIR holds float32 .npy files
  prompts.npy  [C*T, D]  text embeddings of every (class, template) prompt, class-major
  images.npy   [N, D]    image embeddings (normalised)
  texts.npy    [N, D]    caption embeddings, caption i belongs to image i (normalised)
  truth.npy    [N]       int64 class of each image
and meta.json {"classes": C, "templates": T}; or, for index search, gallery.npy [G, D],
queries.npy [Q, D] and meta.json {"k": K}. Prints one JSON object:
  weights    [C, D]  open_clip.build_zero_shot_classifier (its ensembling: normalise, mean, renormalise)
  top1, top5        open_clip_train.zero_shot.accuracy on 100 · images @ weights, divided by N
  retrieval         open_clip_train.train.get_clip_metrics(images, texts, logit_scale=1)
  search     [Q][K]  brute force in numpy: the K gallery rows with the highest dot product, best first
The prompt embeddings go through open_clip's real classifier builder via a stand-in model whose
encode_text looks the prompts up, so the averaging under test is open_clip's own code.
"""
import builtins
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import open_clip
from open_clip_train.train import get_clip_metrics
import open_clip_train.zero_shot as zero_shot
from open_clip_train.zero_shot import accuracy

# open_clip_train's accuracy() ends with float() of a 1-element array, which NumPy 2.x rejects;
# give that module a float() that accepts it, leaving its top-k logic untouched.
zero_shot.float = lambda x: builtins.float(np.asarray(x).reshape(-1)[0])


def main(folder):
    d = Path(folder)
    meta = json.loads((d / "meta.json").read_text())
    if (d / "gallery.npy").exists():
        gallery, queries = np.load(d / "gallery.npy"), np.load(d / "queries.npy")
        scores = queries.astype(np.float64) @ gallery.astype(np.float64).T
        order = np.argsort(-scores, axis=1, kind="stable")[:, : meta["k"]]
        print(json.dumps({"search": order.tolist(), "versions": {"numpy": np.__version__}}))
        return
    c, t = meta["classes"], meta["templates"]
    prompts = torch.from_numpy(np.load(d / "prompts.npy"))
    images = torch.from_numpy(np.load(d / "images.npy"))
    texts = torch.from_numpy(np.load(d / "texts.npy"))
    truth = torch.from_numpy(np.load(d / "truth.npy")).long()
    assert prompts.shape[0] == c * t, "prompts.npy needs classes × templates rows"

    # Prompt "class i, template j" is row i·T + j of prompts.npy.
    names = [f"c{i}" for i in range(c)]
    templates = [f"{{}}@t{j}" for j in range(t)]
    row = {f"c{i}@t{j}": i * t + j for i in range(c) for j in range(t)}

    class LookupModel:
        def encode_text(self, ids, normalize=False):
            e = prompts[ids]
            return F.normalize(e, dim=-1) if normalize else e

    def tokenizer(texts_):
        return torch.tensor([row[x] for x in texts_])

    weights = open_clip.build_zero_shot_classifier(LookupModel(), tokenizer, names, templates,
                                                   num_classes_per_batch=10, device="cpu")  # [D, C]
    logits = 100.0 * images @ weights
    top1, top5 = accuracy(logits, truth, topk=(1, min(5, c)))
    n = images.shape[0]
    retrieval = get_clip_metrics(images, texts, torch.tensor(1.0))
    print(json.dumps({
        "weights": weights.T.contiguous().flatten().tolist(),
        "top1": top1 / n,
        "top5": top5 / n,
        "retrieval": {k: float(v) for k, v in retrieval.items()},
        "versions": {"open_clip": open_clip.__version__, "torch": torch.__version__, "numpy": np.__version__},
    }))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
