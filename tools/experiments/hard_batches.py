"""Hard-negative batches for the defaults study (docs/training.md, "Second pass"): writes K WebDataset
shards, each one epoch of datasets/shapes/train.tsv arranged into consecutive batches of B samples, every
batch an anchor and its B−1 most similar unassigned pairs (FRAC of the batch; the rest random).

    .venv-ref/bin/python tools/experiments/hard_batches.py hard|pix|random K B OUT [FRAC]
    mm train 'OUT/{00000..000K-1}.tar' --train-num-samples 6016 --shuffle-buffer 0 --steps 1500 …

hard: tf-idf cosine of the caption words; pix: cosine of mean-centred 8×8 RGB thumbnails; random: a
plain shuffle (the control). With batch B = 64 and one rank, each epoch reads one shard whole, so the
batches the loss sees are exactly these.
"""
import sys, os, csv, io, tarfile, random, re, numpy as np
mode, K, B, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
frac = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0   # fraction of each batch chosen by similarity
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../datasets/shapes")
rows = list(csv.reader(open(root + "/train.tsv"), delimiter="\t"))[1:]
N = len(rows)
if mode == "pix":  # mean-centred 8x8 RGB thumbnails
    from PIL import Image
    X = np.stack([np.asarray(Image.open(os.path.join(root, p)).convert("RGB").resize((8, 8), Image.BILINEAR), np.float32).ravel()
                  for p, _ in rows])
    X -= X.mean(0)
else:  # tf-idf weighted caption words
    words = sorted({w for _, c in rows for w in re.findall(r"[a-z0-9-]+", c.lower())})
    idx = {w: i for i, w in enumerate(words)}
    X = np.zeros((N, len(words)), np.float32)
    for i, (_, c) in enumerate(rows):
        for w in set(re.findall(r"[a-z0-9-]+", c.lower())): X[i, idx[w]] = 1
    X *= np.log(N / X.sum(0))[None]
X /= np.linalg.norm(X, axis=1, keepdims=True)
os.makedirs(out, exist_ok=True)
imgs = [open(os.path.join(root, p), "rb").read() for p, _ in rows]
for k in range(K):
    rng = np.random.default_rng(k)
    perm = list(rng.permutation(N))
    order = []
    if mode == "random":
        order = perm
    else:
        alive = np.ones(N, bool)
        for a in perm:
            if not alive[a]: continue
            alive[a] = False
            batch = [a]
            nh = int(round((B - 1) * frac))
            s = X @ X[a]; s[~alive] = -9
            near = np.argsort(-s)[:nh]
            for j in near: alive[j] = False
            batch += list(near)
            rest = np.flatnonzero(alive)
            if B - len(batch) > 0 and len(rest):
                pick = rng.choice(rest, size=min(B - len(batch), len(rest)), replace=False)
                alive[pick] = False; batch += list(pick)
            order += batch
    with tarfile.open(f"{out}/{k:05d}.tar", "w") as t:
        for n, i in enumerate(order):
            p, c = rows[i]
            ext = p.rsplit(".", 1)[1]
            key = f"{k:05d}{n:06d}"
            for name, data in ((f"{key}.{ext}", imgs[i]), (f"{key}.txt", c.encode())):
                ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
print("wrote", K, "shards of", N)
