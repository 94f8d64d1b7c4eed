"""Loading ViT-B-32, mm vs open_clip, one run (issue 15): time to first embedding and peak RSS.

Random ViT-B-32 weights (seeded) are written once to .build/bench/load/ as
  vitb32.pt           torch.save(model.state_dict())            (mm: no flags, config inferred)
  vitb32.safetensors  safetensors with mm's metadata            (mm: config from the metadata)
  vitb32_jit.pt       torch.jit.save of the model, fp16 storages (mm: TorchScript, OpenAI layout)
and each is loaded, then one caption embedded, in a fresh process, 2 threads each:
  mm         `mm embed -c FILE --text "…"`: the whole process, wall time and peak RSS
  open_clip  create_model_and_transforms("ViT-B-32", pretrained=FILE) + tokenizer + encode_text,
             timed inside the process (after `import open_clip`), and the whole process as well.
Run: .venv-ref/bin/python tools/bench/bench_load.py  (after `swift build -c release`)."""
import json, os, resource, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MM = os.path.join(ROOT, ".build", "release", "mm")
OUT = os.path.join(ROOT, ".build", "bench", "load")
THREADS = "2"
CAPTION = "a photo of a red car"
WEIGHTS_MB = 151_277_313 * 4 / 2**20  # ViT-B-32's parameters as float32, what both sides hold


def make_files():
    import torch, open_clip
    from safetensors.torch import save_file
    pt, st, jit = (os.path.join(OUT, n) for n in ("vitb32.pt", "vitb32.safetensors", "vitb32_jit.pt"))
    if all(os.path.exists(p) for p in (pt, st, jit)):
        return pt, st, jit
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    state = model.state_dict()
    torch.save(state, pt)
    config = open_clip.get_model_config("ViT-B-32")
    save_file({k: v.contiguous() for k, v in state.items()}, st,
              metadata={"model_config": json.dumps(config), "activation": "gelu"})
    half = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    half.load_state_dict(state)
    open_clip.model.convert_weights_to_fp16(half)
    mask = half._buffers.pop("attn_mask")
    half.attn_mask = mask
    torch.jit.save(torch.jit.script(half), jit)
    return pt, st, jit


def measure(cmd, env):
    """Wall time and this child's peak RSS (ru_maxrss of the children so far only grows, so each
    measurement runs through a wrapper process that reports its own child)."""
    wrapper = [sys.executable, __file__, "--wrap", json.dumps(cmd)]
    out = subprocess.run(wrapper, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def wrap(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
    inner = None
    for line in p.stdout.splitlines():
        if line.startswith("{\"load_s\""):
            inner = json.loads(line)["load_s"]
    print(json.dumps({"wall_s": wall, "inner_s": inner,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def open_clip_side(path):
    import torch, open_clip
    torch.set_num_threads(int(THREADS))
    t = time.perf_counter()
    model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=path)
    model.eval()
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        e = model.encode_text(tok([CAPTION]), normalize=True)
    print(json.dumps({"load_s": time.perf_counter() - t}))
    assert e.shape == (1, 512)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--wrap":
        return wrap(json.loads(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "--open-clip":
        return open_clip_side(sys.argv[2])
    if not os.path.exists(MM):
        subprocess.run(["swift", "build", "-c", "release", "--product", "mm"], cwd=ROOT, check=True)
    files = make_files()
    env = dict(os.environ, MM_THREADS=THREADS, OMP_NUM_THREADS=THREADS)
    print("| ViT-B-32 file | size MB | mm s | open_clip s (in process / whole) | open_clip ÷ mm | peak RSS MB mm / open_clip | mm RSS ÷ f32 weights |")
    print("|---|---|---|---|---|---|---|")
    for path in files:
        size = os.path.getsize(path) / 2**20
        # the page cache holds each file for both sides: read it once first
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
        ours = measure([MM, "embed", "-c", path, "--text", CAPTION], env)
        if path.endswith("_jit.pt"):  # open_clip loads OpenAI archives with load_openai_model
            ref = measure([sys.executable, "-c",
                           "import json,time,torch,open_clip;torch.set_num_threads(2);t=time.perf_counter();"
                           f"m=open_clip.load_openai_model({path!r},precision='fp32',device='cpu').eval();"
                           f"e=m.encode_text(open_clip.get_tokenizer('ViT-B-32')([{CAPTION!r}]));"
                           "print(json.dumps({'load_s':time.perf_counter()-t}))"], env)
        else:
            ref = measure([sys.executable, __file__, "--open-clip", path], env)
        print(f"| {os.path.basename(path)} | {size:.0f} | {ours['wall_s']:.2f} | {ref['inner_s']:.2f} / {ref['wall_s']:.2f} | "
              f"{ref['inner_s'] / ours['wall_s']:.1f}× | {ours['peak_rss_mb']:.0f} / {ref['peak_rss_mb']:.0f} | "
              f"{ours['peak_rss_mb'] / WEIGHTS_MB:.2f} |", flush=True)


if __name__ == "__main__":
    main()
