"""Tests of ``reconad.ops.memory_address``: the pure-PyTorch reference and the compiled op (C++ / CUDA)
against independent fp64 oracles written as per-row loops, on fresh random inputs.

Definition under test (see docs/ops/memory_address.md): a softmax restricted to the support
``S_n = {k : s_nk > logsumexp_k s_n + ln lambda}``, the support not differentiated, an empty support
reading zeros with zero entropy. Inputs are drawn with no score within ``margin`` of the support's cut, so
that rounding (fp32) or finite differences (gradcheck) cannot move a slot across it.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reconad.ops import backend, load_extension, memory_address, memory_address_reference

load_extension()
HAS_CPU_KERNEL = backend("memory_address", "cpu") == "cpp"
needs_cpu_kernel = pytest.mark.skipif(not HAS_CPU_KERNEL, reason="reconad._C has no CPU kernel for memory_address")
SIMILARITIES = ("cosine", "dot")


# ----------------------------------------------------------------------------------------------- oracles
def _keys_np(z: np.ndarray, memory: np.ndarray, similarity: str) -> tuple[np.ndarray, np.ndarray]:
    if similarity == "cosine":
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        memory = memory / np.maximum(np.linalg.norm(memory, axis=1, keepdims=True), 1e-12)
    return z, memory


def _scores_np(z: np.ndarray, memory: np.ndarray, similarity: str) -> np.ndarray:
    q, keys = _keys_np(z, memory, similarity)
    s = np.zeros((q.shape[0], keys.shape[0]))
    for n in range(q.shape[0]):
        for k in range(keys.shape[0]):
            s[n, k] = math.fsum(q[n] * keys[k])
    return s


def _cut(s_row: np.ndarray, lam: float) -> float:
    mx = s_row.max()
    lse = mx + math.log(math.fsum(np.exp(s_row - mx)))
    return lse + math.log(lam) if lam > 0 else -math.inf


def loop_oracle(z: torch.Tensor, memory: torch.Tensor, lam: float, similarity: str, per_row: bool = False):
    """fp64 restricted softmax, one row at a time: (output, entropy, weights) as numpy arrays; the entropy is
    the mean over rows, or each row's (N,) with ``per_row``."""
    zn, mn = z.detach().double().cpu().numpy(), memory.detach().double().cpu().numpy()
    s = _scores_np(zn, mn, similarity)
    n_rows, k_slots = s.shape
    out, w_all, h = np.zeros((n_rows, zn.shape[1])), np.zeros((n_rows, k_slots)), np.zeros(n_rows)
    for n in range(n_rows):
        support = [k for k in range(k_slots) if s[n, k] > _cut(s[n], lam)]
        if not support:
            continue
        mx = max(s[n, k] for k in support)
        denom = math.fsum(math.exp(s[n, k] - mx) for k in support)
        for k in support:
            w = math.exp(s[n, k] - mx) / denom
            w_all[n, k] = w
            out[n] += w * mn[k]
            h[n] -= w * math.log(w)
    if per_row:
        return out, h, w_all
    return out, (h.mean() if n_rows else 0.0), w_all


def memae_eps_formula(z: torch.Tensor, memory: torch.Tensor, lam: float, similarity: str, eps: float = 1e-12):
    """MemAE's hard shrinkage with eps, in fp64 (forward only; its gradient spikes near w = lambda)."""
    z, memory = z.detach().double(), memory.detach().double()
    q, keys = (F.normalize(z, dim=1, eps=1e-12), F.normalize(memory, dim=1, eps=1e-12)) if similarity == "cosine" \
        else (z, memory)
    w = torch.softmax(q @ keys.t(), dim=1)
    w = F.relu(w - lam) * w / ((w - lam).abs() + eps)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(eps)
    entropy = (-w * torch.log(w + eps)).sum(dim=1).mean()
    return w @ memory, entropy, w


def torch_row_oracle(z: torch.Tensor, memory: torch.Tensor, lam: float, similarity: str, per_row: bool = False):
    """Differentiable fp64 oracle, one row at a time with the support's slots indexed out (not masked):
    (output, mean entropy), or (output, entropy of each row) with ``per_row``."""
    q, keys = (z / z.norm(dim=1, keepdim=True).clamp_min(1e-12), memory / memory.norm(dim=1, keepdim=True).clamp_min(1e-12)) \
        if similarity == "cosine" else (z, memory)
    outs, ents = [], []
    for n in range(z.shape[0]):
        s = (keys * q[n]).sum(dim=1)
        with torch.no_grad():
            idx = torch.nonzero(s > torch.logsumexp(s, 0) + (math.log(lam) if lam > 0 else -math.inf)).flatten()
        if idx.numel() == 0:
            outs.append(memory.sum(0) * 0.0)
            ents.append(s.sum() * 0.0)
            continue
        w = torch.softmax(s[idx], dim=0)
        outs.append(w @ memory[idx])
        ents.append(-(w * torch.log(w)).sum())
    if not outs:
        return z.new_zeros((0, z.shape[1])), z.new_zeros((0,) if per_row else ())
    return torch.stack(outs), torch.stack(ents) if per_row else torch.stack(ents).mean()


# ------------------------------------------------------------------------------------------------ inputs
def make_inputs(n: int, k: int, c: int, similarity: str, lam: float | str = "partial", *,
                dtype: torch.dtype = torch.float64, device: str = "cpu", margin: float = 1e-3,
                scale: float = 1.0, generator: torch.Generator | None = None):
    """Fresh (z, memory, lambda) with no score within ``margin`` of its row's cut.

    ``lam``: a number, ``"partial"`` (a quantile of the weights: most rows keep a few slots) or
    ``"empty"`` (above every weight: every support is empty).
    """
    for _ in range(200):
        z = torch.randn(n, c, dtype=torch.float64, generator=generator) * scale
        memory = torch.randn(k, c, dtype=torch.float64, generator=generator) * scale
        z, memory = z.to(dtype), memory.to(dtype)   # oracles see the rounded values
        s = _scores_np(z.double().numpy(), memory.double().numpy(), similarity)
        w = np.exp(s - s.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        if lam == "partial":
            ws = np.sort(w.ravel())
            i = int(0.8 * (ws.size - 1))
            # between two weights (in log space), not on one
            lam_v = float(np.sqrt(ws[i] * ws[i + 1])) if ws.size > 1 else 0.5 / k
        elif lam == "empty":
            lam_v = float(min(0.999, w.max() * 1.05)) if w.size else 0.999
        else:
            lam_v = float(lam)
        if lam_v >= 1.0:
            continue
        if lam_v > 0 and n > 0:
            cuts = np.array([_cut(s[i], lam_v) for i in range(n)])
            if np.abs(s - cuts[:, None]).min() < margin * max(1.0, np.abs(s).max()):
                continue
        return z.to(device), memory.to(device), lam_v
    raise AssertionError("could not draw inputs away from the support boundary")


def rel(a: torch.Tensor | np.ndarray | float, b: torch.Tensor | np.ndarray | float) -> float:
    """Norm-wise relative error of a against b (absolute when b is 0)."""
    a, b = (x.detach().cpu().double() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)
            for x in (a, b))
    return float((a - b).norm() / b.norm().clamp_min(1e-30)) if b.norm() > 0 else float((a - b).norm())


def grads(fn, z: torch.Tensor, memory: torch.Tensor, g_out: torch.Tensor, g_ent: float | torch.Tensor):
    """Gradients of out . g_out + g_ent * ent for fn(z, memory)[:2] = (out, ent); ``g_ent`` a number for the
    mean entropy, an (N,) tensor for per-row entropies."""
    z = z.detach().clone().requires_grad_(True)
    memory = memory.detach().clone().requires_grad_(True)
    out, ent = fn(z, memory)[:2]
    if isinstance(g_ent, torch.Tensor):
        g_ent = g_ent.to(ent.device, ent.dtype)
    loss = (out * g_out.to(out.dtype)).sum() + (g_ent * ent).sum()
    gz, gm = torch.autograd.grad(loss, (z, memory), allow_unused=True)
    return (torch.zeros_like(z) if gz is None else gz), (torch.zeros_like(memory) if gm is None else gm)


# --------------------------------------------------------------------------- the reference vs the oracles
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("lam", [0.0, "partial", "empty"])
def test_reference_matches_loop_oracle(similarity, lam):
    z, memory, lam_v = make_inputs(23, 17, 6, similarity, lam, scale=1.0 if similarity == "cosine" else 0.7)
    res = memory_address_reference(z, memory, lam_v, similarity, return_weights=True)
    out, ent, w = loop_oracle(z, memory, lam_v, similarity)
    assert rel(res.output, out) < 1e-12 and abs(res.entropy.item() - ent) < 1e-12
    assert rel(res.weights, w) < 1e-12
    assert rel(res.row_entropy, loop_oracle(z, memory, lam_v, similarity, per_row=True)[1]) < 1e-12
    if lam == "empty":
        assert not res.output.any() and res.entropy.item() == 0.0 and not res.row_entropy.any()
    if lam == "partial":  # the case is not degenerate: some slots are cut, some kept
        assert 0 < int((w > 0).sum()) < w.size


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_reference_gradients_match_row_oracle(similarity):
    z, memory, lam = make_inputs(19, 13, 5, similarity, "partial")
    g_out, g_ent = torch.randn(19, 5, dtype=torch.float64), float(torch.randn(()))
    ref = grads(lambda a, b: memory_address_reference(a, b, lam, similarity), z, memory, g_out, g_ent)
    ora = grads(lambda a, b: torch_row_oracle(a, b, lam, similarity), z, memory, g_out, g_ent)
    for a, b in zip(ref, ora):
        assert rel(a, b) < 1e-10


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_reference_forward_matches_memae_eps_formula(similarity):
    z, memory, lam = make_inputs(64, 40, 8, similarity, "partial", margin=1e-4)
    res = memory_address_reference(z, memory, lam, similarity, return_weights=True)
    out, ent, w = memae_eps_formula(z, memory, lam, similarity)
    assert rel(res.output, out) < 1e-4 and rel(res.weights, w) < 1e-4
    assert abs(res.entropy.item() - ent.item()) <= 1e-4 * abs(ent.item())


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_reference_gradcheck(similarity):
    z, memory, lam = make_inputs(6, 7, 4, similarity, "partial")
    z.requires_grad_(True)
    memory.requires_grad_(True)
    fn = lambda a, b: tuple(memory_address_reference(a, b, lam, similarity)[:2])  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, memory), eps=1e-6, atol=1e-6)


def test_reference_rejects_bad_arguments():
    z, m = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="shrink_threshold"):
        memory_address_reference(z, m, 1.0)
    with pytest.raises(ValueError, match=r"memory must be \(K, C\) with C = 3"):
        memory_address_reference(z, torch.randn(5, 4), 0.1)
    with pytest.raises(ValueError, match="similarity"):
        memory_address_reference(z, m, 0.1, similarity="l2")


# ------------------------------------------------------------- edge cases, on every available backend
IMPLS = ["reference", pytest.param("op", marks=needs_cpu_kernel)]


def _impl(name: str):
    if name == "reference":
        return memory_address_reference
    return memory_address


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_single_slot(impl, similarity):
    z, memory = torch.randn(9, 5, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)
    for lam in (0.0, 0.5):  # one slot: its weight is 1, above any lambda < 1
        res = _impl(impl)(z, memory, lam, similarity)
        assert torch.allclose(res.output, memory.expand(9, 5)) and abs(res.entropy.item()) < 1e-12


@pytest.mark.parametrize("impl", IMPLS)
def test_no_queries(impl):
    z = torch.randn(0, 4, requires_grad=True)
    memory = torch.randn(6, 4, requires_grad=True)
    res = _impl(impl)(z, memory, 0.1)
    assert res.output.shape == (0, 4) and res.entropy.item() == 0.0 and res.row_entropy.shape == (0,)
    (res.output.sum() + res.entropy).backward()
    assert z.grad.shape == (0, 4) and not memory.grad.any()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_empty_support_reads_zeros_without_nan(impl, similarity):
    z, memory, lam = make_inputs(12, 9, 4, similarity, "empty", dtype=torch.float32)
    z.requires_grad_(True)
    memory.requires_grad_(True)
    res = _impl(impl)(z, memory, lam, similarity)
    assert not res.output.any() and res.entropy.item() == 0.0 and not res.row_entropy.any()
    (res.output.sum() + res.entropy).backward()
    for g in (z.grad, memory.grad):
        assert torch.isfinite(g).all() and not g.any()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_non_contiguous_inputs(impl, similarity):
    z_big, m_big, lam = make_inputs(30, 22, 12, similarity, "partial", dtype=torch.float32)
    z, memory = z_big[::2, ::2], m_big.t().contiguous().t()[::2, ::2]   # strided views
    assert not z.is_contiguous() and not memory.is_contiguous()
    fn = _impl(impl)
    a = fn(z, memory, lam, similarity)
    b = fn(z.contiguous(), memory.contiguous(), lam, similarity)
    assert torch.allclose(a.output, b.output, atol=1e-6) and torch.allclose(a.entropy, b.entropy, atol=1e-6)
    ga = grads(lambda x, y: fn(x, y, lam, similarity), z, memory, torch.ones(15, 6), 1.0)
    gb = grads(lambda x, y: fn(x, y, lam, similarity), z.contiguous(), memory.contiguous(), torch.ones(15, 6), 1.0)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("impl", ["fallback", pytest.param("op", marks=needs_cpu_kernel)])
@pytest.mark.parametrize("shape", [(6, 3, 4), (6,)])
def test_memae_memory_evaluates_per_sample_entropy(impl, shape, monkeypatch):
    """MemAE's memory reads through the op in evaluation too: each sample's entropy is the mean of its
    positions' entropies (fp64 loop oracle); only the fallback backend runs the reference."""
    from reconad.builtin.memae import MemAEMemory

    module = importlib.import_module("reconad.ops.memory_address")  # (reconad.ops.memory_address is the function)

    if impl == "fallback":
        monkeypatch.setenv("RECONAD_DISABLE_EXTENSION", "1")
    else:
        def no_reference(*args, **kwargs):
            raise AssertionError("the reference path ran where the compiled op serves the device")
        monkeypatch.setattr(module, "memory_address_reference", no_reference)
    mem = MemAEMemory(shape, slots=10).double().eval()
    x = torch.randn(3, *shape, dtype=torch.float64)
    with torch.no_grad():
        read = mem(x)
    queries = x.permute(0, 2, 3, 1).reshape(-1, shape[0]) if len(shape) == 3 else x
    out, h, _ = loop_oracle(queries, mem.memory, mem.shrink_threshold, "cosine", per_row=True)
    got = read.output.permute(0, 2, 3, 1).reshape(-1, shape[0]) if len(shape) == 3 else read.output
    assert read.output.shape == x.shape and rel(got, out) < 1e-10
    assert read.sample_entropy.shape == (3,) and rel(read.sample_entropy, h.reshape(3, -1).mean(1)) < 1e-10
    assert abs(read.entropy.item() - h.mean()) < 1e-10
    mem.train()
    assert mem(x).sample_entropy is None          # training reads the scalar loss only, as before


# ----------------------------------------------------------------------------- the compiled CPU kernel
def _check_against_oracle(z, memory, lam, similarity, tol: float, fn=memory_address) -> None:
    """Forward, entropy and both gradients of fn within tol (relative) of the fp64 oracles."""
    res = fn(z, memory, lam, similarity)
    out, ent, _ = loop_oracle(z, memory, lam, similarity)
    assert rel(res.output, out) < tol
    assert abs(res.entropy.item() - ent) <= tol * max(abs(ent), 1e-3)
    g_out, g_ent = torch.randn(z.shape, dtype=torch.float64), float(torch.randn(()))
    got = grads(lambda a, b: fn(a, b, lam, similarity), z, memory, g_out.to(z.device), g_ent)
    want = grads(lambda a, b: torch_row_oracle(a, b, lam, similarity), z.double().cpu(), memory.double().cpu(),
                 g_out, g_ent)
    for a, b in zip(got, want):
        assert rel(a, b) < tol
    # each row's entropy (what evaluation reads), and its gradient
    _, h, _ = loop_oracle(z, memory, lam, similarity, per_row=True)
    assert res.row_entropy.shape == (z.shape[0],) and res.row_entropy.dtype == z.dtype
    assert rel(res.row_entropy, h) < tol
    g_rows = torch.randn(z.shape[0], dtype=torch.float64)
    row_fn = lambda a, b: (lambda r: (r.output, r.row_entropy))(fn(a, b, lam, similarity))  # noqa: E731
    got = grads(row_fn, z, memory, g_out.to(z.device), g_rows)
    want = grads(lambda a, b: torch_row_oracle(a, b, lam, similarity, per_row=True), z.double().cpu(),
                 memory.double().cpu(), g_out, g_rows)
    for a, b in zip(got, want):
        assert rel(a, b) < tol


@needs_cpu_kernel
def test_cpu_backend_is_cpp():
    assert backend("memory_address", "cpu") == "cpp"


@needs_cpu_kernel
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("lam", [0.0, "partial"])
def test_cpu_kernel_fp32_matches_oracle(similarity, lam):
    # K = 37 and C = 11 exercise the partial 8-lane groups; N spans several row tiles
    z, memory, lam_v = make_inputs(300, 37, 11, similarity, lam, dtype=torch.float32, margin=1e-4,
                                   scale=1.0 if similarity == "cosine" else 0.5)
    _check_against_oracle(z, memory, lam_v, similarity, tol=1e-5)


@needs_cpu_kernel
@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_cpu_kernel_fp64_matches_oracle_and_gradcheck(similarity):
    z, memory, lam = make_inputs(40, 9, 5, similarity, "partial")
    _check_against_oracle(z, memory, lam, similarity, tol=1e-10)
    z, memory, lam = make_inputs(6, 7, 4, similarity, "partial")
    z.requires_grad_(True)
    memory.requires_grad_(True)
    fn = lambda a, b: tuple(memory_address(a, b, lam, similarity)[:2])  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, memory), eps=1e-6, atol=1e-6)


@needs_cpu_kernel
def test_cpu_kernel_bfloat16_close_to_oracle():
    z, memory, lam = make_inputs(64, 20, 16, "cosine", 0.0, dtype=torch.bfloat16)
    res = memory_address(z, memory, lam)
    out, ent, _ = loop_oracle(z, memory, lam, "cosine")
    assert res.output.dtype == torch.bfloat16 and rel(res.output, out) < 1e-2
    assert abs(res.entropy.item() - ent) < 1e-2 * ent


@needs_cpu_kernel
def test_cpu_kernel_rows_statistics():
    z, memory, lam = make_inputs(10, 6, 3, "dot", "partial")
    out, h, lse, lse_s = torch.ops.reconad.memory_address(z, memory, memory, lam)
    s = z @ memory.t()
    assert torch.allclose(lse, torch.logsumexp(s, 1))
    _, ent, w = loop_oracle(z, memory, lam, "dot")
    w = torch.from_numpy(w)
    assert torch.allclose(h, -(w * torch.log(w.clamp_min(1e-300))).sum(1))


@needs_cpu_kernel
def test_cpu_kernel_rejects_bad_shapes():
    with pytest.raises(RuntimeError, match=r"keys must be \(K, C\) with C = 3"):
        torch.ops.reconad.memory_address(torch.randn(4, 3), torch.randn(5, 2), torch.randn(5, 2), 0.1)
    with pytest.raises(RuntimeError, match="values must have the shape of keys"):
        torch.ops.reconad.memory_address(torch.randn(4, 3), torch.randn(5, 3), torch.randn(6, 3), 0.1)


@needs_cpu_kernel
def test_opcheck_cpu():
    for dtype in (torch.float32, torch.float64):
        z, memory, lam = make_inputs(20, 8, 5, "dot", "partial", dtype=dtype)
        args = (z.requires_grad_(True), memory.clone().requires_grad_(True), memory.clone().requires_grad_(True), lam)
        torch.library.opcheck(torch.ops.reconad.memory_address.default, args)
    out = torch.ops.reconad.memory_address(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
    bargs = (torch.randn(20, 5, dtype=dtype), torch.randn(20, dtype=dtype), z.detach(), memory, memory, *out, lam)
    torch.library.opcheck(torch.ops.reconad.memory_address_backward.default, bargs,
                          test_utils=("test_schema", "test_faketensor"))


class _Reader(torch.nn.Module):
    def __init__(self, k: int, c: int, lam: float) -> None:
        super().__init__()
        self.memory = torch.nn.Parameter(torch.randn(k, c))
        self.proj = torch.nn.Linear(c, c)
        self.lam = lam

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res = memory_address(self.proj(x), self.memory, self.lam)
        return res.output, res.entropy


@needs_cpu_kernel
def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    model = _Reader(24, 8, 1.0 / 24)
    x = torch.randn(50, 8)
    eager_out, eager_ent = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, ent = compiled(x)
    assert torch.allclose(out, eager_out, atol=1e-6) and torch.allclose(ent, eager_ent, atol=1e-6)
    (out.sum() + ent).backward()
    g_compiled = model.memory.grad.clone()
    model.memory.grad = None
    (eager_out.sum() + eager_ent).backward()
    assert torch.allclose(g_compiled, model.memory.grad, atol=1e-5)


# ----------------------------------------------------------------------------------- the CUDA kernel
@pytest.mark.cuda
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("lam", [0.0, "partial", "empty"])
@pytest.mark.parametrize("shape", [(300, 37, 11), (257, 130, 70), (64, 1, 8)])
def test_cuda_kernel_fp32_matches_oracle(similarity, lam, shape):
    assert backend("memory_address", "cuda") == "cuda"
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        n, k, c = shape
        # fp32 scores are off by ~1e-7 relative: a margin of 5e-6 keeps every score clear of its cut, and unlike
        # 1e-4 it can be drawn at 257 x 130 (about half a score per draw lands within 5e-6 of its row's cut)
        z, memory, lam_v = make_inputs(n, k, c, similarity, lam if k > 1 else 0.0, dtype=torch.float32,
                                       margin=5e-6, device="cuda", scale=1.0 if similarity == "cosine" else 0.5)
        _check_against_oracle(z, memory, lam_v, similarity, tol=1e-5)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 5e-3)])
def test_cuda_kernel_half_inputs(dtype, tol):
    # dot scores: the kernel multiplies the half inputs exactly and sums in fp32, so the oracle (which sees the rounded
    # inputs) agrees up to fp32 rounding and a margin of 1e-4 keeps the supports equal. (Cosine normalises in the
    # half dtype first, which moves scores by ~4e-3: no margin that wide can be drawn at this size.)
    z, memory, lam = make_inputs(128, 64, 32, "dot", "partial", dtype=dtype, margin=1e-4, device="cuda", scale=0.5)
    res = memory_address(z, memory, lam, "dot")
    assert res.output.dtype == dtype
    out, ent, _ = loop_oracle(z, memory, lam, "dot")
    assert rel(res.output, out) < tol and abs(res.entropy.item() - ent) < tol * ent
    g_out = torch.randn(z.shape, dtype=torch.float64)
    got = grads(lambda a, b: memory_address(a, b, lam, "dot"), z, memory, g_out.cuda(), 0.5)
    want = grads(lambda a, b: torch_row_oracle(a, b, lam, "dot"), z.double().cpu(), memory.double().cpu(), g_out, 0.5)
    for a, b in zip(got, want):
        assert rel(a, b) < 2 * tol


@pytest.mark.cuda
@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_cuda_gradcheck_and_edge_cases(similarity):
    z, memory, lam = make_inputs(6, 7, 4, similarity, "partial", device="cuda")
    z.requires_grad_(True)
    memory.requires_grad_(True)
    fn = lambda a, b: tuple(memory_address(a, b, lam, similarity)[:2])  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, memory), eps=1e-6, atol=1e-6)
    # empty support, no queries, non-contiguous
    z, memory, lam = make_inputs(12, 9, 4, similarity, "empty", dtype=torch.float32, device="cuda")
    res = memory_address(z, memory, lam, similarity)
    assert not res.output.any() and res.entropy.item() == 0.0
    assert memory_address(torch.randn(0, 4, device="cuda"), memory, 0.1).output.shape == (0, 4)
    z, memory, lam = make_inputs(30, 22, 12, similarity, "partial", dtype=torch.float32, device="cuda")
    a = memory_address(z[::2, ::2], memory[::2, ::2], lam, similarity)
    b = memory_address(z[::2, ::2].contiguous(), memory[::2, ::2].contiguous(), lam, similarity)
    assert torch.allclose(a.output, b.output, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_cuda_memae_memory_evaluates_with_the_op(dtype, tol, monkeypatch):
    """MemAE evaluation on a GPU: the CUDA op's per-row entropy, averaged per sample, never the reference."""
    from reconad.builtin.memae import MemAEMemory

    module = importlib.import_module("reconad.ops.memory_address")  # (reconad.ops.memory_address is the function)

    assert backend("memory_address", "cuda") == "cuda"

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference path ran on CUDA")
    monkeypatch.setattr(module, "memory_address_reference", no_reference)
    # fp32: queries and memory drawn away from the support's cut, so rounding cannot move a slot across it;
    # bf16 rounds too coarsely for such a draw: no shrinkage (lambda = 0)
    z, memory, lam = make_inputs(140, 40, 16, "cosine", 0.0 if dtype == torch.bfloat16 else "partial", dtype=dtype,
                                 device="cuda", margin=1e-4)
    mem = MemAEMemory((16, 5, 7), slots=40, shrink_threshold=lam).to("cuda", dtype).eval()
    mem.memory.data.copy_(memory)
    x = z.reshape(4, 5, 7, 16).permute(0, 3, 1, 2)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            read = mem(x)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    out, h, _ = loop_oracle(z, memory, lam, "cosine", per_row=True)
    assert read.sample_entropy.dtype == dtype
    assert rel(read.sample_entropy, h.reshape(4, -1).mean(1)) < tol
    assert rel(read.output.permute(0, 2, 3, 1).reshape(-1, 16), out) < tol


@pytest.mark.cuda
def test_opcheck_cuda():
    z, memory, lam = make_inputs(40, 9, 5, "dot", "partial", dtype=torch.float32, device="cuda")
    args = (z.requires_grad_(True), memory.clone().requires_grad_(True), memory.clone().requires_grad_(True), lam)
    torch.library.opcheck(torch.ops.reconad.memory_address.default, args)
