#!/usr/bin/env python3
"""Runs the release `mm` over the hostile inputs of make_inputs.py and checks, per case:
bad input → a non-zero exit (not a signal), a line on stderr naming the input, no line longer
than 400 characters, no hang (60 s), peak RSS under 1.5 GiB; inputs that are odd but valid
(CR or CRLF line ends, a name holding a line break, one image spelled twice) give the same
answer as their plain versions. Prints one line per case and exits 1 if any case fails.

    python3 tools/hostile/check.py --mm .build/release/mm DIR
"""
import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT = 60
RSS_LIMIT_KB = 1536 * 1024
MAX_LINE = 400


def run(mm, args, env):
    """(exit status or -signal, stdout, stderr, peak RSS in KiB, seconds)."""
    start = time.time()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([mm if os.sep in mm else shutil.which(mm)] + args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        deadline = start + TIMEOUT
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                os.killpg(p.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(p.pid, 0)
                return None, "", "", usage.ru_maxrss, TIMEOUT
            time.sleep(0.05)
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace"), usage.ru_maxrss, time.time() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mm", required=True)
    parser.add_argument("dir")
    a = parser.parse_args()
    mm = str(Path(a.mm).resolve())
    d = Path(a.dir).resolve()
    cache = tempfile.mkdtemp(prefix="mm-hostile-cache-")
    env = dict(os.environ, MM_THREADS="2", MM_CACHE_DIR=cache)
    good = str(d / "good.safetensors")
    ok = str(d / "images" / "ok0.jpg")
    failures = []

    def check(label, ok_condition, detail):
        print(("ok    " if ok_condition else "FAIL  ") + label + ("" if ok_condition else f"  — {detail}"))
        if not ok_condition:
            failures.append(label)

    def bad(label, args, names):
        """Bad input: non-zero exit, a short line naming one of `names`, bounded time and memory."""
        code, out, err, rss, secs = run(mm, args, env)
        lines = [line for line in err.splitlines() if line.strip()]
        problems = []
        if code is None:
            problems.append(f"hung (killed after {TIMEOUT} s)")
        elif code < 0:
            problems.append(f"killed by signal {-code}")
        elif code == 0:
            problems.append("exit status 0")
        if not any(any(n in line for n in names) for line in lines):
            problems.append(f"no stderr line names {names}: {lines[-3:]}")
        long = [line for line in lines if len(line) > MAX_LINE]
        if long:
            problems.append(f"a {len(long[0])}-character line")
        if rss > RSS_LIMIT_KB:
            problems.append(f"peak RSS {rss // 1024} MiB")
        if "nan" in out.lower():
            problems.append("printed nan")
        check(label, not problems, "; ".join(problems))

    def same(label, args_a, args_b):
        """Two spellings of one input: both succeed with the same output."""
        ra, rb = run(mm, args_a, env), run(mm, args_b, env)
        check(label, ra[0] == 0 and rb[0] == 0 and ra[1] == rb[1] and ra[1],
              f"exit {ra[0]} / {rb[0]}; {ra[2].strip()[-200:]} {rb[2].strip()[-200:]}")

    c = ["-c", good]
    # open_clip's 7 simple templates keep the 64 labels quick to embed (the default 80 add nothing here).
    simple = ["--templates", "simple"]
    labels = ["--labels", str(d / "labels.txt")] + simple

    # Image files that are not images (embed, zeroshot, and through a manifest in eval).
    for name in ["fifo.jpg", "zero.jpg", "sparse.jpg", "two_bytes.jpg", "text.jpg", "dir.jpg"]:
        bad(f"embed {name}", ["embed"] + c + [str(d / name)], [name])
        bad(f"zeroshot {name}", ["zeroshot"] + c + labels + ["--no-cache", ok, str(d / name)], [name])
    bad("eval zeroshot: a FIFO among the manifest's images", ["eval", "zeroshot"] + c + labels + [str(d / "fifo_image.tsv")], ["fifo.jpg"])

    # Checkpoints: NaN/Inf weights never print or write numbers; not-files refused.
    for ck in ["nan.safetensors", "inf.safetensors"]:
        cc = ["-c", str(d / ck)]
        bad(f"embed image with {ck}", ["embed"] + cc + [ok], [ck, "ok0.jpg"])
        bad(f"embed text with {ck}", ["embed"] + cc + ["--text", "a red circle"], [ck, "a red circle"])
        npy = str(d / f"out_{ck}.npy")
        bad(f"embed -o with {ck}", ["embed"] + cc + [ok, "-o", npy], [ck, "ok0.jpg"])
        check(f"embed -o with {ck} writes nothing", not Path(npy).exists(), "the .npy was written")
        bad(f"zeroshot with {ck}", ["zeroshot"] + cc + labels + ["--no-cache", ok], [ck, "label", "ok0.jpg"])
        bad(f"eval zeroshot with {ck}", ["eval", "zeroshot"] + cc + labels + ["--no-cache", str(d / "labels_manifest.tsv")], [ck, "label", ".jpg"])
        bad(f"eval retrieval with {ck}", ["eval", "retrieval"] + cc + [str(d / "pairs.tsv")], [ck, ".jpg", "caption"])
    for ck in ["truncated.safetensors", "fifo.jpg", "zero.tsv", "dir.jpg"]:
        bad(f"embed -c {ck}", ["embed", "-c", str(d / ck), ok], [ck])

    # Labels, templates, manifests and text files that are not what they claim.
    for name in ["labels_fifo.txt", "labels_zero.txt", "labels_binary.txt", "labels_empty.txt"]:
        bad(f"zeroshot --labels {name}", ["zeroshot"] + c + simple + ["--labels", str(d / name), ok], [name])
    plain_labels = ["--labels", str(d / "labels.txt")]
    bad("zeroshot --templates without {}", ["zeroshot"] + c + plain_labels + ["--templates", str(d / "templates_nobraces.txt"), ok], ["templates_nobraces.txt"])
    bad("zeroshot --templates FIFO", ["zeroshot"] + c + plain_labels + ["--templates", str(d / "labels_fifo.txt"), ok], ["labels_fifo.txt"])
    for name in ["fifo.tsv", "zero.tsv"]:
        bad(f"eval zeroshot {name}", ["eval", "zeroshot"] + c + labels + [str(d / name)], [name])
        bad(f"eval retrieval {name}", ["eval", "retrieval"] + c + [str(d / name)], [name])
    bad("eval retrieval: CR-only file without the columns (short message)", ["eval", "retrieval"] + c + [str(d / "no_header_cr.tsv")], ["no_header_cr.tsv"])
    bad("embed --texts FIFO", ["embed"] + c + ["--texts", str(d / "labels_fifo.txt")], ["labels_fifo.txt"])

    # Numeric options: zero, negative or absurd values are usage errors naming the option.
    for args, option in [(["eval", "zeroshot"] + c + labels + ["--workers", "0", str(d / "labels_manifest.tsv")], "--workers"),
                         (["eval", "retrieval"] + c + ["--workers", "-3", str(d / "pairs.tsv")], "--workers"),
                         (["embed"] + c + ["--batch-size", "0", ok], "--batch-size"),
                         (["embed"] + c + ["--batch-size", "1000000000", ok], "--batch-size"),
                         (["zeroshot"] + c + labels + ["-k", "0", ok], "-k"),
                         (["zeroshot"] + c + labels + ["--batch-size", "0", ok], "--batch-size")]:
        bad(f"{args[0]} {option} {args[args.index(option) + 1]}", args, [option])

    # Odd but valid: the same answers as the plain spelling.
    for name in ["labels_crlf.txt", "labels_cr.txt"]:
        same(f"zeroshot --labels {name} = LF labels", ["zeroshot"] + c + simple + ["--labels", str(d / name), "--json", "--no-cache", ok],
             ["zeroshot"] + c + labels + ["--json", "--no-cache", ok])
    lf_templates = d / "templates_lf.txt"
    lf_templates.write_bytes((d / "templates_crlf.txt").read_bytes().replace(b"\r\n", b"\n"))
    same("zeroshot --templates CRLF = LF", ["zeroshot"] + c + plain_labels + ["--templates", str(d / "templates_crlf.txt"), "--json", "--no-cache", ok],
         ["zeroshot"] + c + plain_labels + ["--templates", str(lf_templates), "--json", "--no-cache", ok])
    same("eval zeroshot: CR-only manifest = LF manifest", ["eval", "zeroshot"] + c + labels + ["--json", "--no-cache", str(d / "cr_only.tsv")],
         ["eval", "zeroshot"] + c + labels + ["--json", "--no-cache", str(d / "labels_manifest.tsv")])
    same("embed --texts with CR/CRLF = --text each", ["embed"] + c + ["--texts", str(d / "texts.txt")],
         ["embed"] + c + ["--text", "a red circle", "--text", "a blue square", "--text", "green star"])

    # The same image twice is one row; a name with a line break keeps the rows aligned.
    os.chdir(d / "images")
    code, out, err, _, _ = run(mm, ["embed"] + c + ["ok1.jpg", "./ok1.jpg", str(d / "images" / "ok1.jpg")], env)
    check("embed x.jpg ./x.jpg /abs/x.jpg is one row", code == 0 and len(out.splitlines()) == 1, f"exit {code}, {len(out.splitlines())} rows")
    npy = d / "names.npy"
    code, out, err, _, _ = run(mm, ["embed"] + c + [str(d / "new\nline.jpg"), "ok2.jpg", "-o", str(npy)], env)
    names = Path(str(npy) + ".txt").read_text().split("\n")[:-1] if code == 0 else []
    check("embed -o: a name with a line break keeps one line per row, absolute paths",
          code == 0 and len(names) == 2 and names[0] == str(d / "new\\nline.jpg") and names[1] == str(d / "images" / "ok2.jpg"),
          f"exit {code}: {names} {err.strip()[-200:]}")

    # Degenerate models never look perfect (ties are not wins).
    code, out, err, _, _ = run(mm, ["eval", "retrieval", "-c", str(d / "zero_proj.safetensors"), "--json", str(d / "pairs.tsv")], env)
    if code == 0:
        r = json.loads(out.strip().splitlines()[-1])
        check("eval retrieval: a zeroed projection is not R@1 = 100 %", r["image_to_text_R@1"] < 1 and r["text_to_image_R@1"] < 1, str(r))
    else:
        check("eval retrieval: a zeroed projection is refused", code > 0 and len(err.strip().splitlines()) >= 1, f"exit {code}")

    # The label cache: an entry corrupted on disk is rebuilt, never trusted.
    first = run(mm, ["zeroshot"] + c + labels + ["--json", ok], env)
    entries = list(Path(cache, "zeroshot").glob("*.safetensors"))
    for entry in entries:
        data = bytearray(entry.read_bytes())
        n = struct.unpack("<Q", data[:8])[0]
        start = 8 + n
        data[start:] = struct.pack("<f", float("nan")) * ((len(data) - start) // 4)
        entry.write_bytes(bytes(data))
    second = run(mm, ["zeroshot"] + c + labels + ["--json", ok], env)
    check("zeroshot: a corrupted cache entry is rebuilt", first[0] == 0 and entries and second[0] == 0 and second[1] == first[1],
          f"exit {first[0]}/{second[0]}, {len(entries)} entries, {second[1][:200]}")

    # Indexes: damaged or not-a-file indexes, hostile texts and folders, outputs that cannot be written.
    gi = str(d / "good.mmi")
    for name in ["truncated.mmi", "flipped.mmi", "empty.mmi", "fifo.mmi", "zero.mmi", "dir.mmi", "good.safetensors"]:
        bad(f"search {name}", ["search"] + c + [str(d / name), "--text", "a red circle"], [name])
        bad(f"index add {name}", ["index", "add"] + c + [str(d / name), ok], [name])
        bad(f"index export {name}", ["index", "export", str(d / name), "-o", str(d / f"export_{name}.npy")], [name])
    bad("search with another model's checkpoint", ["search", "-c", str(d / "zero_proj.safetensors"), gi, "--text", "x"], ["good.mmi", "model"])
    bad("search --image FIFO", ["search"] + c + [gi, "--image", str(d / "fifo.jpg")], ["fifo.jpg"])
    bad("search -k 0", ["search"] + c + [gi, "--text", "x", "-k", "0"], ["-k"])
    bad("search without a query", ["search"] + c + [gi], ["--text", "--image"])
    for name in ["labels_fifo.txt", "labels_zero.txt", "labels_binary.txt"]:
        bad(f"index build --texts {name}", ["index", "build"] + c + ["--texts", str(d / name), "-o", str(d / "t.mmi")], [name])
    for name in ["fifo.tsv", "zero.tsv", "no_header_cr.tsv"]:
        bad(f"index build --captions {name}", ["index", "build"] + c + ["--captions", str(d / name), "-o", str(d / "t.mmi")], [name])
    bad("index build -o into a missing folder", ["index", "build"] + c + [ok, "-o", str(d / "missing" / "g.mmi")], ["missing/g.mmi"])
    bad("index build -o a folder", ["index", "build"] + c + [ok, "-o", str(d / "dir.jpg")], ["dir.jpg"])
    bad("index build --batch-size 0", ["index", "build"] + c + [ok, "-o", str(d / "t.mmi"), "--batch-size", "0"], ["--batch-size"])
    bad("index build --nprobe 0", ["index", "build"] + c + [ok, "-o", str(d / "t.mmi"), "--ann", "ivf-pq", "--nprobe", "0"], ["--nprobe"])
    bad("index build: only FIFOs and empty images", ["index", "build"] + c + [str(d / "fifo.jpg"), str(d / "odd_images" / "empty.jpg"), "-o", str(d / "t.mmi")],
        ["fifo.jpg", "empty.jpg"])
    bad("index build: a folder with a FIFO and an empty image (the rest indexed, exit 1)",
        ["index", "build"] + c + [str(d / "odd_images"), "-o", str(d / "odd.mmi")], ["pipe.jpg", "empty.jpg"])
    code, out, err, _, secs = run(mm, ["index", "build"] + c + [str(d / "loop"), "-o", str(d / "loop.mmi")], env)
    check("index build: a folder holding a symlink loop ends, each image once",
          code == 0 and "indexed 1 images" in err, f"exit {code} after {secs:.0f} s: {err.strip()[-300:]}")
    bad("index export -o the index itself", ["index", "export", gi, "-o", gi], ["good.mmi"])
    bad("index export -o into a missing folder", ["index", "export", gi, "-o", str(d / "missing" / "e.npy")], ["missing/e.npy"])
    code, out, err, _, _ = run(mm, ["index", "build"] + c + [str(d / "new\nline.jpg"), ok, "-o", str(d / "nl.mmi")], env)
    code2, _, err2, _, _ = run(mm, ["index", "export", str(d / "nl.mmi"), "-o", str(d / "nl.npy")], env)
    rows = Path(d / "nl.npy.txt").read_text().split("\n")[:-1] if code2 == 0 else []
    check("index export: a name with a line break keeps one line per row", code == 0 and code2 == 0 and len(rows) == 2,
          f"exit {code}/{code2}: {rows} {err2.strip()[-200:]}")
    for fs, why in [("full", "No space left"), ("readonly", "Read-only")]:
        if (d / fs).is_dir():
            bad(f"index build -o on a {fs} filesystem", ["index", "build"] + c + [ok, "-o", str(d / fs / "g.mmi")], [f"{fs}/g.mmi"])
            bad(f"index export -o on a {fs} filesystem", ["index", "export", gi, "-o", str(d / fs / "g.npy")], [f"{fs}/g.npy"])
            bad(f"embed -o on a {fs} filesystem", ["embed"] + c + [ok, "-o", str(d / fs / "e.npy")], [f"{fs}/e.npy"])
            bad(f"train -o on a {fs} filesystem", ["train", str(d / "pairs.tsv"), "--model", "mm-tiny", "--steps", "1", "--batch-size", "4",
                                                   "-o", str(d / fs / "run")], [f"{fs}/run"])
            leftovers = [p.name for p in (d / fs).iterdir() if p.name != "filler"]
            check(f"nothing half-written left on the {fs} filesystem", not [n for n in leftovers if n.endswith(".tmp")], str(leftovers))
        else:
            print(f"skip  {fs} filesystem cases (mounting a tmpfs needs root)")

    # Labels files of other encodings and shapes.
    for name in ["labels_utf16.txt", "labels_nul.txt"]:
        bad(f"zeroshot --labels {name}", ["zeroshot"] + c + simple + ["--labels", str(d / name), "--no-cache", ok], [name])
    same("zeroshot --labels with a UTF-8 BOM = without", ["zeroshot"] + c + simple + ["--labels", str(d / "labels_bom.txt"), "--json", "--no-cache", ok],
         ["zeroshot"] + c + labels + ["--json", "--no-cache", ok])
    bad("zeroshot --labels: one class after duplicates", ["zeroshot"] + c + simple + ["--labels", str(d / "labels_dup.txt"), "--no-cache", ok],
        ["labels_dup.txt"])
    code, out, err, rss, secs = run(mm, ["zeroshot"] + c + simple + ["--labels", str(d / "labels_long_line.txt"), "--no-cache", ok], env)
    check("zeroshot --labels: an 8 MB line ends in bounded time and memory", code is not None and code >= 0 and rss < RSS_LIMIT_KB,
          f"exit {code} after {secs:.0f} s, {rss // 1024} MiB")

    # Shards: an empty image member is skipped and named; the rest indexed.
    bad("index build: a shard with an empty image", ["index", "build"] + c + [str(d / "empty_member.tar"), "-o", str(d / "s.mmi")], ["b", "empty"])

    # A run folder on a read-only filesystem: refused before training, naming it.
    if (d / "readonly_run").is_dir():
        bad("train --resume a run on a read-only filesystem", ["train", "--resume", str(d / "readonly_run" / "run"), "--steps", "4"], ["readonly_run"])

    # mm serve: startup flags and catalogs that cannot work end at once with one line.
    for name in ["indices_not_json.json", "indices_list.json", "indices_bad_name.json", "indices_fifo_index.json",
                 "indices_missing.json", "indices_deep.json", "indices_bom.json", "labels_fifo.txt", "labels_zero.txt"]:
        bad(f"serve --indices-paths {name}", ["serve"] + c + ["--port", "0", "--indices-paths", str(d / name)], [name, "fifo.mmi", "nowhere.mmi"])
    for name in ["fifo.mmi", "zero.mmi", "truncated.mmi"]:
        bad(f"serve {name}", ["serve"] + c + ["--port", "0", str(d / name)], [name])
    bad("serve with another model's index", ["serve", "-c", str(d / "zero_proj.safetensors"), "--port", "0", gi], ["good"])
    for flag, value in [("--port", "70000"), ("--port", "-1"), ("--max-body-mb", "0"), ("--max-results", "0"), ("--queue-limit", "0"),
                        ("--idle-seconds", "nan"), ("--body-seconds", "-1"), ("--log-level", "loud")]:
        bad(f"serve {flag} {value}", ["serve"] + c + [gi, flag, value], [flag])
    bad("serve --host that cannot be bound", ["serve"] + c + [gi, "--port", "0", "--host", "203.0.113.9"], ["203.0.113.9"])
    bad("serve --index with a bad name", ["serve"] + c + ["--index", "a b=" + gi], ["a b"])

    # mm train: manifests, run folders to resume, option combinations.
    tiny = ["--model", "mm-tiny", "--steps", "1", "--batch-size", "4", "--warmup", "1"]
    out_dir = lambda name: ["-o", str(d / "runs" / f"new_{name}")]
    for name in ["fifo.tsv", "zero.tsv", "dir.jpg", "empty.tsv", "header_only.tsv", "utf16.tsv", "binary.tsv", "no_header_cr.tsv"]:
        bad(f"train {name}", ["train", str(d / name)] + tiny + out_dir(name), [name])
    for name in ["empty", "run_garbage", "run_fifo", "run_zero", "run_types", "run_huge_batch", "run_negative_epochs", "run_nan_lr",
                 "run_pairs_fifo", "run_vocab_zero", "run_log_fifo", "latest_truncated", "latest_fifo", "latest_nan", "latest_missing"]:
        if (d / "runs" / name).exists():
            bad(f"train --resume {name}", ["train", "--resume", str(d / "runs" / name)], [name, "fifo.tsv", "/dev/zero"])
    bad("train --resume a missing folder", ["train", "--resume", str(d / "runs" / "nowhere")], ["nowhere"])
    bad("train --resume a file", ["train", "--resume", str(d / "a_file")], ["a_file"])
    if (d / "runs" / "run_log_garbage").exists():
        code, out, err, _, _ = run(mm, ["train", "--resume", str(d / "runs" / "run_log_garbage"), "--steps", "3"], env)
        check("train --resume with garbage lines in log.jsonl continues", code == 0, f"exit {code}: {err.strip()[-300:]}")
    for args, names in [(["--lr", "nan"], ["--lr"]), (["--lr", "-1"], ["--lr"]), (["--lr", "inf"], ["--lr"]), (["--steps", "0"], ["--steps"]),
                        (["--epochs", "0"], ["--epochs"]), (["--batch-size", "0"], ["--batch-size"]), (["--workers", "0"], ["--workers"]),
                        (["--workers", "100000"], ["--workers"]), (["--accum-freq", "0"], ["--accum-freq"]), (["--warmup", "-1"], ["--warmup"]),
                        (["--wd", "nan"], ["--wd"]), (["--grad-clip", "-1"], ["--grad-clip"]), (["--max-minutes", "-1"], ["--max-minutes"]),
                        (["--mpi-timeout", "0"], ["--mpi-timeout"]),
                        (["--val", str(d / "fifo.tsv")], ["fifo.tsv"]), (["--val", str(d / "zero.tsv")], ["zero.tsv"]),
                        (["--zeroshot-labels", str(d / "labels_fifo.txt"), "--zeroshot-data", str(d / "labels_manifest.tsv")], ["labels_fifo.txt"]),
                        (["--zeroshot-labels", str(d / "labels.txt")], ["--zeroshot-data"]),
                        (["--pretrained", str(d / "fifo.jpg")], ["fifo.jpg"]), (["--pretrained", str(d / "nan.safetensors")], ["nan.safetensors"]),
                        (["--vocab", str(d / "fifo.jpg")], ["fifo.jpg"]), (["--vocab", str(d / "a_file")], ["a_file"])]:
        bad(f"train {' '.join(a if '/' not in a else Path(a).name for a in args)}", ["train", str(d / "pairs.tsv")] + tiny + args + out_dir("opt"), names)
    bad("train --model FIFO", ["train", str(d / "pairs.tsv"), "--model", str(d / "fifo.jpg"), "--steps", "1"] + out_dir("m1"), ["fifo.jpg"])
    bad("train --model garbage config", ["train", str(d / "pairs.tsv"), "--model", str(d / "garbage_model.json"), "--steps", "1"] + out_dir("m2"),
        ["garbage_model.json"])
    bad("train -o an existing file", ["train", str(d / "pairs.tsv")] + tiny + ["-o", str(d / "a_file")], ["a_file"])
    bad("train into a run folder without --resume or --overwrite", ["train", str(d / "pairs.tsv")] + tiny + ["-o", str(d / "run")], ["run"])
    bad("train --resume with a pairs file", ["train", str(d / "pairs.tsv"), "--resume", str(d / "run")], ["--resume", "pairs"])

    # Thread limits: a process that cannot start its threads says so (root runs the case as nobody).
    if os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("prlimit"):
        scratch = Path(tempfile.mkdtemp(prefix="mm-hostile-nproc-"))
        os.chmod(scratch, 0o777)
        limited = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "prlimit", "--nproc=1", mm]
        # OpenBLAS starts its own pool when it loads, before mm runs, and raises SIGINT when it
        # cannot; mm uses it single-threaded, so these cases keep that pool out.
        blas_env = dict(env, OPENBLAS_NUM_THREADS="1")
        for label, args in [("train", ["train", str(d / "pairs.tsv")] + tiny + ["-o", str(scratch / "run")]),
                            ("embed", ["embed"] + c + [ok])]:
            code, out, err, _, secs = run(limited[0], limited[1:] + args, blas_env)
            check(f"{label} under ulimit -u 1: one line, exit 1", code == 1 and "cannot start thread" in err,
                  f"exit {code} after {secs:.0f} s: {err.strip()[-300:]}")
        code, out, err, _, secs = run(limited[0], limited[1:-1] + ["env", "MM_THREADS=1", mm, "train", str(d / "pairs.tsv")] + tiny
                                      + ["--workers", "2", "-o", str(scratch / "run1")], blas_env)
        check("train --workers 2 under ulimit -u 1 (kernels on one thread): one line, exit 1", code == 1 and "cannot start thread" in err,
              f"exit {code} after {secs:.0f} s: {err.strip()[-300:]}")
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print("skip  thread-limit cases (need root, setpriv and prlimit)")

    for fs in ("full", "readonly", "readonly_run"):
        subprocess.run(["umount", str(d / fs)], stderr=subprocess.DEVNULL, check=False)
    print(f"\n{len(failures)} of the cases failed" if failures else "\nall cases passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
