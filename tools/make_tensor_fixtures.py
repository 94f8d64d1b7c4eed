#!/usr/bin/env python3
"""Golden fixtures for MMTensor and MMNN, produced by the reference (PyTorch + open_clip).

    make fixtures                          # or:
    python3 tools/make_tensor_fixtures.py  # creates .venv-ref from tools/requirements.txt when missing

Writes (all float32 / int32, computed in float32 like our kernels):
    Tests/MMTensorTests/Fixtures/ops.safetensors   one case per tensor op
    Tests/MMNNTests/Fixtures/block.safetensors     open_clip ResidualAttentionBlock / Transformer
    Tests/MMNNTests/Fixtures/adamw.safetensors     five torch.optim.AdamW steps on a small module

Key layout of ops/block (one prefix per case):
    <case>.in.<name>          float input          <case>.ids.<name>   int32 input
    <case>.param.<key>        module parameter (open_clip state_dict key)
    <case>.grad_out           upstream gradient (random normal, shape of out)
    <case>.out                forward output
    <case>.grad.<name>        d(out·grad_out)/d input,  <case>.grad.param.<key> for parameters
    <case>.state.<name>       a buffer an op updates in place (batch norm's running statistics),
    <case>.state_out.<name>   and its value after the op
__metadata__: versions, seed, `cases` (JSON list) and `<case>.attrs` (JSON object) per case.
"""

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 20260523
OPS_PATH = ROOT / "Tests/MMTensorTests/Fixtures/ops.safetensors"
BLOCK_PATH = ROOT / "Tests/MMNNTests/Fixtures/block.safetensors"
ADAMW_PATH = ROOT / "Tests/MMNNTests/Fixtures/adamw.safetensors"


from reference_env import ensure_reference_env, with_sorted_header  # noqa: E402

ensure_reference_env("open_clip", "safetensors", "torch")

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from open_clip.transformer import QuickGELU, ResidualAttentionBlock, Transformer  # noqa: E402
from safetensors.torch import save  # noqa: E402


def provenance():
    return {
        "generator": "tools/make_tensor_fixtures.py",
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "safetensors": safetensors.__version__,
        "seed": str(SEED),
        "dtype": "float32 compute, float32/int32 storage",
    }


class FixtureFile:
    """Collects tensors and metadata for one safetensors file."""

    def __init__(self, path):
        self.path, self.tensors, self.meta, self.cases = path, {}, provenance(), []

    def put(self, key, tensor):
        assert key not in self.tensors, key
        self.tensors[key] = tensor.detach().contiguous().clone()

    def begin(self, case, attrs):
        assert case not in self.cases, case
        self.cases.append(case)
        self.meta[f"{case}.attrs"] = json.dumps(attrs)

    def write(self):
        if self.cases:
            self.meta["cases"] = json.dumps(self.cases)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(with_sorted_header(save(self.tensors, metadata=self.meta)))
        os.replace(tmp, self.path)
        cases = f", {len(self.cases)} cases" if self.cases else ""
        print(f"wrote {self.path.relative_to(ROOT)}: {len(self.tensors)} tensors{cases}, "
              f"{self.path.stat().st_size} bytes")


def randn(*shape):
    return torch.randn(shape, dtype=torch.float32)


def op_case(fx, case, fn, inputs, ids=None, attrs=None):
    """Runs fn(**inputs, **ids) forward and backward; stores inputs, grad_out, out and input grads."""
    ids = ids or {}
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = fn(**leaves, **{k: v.long() for k, v in ids.items()})
    grad_out = randn(*out.shape)
    out.backward(grad_out)
    fx.begin(case, attrs or {})
    for k, v in inputs.items():
        fx.put(f"{case}.in.{k}", v)
    for k, v in ids.items():
        fx.put(f"{case}.ids.{k}", v.to(torch.int32))
    fx.put(f"{case}.grad_out", grad_out)
    fx.put(f"{case}.out", out)
    for k, v in leaves.items():
        fx.put(f"{case}.grad.{k}", v.grad)


def attention(qkv, heads, causal):
    """Packed qkv [B,L,3W] → [B,L,W], the head split open_clip's nn.MultiheadAttention uses."""
    b, l, w3 = qkv.shape
    w = w3 // 3
    q, k, v = (t.reshape(b, l, heads, w // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # scale head_dim^-0.5
    return o.transpose(1, 2).reshape(b, l, w)


def make_ops():
    torch.manual_seed(SEED)
    fx = FixtureFile(OPS_PATH)

    def mm(ta, tb):
        return lambda a, b: torch.matmul(a.transpose(-1, -2) if ta else a,
                                         b.transpose(-1, -2) if tb else b)

    def mm_attrs(ta, tb):
        return {"transpose_a": ta, "transpose_b": tb}

    for case, sa, sb, ta, tb in [
        ("matmul_nn", (5, 7), (7, 3), False, False),
        ("matmul_nt", (5, 7), (3, 7), False, True),
        ("matmul_tn", (7, 5), (7, 3), True, False),
        ("matmul_batched", (2, 3, 5, 7), (2, 3, 7, 4), False, False),
        ("matmul_batched_nt", (2, 3, 5, 7), (2, 3, 4, 7), False, True),
        ("matmul_linear", (2, 5, 7), (4, 7), False, True),  # 2-D b shared by all of a's rows
    ]:
        op_case(fx, case, mm(ta, tb), {"a": randn(*sa), "b": randn(*sb)}, attrs=mm_attrs(ta, tb))

    for case, fn, sa, sb in [
        ("add_same", torch.add, (3, 4), (3, 4)),
        ("add_broadcast", torch.add, (2, 3, 4), (4,)),
        ("sub_broadcast", torch.sub, (2, 3, 4), (3, 4)),
        ("sub_broadcast_left", torch.sub, (4,), (2, 3, 4)),
        ("mul_broadcast", torch.mul, (2, 3, 4), (4,)),
        ("mul_scalar", torch.mul, (3, 4), ()),
    ]:
        op_case(fx, case, lambda a, b, fn=fn: fn(a, b), {"a": randn(*sa), "b": randn(*sb)})

    op_case(fx, "scale", lambda x: x * 0.37, {"x": randn(3, 4)}, attrs={"scale": 0.37})
    op_case(fx, "sum", lambda x: x.sum(), {"x": randn(3, 4)})
    op_case(fx, "mean", lambda x: x.mean(), {"x": randn(3, 4)})

    op_case(fx, "reshape", lambda x: x.reshape(6, 4), {"x": randn(2, 3, 4)}, attrs={"shape": [6, 4]})
    op_case(fx, "permute", lambda x: x.permute(2, 0, 1), {"x": randn(2, 3, 4)},
            attrs={"dims": [2, 0, 1]})
    op_case(fx, "transpose", lambda x: x.transpose(-1, -2), {"x": randn(2, 3, 4)},
            attrs={"dims": [0, 2, 1]})
    op_case(fx, "slice", lambda x: x[:, 1:4], {"x": randn(4, 6)},
            attrs={"axis": 1, "start": 1, "end": 4})
    op_case(fx, "concat_axis1", lambda a, b: torch.cat([a, b], dim=1),
            {"a": randn(2, 3), "b": randn(2, 5)}, attrs={"axis": 1})
    op_case(fx, "concat_axis0", lambda a, b: torch.cat([a, b], dim=0),
            {"a": randn(2, 3), "b": randn(4, 3)}, attrs={"axis": 0})

    ids = torch.randint(0, 10, (2, 3))
    ids[1, 2] = ids[0, 0]  # a repeated id: its weight row's gradient must accumulate
    op_case(fx, "embedding", lambda weight, ids: F.embedding(ids, weight),
            {"weight": randn(10, 4)}, ids={"ids": ids})

    op_case(fx, "layernorm", lambda x, weight, bias: F.layer_norm(x, (8,), weight, bias, 1e-5),
            {"x": randn(3, 5, 8), "weight": 1 + 0.5 * randn(8), "bias": 0.5 * randn(8)},
            attrs={"eps": 1e-5})

    op_case(fx, "gelu", lambda x: F.gelu(x, approximate="none"),
            {"x": torch.rand(4, 9) * 8 - 4}, attrs={"approximate": "none"})
    op_case(fx, "quickgelu", lambda x: x * torch.sigmoid(1.702 * x), {"x": randn(4, 9)},
            attrs={"alpha": 1.702})
    op_case(fx, "softmax", lambda x: F.softmax(x, dim=-1), {"x": 3 * randn(3, 7)}, attrs={"dim": -1})
    op_case(fx, "log_softmax", lambda x: F.log_softmax(x, dim=-1), {"x": 3 * randn(3, 7)},
            attrs={"dim": -1})

    for case, shape, heads, causal in [
        ("attention", (2, 5, 24), 2, False),
        ("attention_causal", (2, 5, 24), 2, True),
        ("attention_causal_long", (2, 77, 3 * 64), 4, True),
    ]:
        width = shape[-1] // 3
        op_case(fx, case, lambda qkv, h=heads, c=causal: attention(qkv, h, c), {"qkv": randn(*shape)},
                attrs={"heads": heads, "causal": causal, "width": width,
                       "head_dim": width // heads, "scale": (width // heads) ** -0.5})

    op_case(fx, "l2norm", lambda x: F.normalize(x, dim=-1), {"x": randn(3, 6)},
            attrs={"dim": -1, "eps": 1e-12})
    op_case(fx, "cross_entropy", lambda logits, targets: F.cross_entropy(logits, targets),
            {"logits": randn(5, 7)}, ids={"targets": torch.randint(0, 7, (5,))},
            attrs={"reduction": "mean"})
    op_case(fx, "exp", lambda x: torch.exp(x), {"x": 0.5 * randn(3, 4)})
    op_case(fx, "gather_rows", lambda x, index: x[torch.arange(x.shape[0]), index],
            {"x": randn(3, 5, 4)}, ids={"index": torch.randint(0, 5, (3,))})

    # ModifiedResNet's ops: convolutions (1×1 with stride 1 and no padding is a plain product,
    # the others unfold the image), average pooling with a dropped remainder, batch norm.
    for case, (b, c, h, w), o, k, stride, padding in [
        ("conv2d_3x3", (2, 3, 7, 6), 4, 3, 1, 1),
        ("conv2d_3x3_stride2", (2, 3, 9, 8), 5, 3, 2, 1),
        ("conv2d_3x3_stride2_valid", (3, 2, 8, 7), 4, 3, 2, 0),
        ("conv2d_1x1", (2, 6, 5, 4), 3, 1, 1, 0),
        ("conv2d_1x1_stride2", (2, 4, 5, 6), 3, 1, 2, 0),
        ("conv2d_5x5", (1, 2, 8, 9), 3, 5, 1, 2),
    ]:
        op_case(fx, case, lambda x, weight, s=stride, p=padding: F.conv2d(x, weight, stride=s, padding=p),
                {"x": randn(b, c, h, w), "weight": randn(o, c, k, k) / (c * k * k) ** 0.5},
                attrs={"stride": stride, "padding": padding})
    for case, shape, k in [("avg_pool2d_2", (2, 3, 6, 8), 2), ("avg_pool2d_3_remainder", (2, 2, 7, 8), 3)]:
        op_case(fx, case, lambda x, k=k: F.avg_pool2d(x, k), {"x": randn(*shape)}, attrs={"kernel": k})
    for case, training, relu in [
        ("batch_norm2d_train", True, False),
        ("batch_norm2d_eval", False, False),
        ("batch_norm2d_train_relu", True, True),
    ]:
        batch_norm_case(fx, case, training, relu)
    fx.write()


def batch_norm_case(fx, case, training, relu):
    """F.batch_norm (BatchNorm2d's forward; + ReLU when `relu`) with running statistics away from
    their initial 0/1, in training or evaluation mode. The statistics before are stored as
    <case>.state.running_mean / running_var, torch's in-place update as <case>.state_out.*."""
    c, momentum, eps = 5, 0.1, 1e-5
    state = {"running_mean": 0.5 * randn(c), "running_var": 1 + torch.rand(c)}
    updated = {k: v.clone() for k, v in state.items()}

    def fn(x, weight, bias):
        y = F.batch_norm(x, updated["running_mean"], updated["running_var"], weight, bias,
                         training, momentum, eps)
        return F.relu(y) if relu else y

    op_case(fx, case, fn, {"x": 2 * randn(3, c, 5, 6) + 1.5, "weight": 1 + 0.5 * randn(c),
                           "bias": 0.5 * randn(c)},
            attrs={"training": training, "relu": relu, "momentum": momentum, "eps": eps})
    for k in state:
        fx.put(f"{case}.state.{k}", state[k])
        fx.put(f"{case}.state_out.{k}", updated[k])


def causal_mask(n):
    # exactly as open_clip's TextTransformer.build_attention_mask: additive, -inf above the diagonal
    mask = torch.empty(n, n)
    mask.fill_(float("-inf"))
    mask.triu_(1)
    return mask


def module_case(fx, case, module, x, mask, attrs):
    """Perturbs every parameter (so LN gains aren't ones, biases aren't zeros), then runs
    module(x, attn_mask=mask) forward and backward and stores params, x, out and all gradients."""
    module.eval()  # dropout is 0 anyway; eval keeps it explicit
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    params = dict(module.named_parameters())
    state_keys = list(module.state_dict().keys())
    assert state_keys == list(params), (state_keys, list(params))  # no buffers: keys = parameters
    print(f"{case}: state_dict keys {state_keys}")
    leaf = x.clone().requires_grad_(True)
    out = module(leaf, attn_mask=mask)
    grad_out = randn(*out.shape)
    out.backward(grad_out)
    fx.begin(case, attrs)
    for k, p in params.items():
        fx.put(f"{case}.param.{k}", p)
    fx.put(f"{case}.in.x", x)
    fx.put(f"{case}.grad_out", grad_out)
    fx.put(f"{case}.out", out)
    fx.put(f"{case}.grad.x", leaf.grad)
    for k, p in params.items():
        fx.put(f"{case}.grad.param.{k}", p.grad)


def make_blocks():
    torch.manual_seed(SEED)
    fx = FixtureFile(BLOCK_PATH)
    width, heads, length, batch = 16, 2, 5, 2
    common = {"width": width, "heads": heads, "mlp_ratio": 4.0, "eps": 1e-5, "batch_first": True}
    for case, act, act_name, causal in [
        ("block", nn.GELU, "gelu", False),
        ("block_causal", nn.GELU, "gelu", True),
        ("block_quickgelu", QuickGELU, "quickgelu", False),
    ]:
        block = ResidualAttentionBlock(d_model=width, n_head=heads, mlp_ratio=4.0, act_layer=act)
        assert block.attn.batch_first, "open_clip block is expected to be batch_first"
        module_case(fx, case, block, randn(batch, length, width),
                    causal_mask(length) if causal else None,
                    {**common, "act": act_name, "causal": causal})
    stack = Transformer(width=width, layers=2, heads=heads)
    assert stack.batch_first
    module_case(fx, "transformer", stack, randn(batch, length, width), causal_mask(length),
                {**common, "layers": 2, "act": "gelu", "causal": True})
    fx.write()


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.ln = nn.LayerNorm(4)

    def forward(self, x):
        return self.ln(self.fc(x))


def make_adamw():
    torch.manual_seed(SEED)
    fx = FixtureFile(ADAMW_PATH)
    model = Small()
    with torch.no_grad():  # LN gain/bias away from 1/0 so their updates are visible
        model.ln.weight.add_(0.2 * torch.randn(4))
        model.ln.bias.add_(0.2 * torch.randn(4))
    x, t = randn(3, 6), randn(3, 4)
    lr, betas, eps, wd, steps = 1e-2, (0.9, 0.98), 1e-6, 0.2, 5
    named = dict(model.named_parameters())
    # open_clip's rule: no decay for gains, biases (ndim < 2), embeddings and logit_scale
    decay = [k for k, p in named.items() if p.ndim >= 2]
    no_decay = [k for k in named if k not in decay]
    opt = torch.optim.AdamW(
        [{"params": [named[k] for k in no_decay], "weight_decay": 0.0},
         {"params": [named[k] for k in decay], "weight_decay": wd}],
        lr=lr, betas=betas, eps=eps, foreach=False)
    for k, v in model.state_dict().items():
        fx.put(f"init.{k}", v)
    fx.put("in.x", x)
    fx.put("in.t", t)
    losses = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss = ((model(x) - t) ** 2).mean()
        losses.append(loss.detach())
        loss.backward()
        for k, p in named.items():
            fx.put(f"grad{step}.{k}", p.grad)
        opt.step()
        for k, v in model.state_dict().items():
            fx.put(f"step{step}.{k}", v)
    fx.put("loss", torch.stack(losses))
    fx.meta["attrs"] = json.dumps({
        "lr": lr, "betas": list(betas), "eps": eps, "weight_decay": wd, "steps": steps,
        "decay": decay, "no_decay": no_decay, "layernorm_eps": 1e-5,
        "loss": "((ln(fc(x)) - t)**2).mean()",
        "update": "p *= 1 - lr*wd; m,v EMA; p -= lr/(1-b1^k) * m / (sqrt(v)/sqrt(1-b2^k) + eps)",
    })
    fx.write()


if __name__ == "__main__":
    torch.set_num_threads(1)  # bit-identical reruns on one machine
    make_ops()
    make_blocks()
    make_adamw()
