"""Queries `mm serve` with clip-retrieval's own ClipClient (PyPI `clip-retrieval`, pinned in
tools/requirements.txt) by text, by image and by embedding, and prints the three answers as JSON.

clip_retrieval/__init__.py imports its Flask back end (and through it torch, faiss, pandas…);
the client module itself imports only `requests`, so it is loaded from its file. CI installs the
package with `pip install --no-deps clip-retrieval==…` (see tools/requirements.txt).

    python3 tools/serve/clip_client_query.py http://127.0.0.1:PORT INDEX "a red circle" IMAGE.jpg EMBEDDING.json
"""
import importlib.util
import json
import sys
import sysconfig
from pathlib import Path


def load_client():
    for base in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]):
        path = Path(base) / "clip_retrieval" / "clip_client.py"
        if path.exists():
            spec = importlib.util.spec_from_file_location("clip_client", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit("clip_retrieval is not installed (pip install --no-deps clip-retrieval)")


def main():
    url, index, text, image, embedding_file = sys.argv[1:6]
    clip_client = load_client()
    client = clip_client.ClipClient(url=url + "/knn-service", indice_name=index, num_images=10,
                                    deduplicate=False, use_safety_model=True, use_violence_detector=True)
    embedding = json.loads(Path(embedding_file).read_text())
    answers = {
        "text": client.query(text=text),
        "image": client.query(image=image),
        "embedding": client.query(embedding_input=embedding),
    }
    # The texts modality: image → text rows (the class names indexed as texts).
    for dedup in (False, True):
        texts = clip_client.ClipClient(url=url + "/knn-service", indice_name=index, num_images=5,
                                       modality=clip_client.Modality.TEXT, deduplicate=dedup)
        answers["image_to_text" + ("_deduplicated" if dedup else "")] = texts.query(image=image)
    for results in answers.values():
        for r in results:
            r["image_bytes"] = len(r.pop("image", ""))  # base64 of the file: only its size is kept
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
