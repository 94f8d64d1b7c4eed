"""What the kernel benchmarks (bench_block.py, bench_conv.py) share: a median timer for the torch
side and one `mm-bench` run for mm's side."""
import json, os, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, ".build", "release", "mm-bench")


def median(f, n=5):
    """Seconds of one call of f: the median of n after one warm-up call."""
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2]


def mm_bench(threads, *args):
    """`mm-bench ARGS` with MM_THREADS=threads; its JSON line as a dict."""
    env = dict(os.environ, MM_THREADS=str(threads))
    out = subprocess.run([BENCH, *map(str, args)], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)
