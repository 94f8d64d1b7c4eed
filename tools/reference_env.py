"""The pinned PyTorch/open_clip reference environment (.venv-ref) for the scripts in tools/,
and what their fixture files share.

A script calls `ensure_reference_env("torch", "open_clip", ...)` before importing them: if they
are importable it returns; otherwise it creates .venv-ref from tools/requirements.txt (or installs
what an older venv lacks) and re-runs the script inside it.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-ref"


def ensure_reference_env(*modules):
    try:
        for name in modules:
            __import__(name)
        return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if os.environ.get("MM_REFERENCE_ENV"):  # already re-executed: don't loop
        sys.exit(f"error: {VENV} lacks one of {', '.join(modules)}; "
                 f"run `{python} -m pip install -r tools/requirements.txt`")
    if not (VENV / ".done").exists():  # the same stamp as `make venv`
        print(f"creating {VENV} from tools/requirements.txt (several GB)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import " + ", ".join(modules)], capture_output=True)
    if probe.returncode != 0:  # a new venv, or one made before a requirement was added
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "tools/requirements.txt")], check=True)
        (VENV / ".done").touch()
    os.environ["MM_REFERENCE_ENV"] = "1"
    script = Path(sys.argv[0]).resolve()
    os.execv(str(python), [str(python), str(script), *sys.argv[1:]])


def with_sorted_header(blob):
    """safetensors writes __metadata__ in hash order; sort the header so reruns are byte-identical
    (tensor offsets are relative to the data section, so they are unaffected)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]
