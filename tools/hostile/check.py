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
        p = subprocess.Popen([mm] + args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
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

    print(f"\n{len(failures)} of the cases failed" if failures else "\nall cases passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
