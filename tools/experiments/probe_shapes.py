"""Linear probe for the defaults study (docs/training.md, "Second pass"): is shape (and colour) linearly
present in a model's image embeddings of datasets/shapes?

    mm embed -c CHECKPOINT $(tail -n +2 datasets/shapes/train.tsv | cut -f1 | sed 's|^|datasets/shapes/|') -o DIR/train.npy
    mm embed -c CHECKPOINT $(tail -n +2 datasets/shapes/test.tsv | cut -f1 | sed 's|^|datasets/shapes/|') -o DIR/test.npy
    .venv-ref/bin/python tools/experiments/probe_shapes.py DIR
"""
import sys, numpy as np, csv, os
from sklearn.linear_model import LogisticRegression
d = sys.argv[1]  # folder with train.npy/train.npy.txt test.npy test.npy.txt
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../datasets/shapes")
def load(name, tsv):
    X = np.load(f"{d}/{name}.npy"); names = [l.rstrip("\n") for l in open(f"{d}/{name}.npy.txt")]
    m = {}
    with open(tsv) as f:
        r = csv.reader(f, delimiter="\t"); next(r)
        for row in r: m[os.path.abspath(os.path.join(root, row[0]))] = row[-1]
    y = [m[n] for n in names]
    return X, y
Xtr, ytr = load("train", root + "/train_labeled.tsv")
Xte, yte = load("test", root + "/test_labels.tsv")
for what, f in [("class", lambda s: s), ("colour", lambda s: s.split()[0]), ("shape", lambda s: s.split()[1])]:
    a = [f(s) for s in ytr]; b = [f(s) for s in yte]
    clf = LogisticRegression(max_iter=3000, C=10).fit(Xtr, a)
    print(what, "linear probe test acc %.3f" % clf.score(Xte, b))
print("shape probe train acc %.3f" % clf.score(Xtr, a))  # the last fit is shape's
