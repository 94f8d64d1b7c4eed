#!/usr/bin/env python3
"""The open_clip baseline: trains open_clip on an evaluation set (the bundled shapes by default, or a folder
in the same layout such as `make eval-sets`' digits and patterns), so that mm's zero-shot accuracy can be
compared with open_clip's at the same number of steps or the same training time.

    .venv-ref/bin/python tools/train_openclip_reference.py [--out runs/openclip_shapes.jsonl]
    # or python3 tools/train_openclip_reference.py (creates .venv-ref from tools/requirements.txt when missing)
    # open_clip's own recipe (lr 5e-4, batch 64…) on mm's default small model, for 300 s of training:
    .venv-ref/bin/python tools/train_openclip_reference.py --data .build/datasets/digits --model mm-small \
        --lr 5e-4 --batch-size 64 --budget-seconds 300 --epochs 1000

`--budget-seconds S` measures the CPU seconds per step over steps 5–25, then sets the run's length to the
steps that fit in S CPU seconds of training (evaluation excluded; the cosine schedule ends there), so that
a budget gives open_clip the schedule it would have been given for that length. CPU time, not wall time,
so that runs on a shared machine compare fairly; in this mode images load in the training process (no
loader worker), so that the CPU time counts loading as mm's does. Compare with mm's user + system time
(`/usr/bin/time`), which also counts mm's evaluation after every epoch.
`--threads N` sets torch's threads (default 2).

Settings matched to `mm train datasets/shapes/train.tsv --val ... --epochs 5 --lr 1e-3 --warmup 50`:
- model: open_clip.create_model_and_transforms('mm-tiny') on Sources/MMCLIP/configs/mm-tiny.json
  (random init, logit_scale ln(1/0.07)); tokenizer open_clip.get_tokenizer('mm-tiny') (context 32);
- data: datasets/shapes/train.tsv (6,016 pairs), batch 128, reshuffled each epoch, last partial batch
  dropped → 47 steps per epoch, 235 steps; open_clip's train transform (RandomResizedCrop(64, scale
  0.9–1.0, bicubic), OpenAI mean/std, no colour jitter);
- optimiser: torch AdamW, lr 1e-3, betas (0.9, 0.98), eps 1e-6, weight decay 0.2 except on parameters
  with ndim < 2 or a name containing ln, bn, bias, logit_scale or embedding (the last is mm's rule;
  open_clip's main decays embeddings); open_clip's cosine_lr: 50 linear warm-up steps, then cosine to 0;
- loss: open_clip.ClipLoss (symmetric InfoNCE); logit_scale clamped to [0, ln 100] after each step;
- after each epoch (eval transform: resize 64 bicubic, centre crop, OpenAI mean/std):
  val_loss = ClipLoss over all 512 val.tsv pairs at once, i2t/t2i R@1 from open_clip's get_clip_metrics;
  zero-shot top-1/top-5 on test_labels.tsv with the 64 classes of labels.txt and the single template
  "a photo of a {}." (open_clip's build_zero_shot_classifier; top-k counted as its accuracy does).
train_loss is the mean step loss of the epoch; samples_per_s counts training steps only (no eval).
Seeds (init, shuffling, crops) are torch's here and mm's own in mm: the runs cannot match sample for
sample, only in outcome. Two threads (torch.set_num_threads(2)), one loader worker.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "Sources/MMCLIP/configs"


from reference_env import ensure_reference_env  # noqa: E402

ensure_reference_env("open_clip", "open_clip_train", "torch")

import open_clip  # noqa: E402
import torch  # noqa: E402
from open_clip_train.train import get_clip_metrics  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

try:
    from open_clip_train.scheduler import cosine_lr
except ImportError:  # the same formula as open_clip_train.scheduler.cosine_lr
    def cosine_lr(optimizer, base_lr, warmup, steps):
        def adjust(step):
            if step < warmup:
                lr = base_lr * (step + 1) / warmup
            else:
                lr = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup))) * base_lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            return lr
        return adjust


def read_tsv(path, columns):
    """Rows of a headed TSV as tuples of the named columns; image paths made absolute."""
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    index = [header.index(c) for c in columns]
    rows = [tuple(line.split("\t")[i] for i in index) for line in lines[1:] if line]
    return [(str(Path(path).parent / image), *rest) for image, *rest in rows]


class Rows(Dataset):
    """(image path, target) rows → (transformed image, target made by `prepare`)."""
    def __init__(self, rows, transform, prepare):
        self.rows, self.transform, self.prepare = rows, transform, prepare

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        image, target = self.rows[i]
        return self.transform(Image.open(image)), self.prepare(target)


def correct_in_top(logits, labels, ks):
    """open_clip_train.zero_shot.accuracy's counts (that one fails on numpy 2.4: float() of a 1-element array)."""
    hits = logits.topk(max(ks), dim=1).indices == labels[:, None]
    return [hits[:, :k].sum().item() for k in ks]


@torch.no_grad()
def evaluate(model, tokenizer, loss_fn, val_loader, classes, test_loader):
    model.eval()
    classifier = open_clip.build_zero_shot_classifier(model, tokenizer, classes, ["a photo of a {}."])
    image_feats, text_feats = [], []
    for images, texts in val_loader:
        image_feats.append(model.encode_image(images, normalize=True))
        text_feats.append(model.encode_text(texts, normalize=True))
    image_feats, text_feats = torch.cat(image_feats), torch.cat(text_feats)
    scale = model.logit_scale.exp()
    metrics = get_clip_metrics(image_feats, text_feats, scale)
    top1 = top5 = n = 0
    for images, labels in test_loader:
        logits = model.encode_image(images, normalize=True) @ classifier
        a1, a5 = correct_in_top(logits, labels, (1, 5))
        top1, top5, n = top1 + a1, top5 + a5, n + images.size(0)
    model.train()
    return {"val_loss": loss_fn(image_feats, text_feats, scale).item(),
            "i2t_R@1": float(metrics["image_to_text_R@1"]), "t2i_R@1": float(metrics["text_to_image_R@1"]),
            "zeroshot_top1": top1 / n, "zeroshot_top5": top5 / n}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "runs/openclip_shapes.jsonl"), help="per-epoch JSON lines")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--wd", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=ROOT / "datasets/shapes", help="folder with train/val/test_labels.tsv, labels.txt")
    p.add_argument("--model", default="mm-tiny", help="a config of Sources/MMCLIP/configs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget-seconds", type=float, help="train for this many CPU seconds (schedule fitted to it)")
    args = p.parse_args()

    DATA = args.data
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    open_clip.add_model_config(str(CONFIGS / f"{args.model}.json"))
    model, train_transform, eval_transform = open_clip.create_model_and_transforms(args.model)
    tokenizer = open_clip.get_tokenizer(args.model)

    train_rows = read_tsv(DATA / "train.tsv", ["filepath", "title"])
    val_rows = read_tsv(DATA / "val.tsv", ["filepath", "title"])
    classes = (DATA / "labels.txt").read_text().splitlines()
    test_rows = [(image, classes.index(label)) for image, label in read_tsv(DATA / "test_labels.tsv", ["filepath", "label"])]

    tokens = lambda text: tokenizer([text])[0]
    loader = DataLoader(Rows(train_rows, train_transform, tokens), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=0 if args.budget_seconds else 1,
                        persistent_workers=not args.budget_seconds,
                        generator=torch.Generator().manual_seed(args.seed))
    val_loader = DataLoader(Rows(val_rows, eval_transform, tokens), batch_size=args.batch_size)
    test_loader = DataLoader(Rows(test_rows, eval_transform, int), batch_size=args.batch_size)

    def no_decay(name, p):
        return p.ndim < 2 or any(s in name for s in ("ln", "bn", "bias", "logit_scale", "embedding"))
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": args.wd},
    ], lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    total_steps = args.epochs * len(loader)
    scheduler = cosine_lr(optimizer, args.lr, args.warmup, total_steps)
    loss_fn = open_clip.ClipLoss()
    print(f"open_clip {open_clip.__version__}, torch {torch.__version__}: {args.model} on {len(train_rows)} pairs, "
          f"{len(loader)} steps per epoch of {args.batch_size}, {total_steps} steps", file=sys.stderr, flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    model.train()
    clock = time.process_time if args.budget_seconds else time.perf_counter
    step, start, train_seconds = 0, time.perf_counter(), 0.0
    timing = {}
    for epoch in range(args.epochs):
        losses, tick = [], clock()
        for images, texts in loader:
            if args.budget_seconds and step in (5, 25):
                timing[step] = train_seconds + clock() - tick
                if step == 25:
                    total_steps = max(26, int(args.budget_seconds / ((timing[25] - timing[5]) / 20)))
                    scheduler = cosine_lr(optimizer, args.lr, args.warmup, total_steps)
                    print(f"budget {args.budget_seconds:.0f} s: {total_steps} steps", file=sys.stderr, flush=True)
            if step >= total_steps:
                break
            scheduler(step)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(*model(images, texts)[:3])
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            step += 1
        train_time = clock() - tick
        train_seconds += train_time
        if not losses:
            break
        record = {"epoch": epoch + 1, "step": step, "train_loss": sum(losses) / len(losses),
                  **evaluate(model, tokenizer, loss_fn, val_loader, classes, test_loader),
                  "samples_per_s": len(losses) * args.batch_size / train_time, "train_seconds": train_seconds}
        print(json.dumps(record), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
    print(f"wall time {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
