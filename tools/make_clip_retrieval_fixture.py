"""Writes the Parquet and clip-retrieval fixtures, with the values expected from them, by the real tools.

1. Tests/MMDataTests/Fixtures/parquet/*.parquet — pyarrow (.venv-ref) writes one table under
   several writer options: SNAPPY / GZIP / none / ZSTD, dictionary on and off (and a dictionary
   that overflows into PLAIN pages), data pages v1 and v2, several row groups and pages, nulls,
   every physical type mm reads, and a nested (list) column. expected.json holds the values as
   Python wrote them (floats as their bits in hex, bytes as hex, null as null) and, per file,
   what mm must say.

2. Tests/MMEvalTests/Fixtures/clip_retrieval/ — a clip-retrieval output folder made by
   clip-retrieval itself: its inference writer (`clip_retrieval.clip_inference.writer.OutputSink`,
   the code `clip-retrieval inference` runs after the model) writes embeddings/img_emb/*.npy,
   text_emb/*.npy and metadata/*.parquet from synthetic unit embeddings (float16, as its mapper
   casts them) in three partitions; then `clip_retrieval.clip_index.clip_index` (what
   `clip-retrieval index` runs) calls autofaiss's build_index for index/image.index and
   index/text.index and copies the metadata. Below 1,000 rows autofaiss picks a "Flat"
   inner-product index; the fixture stays that small to stay small. search.json holds queries with
   faiss's answer from image.index (read as clip_back reads it) and numpy's exact top 10.
   These run in .build/venv-clip-retrieval (tools/requirements-clip-retrieval.txt), made when missing.

    .venv-ref/bin/python tools/make_clip_retrieval_fixture.py
"""
import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARQUET = ROOT / "Tests/MMDataTests/Fixtures/parquet"
FOLDER = ROOT / "Tests/MMEvalTests/Fixtures/clip_retrieval"
SIDE_VENV = ROOT / ".build/venv-clip-retrieval"
ROWS = 200
PARTITIONS = [80, 70, 50]
DIM = 16
SEED = 7


def parquet_fixtures():
    sys.path.insert(0, str(ROOT / "tools"))
    from reference_env import ensure_reference_env
    ensure_reference_env("pyarrow", "numpy")
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    n = 100
    words = ["circle", "square", "triangle", "red", "green", "blue", "a photo of", "été", "日本", ""]
    text = [None if i % 7 == 3 else " ".join(words[(i * k) % len(words)] for k in range(1, 1 + i % 5)) for i in range(n)]
    columns = {
        "flag": pa.array([bool(i % 3 == 0) for i in range(n)], pa.bool_()),
        "maybe_flag": pa.array([None if i % 5 == 0 else bool(i % 2) for i in range(n)], pa.bool_()),
        "small": pa.array(rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32), pa.int32()),
        "big": pa.array([None if i % 11 == 0 else int(v) for i, v in enumerate(rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64))], pa.int64()),
        "ratio": pa.array(rng.standard_normal(n).astype(np.float32), pa.float32()),
        "score": pa.array([None if i % 4 == 1 else float(v) for i, v in enumerate(rng.standard_normal(n))], pa.float64()),
        "caption": pa.array(text, pa.string()),
        "category": pa.array([["cat", "dog", "bird"][i % 3] for i in range(n)], pa.string()),
        "blob": pa.array([bytes(rng.integers(0, 256, i % 9, dtype=np.uint8)) for i in range(n)], pa.binary()),
        "code": pa.array([None if i % 13 == 0 else bytes([i % 256, 7, 9, 255]) for i in range(n)], pa.binary(4)),
    }
    table = pa.table(columns)
    nested = pa.table({"id": pa.array(range(20), pa.int64()),
                       "tags": pa.array([[f"t{i}", f"u{i}"] if i % 2 else [] for i in range(20)], pa.list_(pa.string()))})

    def expected_values():
        out = {}
        for name, col in columns.items():
            values = col.to_pylist()
            if pa.types.is_binary(col.type) or pa.types.is_fixed_size_binary(col.type):
                values = [None if v is None else v.hex() for v in values]
            elif pa.types.is_floating(col.type):
                # Bit patterns in hex: exact whatever JSON reader the test uses.
                form, bits = ("<f", "<I") if pa.types.is_float32(col.type) else ("<d", "<Q")
                values = [None if v is None else format(struct.unpack(bits, struct.pack(form, v))[0], "x") for v in values]
            out[name] = {"type": str(col.type), "values": values}
        return out

    variants = {
        # pandas' default: snappy, dictionary, page v1, one row group
        "snappy_dictionary_v1": dict(compression="snappy"),
        "gzip_plain_v1": dict(compression="gzip", use_dictionary=False),
        "none_dictionary_v2": dict(compression="none", data_page_version="2.0"),
        # several row groups and pages, the dictionary overflowing into PLAIN pages
        "snappy_v2_row_groups_pages": dict(compression="snappy", data_page_version="2.0", row_group_size=30,
                                           data_page_size=128, dictionary_pagesize_limit=96),
        "gzip_v2_plain_pages": dict(compression="gzip", data_page_version="2.0", use_dictionary=False,
                                    row_group_size=48, data_page_size=200),
        "none_v1_pages": dict(compression="none", data_page_size=64, write_batch_size=16),
    }
    PARQUET.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, options in variants.items():
        pq.write_table(table, PARQUET / f"{name}.parquet", **options)
        meta = pq.ParquetFile(PARQUET / f"{name}.parquet").metadata
        files[name + ".parquet"] = {"options": options, "row_groups": meta.num_row_groups, "rows": n}
    pq.write_table(pa.table({"id": pa.array(range(20), pa.int64())}), PARQUET / "zstd.parquet", compression="zstd")
    pq.write_table(nested, PARQUET / "nested.parquet", compression="snappy")
    expected = {
        "writer": f"pyarrow {pa.__version__}",
        "script": "tools/make_clip_retrieval_fixture.py",
        "columns": expected_values(),
        "files": files,
        "zstd.parquet": {"error": "unsupported compression ZSTD"},
        "nested.parquet": {"id": list(range(20)), "error": "column 'tags.list.element' is a nested column"},
    }
    (PARQUET / "expected.json").write_text(json.dumps(expected, ensure_ascii=False) + "\n")
    print(f"wrote {len(files) + 2} parquet files under {PARQUET.relative_to(ROOT)}")


def ensure_side_venv():
    python = SIDE_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {SIDE_VENV} from tools/requirements-clip-retrieval.txt", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(SIDE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "tools/requirements-clip-retrieval.txt")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "clip-retrieval==2.45.0"], check=True)
    return python


def load_module(name, relative):
    # clip_retrieval/__init__.py imports its Flask back end: load the two modules from their files.
    import sysconfig
    path = Path(sysconfig.get_paths()["purelib"]) / "clip_retrieval" / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip_retrieval_folder():
    """Runs in the side venv."""
    import shutil
    import autofaiss
    import faiss
    import numpy as np

    writer = load_module("clip_writer", "clip_inference/writer.py")
    clip_index = load_module("clip_index", "clip_index.py")
    rng = np.random.default_rng(SEED)
    # Unit embeddings around 6 directions (so that neighbours are meaningful); texts near their image.
    centres = rng.standard_normal((6, DIM))
    cluster = rng.integers(0, 6, ROWS)
    images = centres[cluster] + 0.6 * rng.standard_normal((ROWS, DIM))
    texts = images + 0.3 * rng.standard_normal((ROWS, DIM))
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)  # noqa: E731
    images, texts = unit(images), unit(texts)

    if FOLDER.exists():
        shutil.rmtree(FOLDER)
    embeddings = FOLDER / "embeddings"
    first = 0
    written = {}  # sample rows as given to the writer, for the tests
    for partition, count in enumerate(PARTITIONS):
        sink = writer.OutputSink(str(embeddings), enable_text=True, enable_image=True, enable_metadata=True,
                                 partition_id=partition, output_partition_count=12)
        rows = range(first, first + count)
        meta = []
        for i in rows:
            m = {"url": f"https://example.com/photos/{i:05d}.jpg", "key": f"{i:09d}", "width": 200 + i % 97,
                 "similarity": round(0.25 + (i % 17) / 100, 4)}
            if i % 9 == 4:
                del m["similarity"]  # a missing value becomes a null
            meta.append(json.dumps(m))
        paths = [f"/data/photos/{i:05d}.jpg" for i in rows]
        captions = [f"photo {i} of cluster {cluster[i]}" + (" — été" if i % 10 == 0 else "") for i in rows]
        sink.add({"image_embs": images[first:first + count], "text_embs": texts[first:first + count],
                  "image_filename": paths, "text": captions, "metadata": meta})
        for j, i in enumerate(rows):
            if i in (0, 4, 79, 80, 150, 199):
                written[str(i)] = {"image_path": paths[j], "caption": captions[j], **json.loads(meta[j])}
        sink.flush()
        first += count
    clip_index.clip_index(str(embeddings), str(FOLDER / "index"), nb_cores=1)
    for name in ("image.json", "text.json"):  # autofaiss's build report: timings and absolute paths, unread by mm
        (FOLDER / "index" / name).unlink()

    # What clip_back answers: image.index read as it reads it, searched with the queries.
    index = faiss.read_index(str(FOLDER / "index/image.index"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    queries = np.concatenate([images[[5, 150, 199]].astype(np.float32),
                              unit(rng.standard_normal((3, DIM))).astype(np.float32)])
    distances, ids = index.search(queries, 10)
    rows = images.astype(np.float32)
    exact = queries @ rows.T
    order = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    search = {
        "faiss": faiss.__version__, "autofaiss": autofaiss.__version__ if hasattr(autofaiss, "__version__") else "2.18.0",
        "index": type(faiss.downcast_index(index)).__name__, "rows": ROWS, "dimension": DIM,
        "text_index": type(faiss.downcast_index(faiss.read_index(str(FOLDER / "index/text.index")))).__name__,
        "partitions": PARTITIONS, "written_rows": written,
        "queries": queries.tolist(),
        "faiss_ids": ids.tolist(), "faiss_scores": distances.tolist(),
        "exact_ids": order.tolist(), "exact_scores": np.take_along_axis(exact, order, axis=1).tolist(),
    }
    (FOLDER / "search.json").write_text(json.dumps(search) + "\n")
    print(f"wrote {FOLDER.relative_to(ROOT)}: {ROWS} rows, image.index {search['index']}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--folder"]:
        clip_retrieval_folder()
    else:
        parquet_fixtures()
        subprocess.run([str(ensure_side_venv()), str(Path(__file__).resolve()), "--folder"], check=True)
