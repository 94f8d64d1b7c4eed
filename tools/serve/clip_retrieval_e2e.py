"""clip-retrieval's pipeline and mm's on the same model and images: do they return the same rows?

1. open_clip (.venv-ref) embeds the shapes test images and captions with a ViT-B-32 checkpoint
   (as `clip-retrieval inference` does: eval transform, normalised, float16) and clip-retrieval's
   own writer (`OutputSink`) writes embeddings/ and metadata/;
2. clip-retrieval's `clip_index` (autofaiss 2.18, in .build/venv-clip-retrieval) builds
   index/image.index (HNSW15 for 1,000–10,000 rows) and index/text.index;
3. `mm index import` makes an .mmi of it with the same checkpoint, `mm search --text` queries it;
4. clip_back's answer for the same text (open_clip's text embedding, image.index read as clip_back
   reads it) and numpy's exact answer on the stored rows are compared with mm's.

    .venv-ref/bin/python tools/serve/clip_retrieval_e2e.py --mm .build/release/mm \
        --checkpoint .build/fixtures/vitb32/vitb32.safetensors --out /tmp/cr-e2e
"""
import argparse
import importlib.util
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["a red circle", "two small blue squares", "a green triangle on a white background"]


def load(relative):
    path = Path(sysconfig.get_paths()["purelib"]) / "clip_retrieval" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def embed_and_index(out, model, transform, tokenizer, paths, captions, side):
    """Steps 1 and 2: clip-retrieval's writer and indexer on open_clip's embeddings."""
    import torch
    from PIL import Image

    writer = load("clip_inference/writer.py")
    sink = writer.OutputSink(str(out / "embeddings"), enable_text=True, enable_image=True, enable_metadata=False,
                             partition_id=0, output_partition_count=1)
    with torch.no_grad():
        for start in range(0, len(paths), 64):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start:start + 64]])
            image = model.encode_image(batch, normalize=True).to(torch.float16).numpy()
            text = model.encode_text(tokenizer(captions[start:start + 64]), normalize=True).to(torch.float16).numpy()
            sink.add({"image_embs": image, "text_embs": text, "image_filename": paths[start:start + 64],
                      "text": captions[start:start + 64]})
        sink.flush()
    index_code = ("import importlib.util, sys, sysconfig, pathlib; p = pathlib.Path(sysconfig.get_paths()['purelib']) / "
                  "'clip_retrieval/clip_index.py'; s = importlib.util.spec_from_file_location('ci', p); m = "
                  "importlib.util.module_from_spec(s); s.loader.exec_module(m); m.clip_index(sys.argv[1], sys.argv[2], nb_cores=1)")
    subprocess.run([str(side), "-c", index_code, str(out / "embeddings"), str(out / "index")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mm", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args()

    import numpy as np
    import open_clip
    import torch
    from safetensors.torch import load_file

    out = Path(args.out)
    torch.set_num_threads(2)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    model.load_state_dict(load_file(args.checkpoint))
    transform = open_clip.image_transform(224, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    rows = [line.split("\t") for line in (ROOT / "datasets/shapes/test.tsv").read_text().splitlines()[1:]][:args.images]
    paths = [str(ROOT / "datasets/shapes" / p) for p, _ in rows]
    captions = [c for _, c in rows]

    with torch.no_grad():
        queries = model.encode_text(tokenizer(QUERIES), normalize=True).numpy()
    side = ROOT / ".build/venv-clip-retrieval/bin/python"
    if not (out / "index/image.index").exists():  # a rerun keeps the embeddings and faiss indexes
        embed_and_index(out, model, transform, tokenizer, paths, captions, side)
    mmi = out / "shapes.mmi"
    model_options = ["-c", args.checkpoint, "--model", "ViT-B-32"]
    subprocess.run([args.mm, "index", "import", str(out), *model_options, "-o", str(mmi)], check=True)

    # clip_back: faiss.read_index(path, IO_FLAG_MMAP | IO_FLAG_READ_ONLY), then index.search(query, k).
    faiss_code = ("import faiss, json, sys, numpy as np; i = faiss.read_index(sys.argv[1], faiss.IO_FLAG_MMAP | "
                  "faiss.IO_FLAG_READ_ONLY); q = np.array(json.loads(sys.stdin.read()), dtype='float32'); d, l = i.search(q, 10); "
                  "print(json.dumps({'ids': l.tolist(), 'kind': type(faiss.downcast_index(i)).__name__}))")
    faiss = json.loads(subprocess.run([str(side), "-c", faiss_code, str(out / "index/image.index")], check=True,
                                      input=json.dumps(queries.tolist()), capture_output=True, text=True).stdout)
    stored = np.concatenate([np.load(f).astype(np.float32) for f in sorted((out / "embeddings/img_emb").glob("*.npy"))])
    report = {"rows": len(paths), "faiss_index": faiss["kind"], "queries": []}
    for q, text in enumerate(QUERIES):
        found = json.loads(subprocess.run([args.mm, "search", str(mmi), *model_options, "--text", text, "-k", "10", "--json"],
                                          check=True, capture_output=True, text=True).stdout)["results"]
        mm_ids = [r["id"] for r in found]
        exact = list(np.argsort(-(stored @ queries[q]), kind="stable")[:10])
        report["queries"].append({
            "text": text, "mm_ids": mm_ids, "clip_back_ids": faiss["ids"][q], "numpy_exact_ids": [int(i) for i in exact],
            "mm_vs_clip_back_overlap": len(set(mm_ids) & set(faiss["ids"][q])),
            "mm_vs_exact_overlap": len(set(mm_ids) & set(int(i) for i in exact)),
            "mm_top_caption": captions[mm_ids[0]], "clip_back_top_caption": captions[faiss["ids"][q][0]],
        })
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
