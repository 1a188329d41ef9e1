"""reconad.ops.topk_mask (OLED's threshold unit) against independent oracles.

The forward oracle is numpy: np.sort per map (NaN sorts last there too), s = the k-th largest, then eq. 2 in
the compute dtype, so masks are compared bit for bit (NaN against NaN). Gradients are compared with the
analytic forms evaluated in float64 loops. Every implementation is tested: the PyTorch fallback, the C++ CPU
kernel (when the extension has it) and the CUDA kernel (``@pytest.mark.cuda``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reconad.ops import TOPK_MASK_EPS, backend, load_extension, topk_mask
from reconad.ops._extension import has_kernel
from reconad.ops.topk_mask import hidden_count, topk_mask_reference

load_extension()
HAS_CPP = has_kernel("topk_mask", "cpu")

IMPLS = [
    "fallback",
    pytest.param("cpp", marks=pytest.mark.skipif(not HAS_CPP, reason="reconad._C has no topk_mask CPU kernel")),
    pytest.param("cuda", marks=pytest.mark.cuda),
]
SQUARE = [8, 16, 32, 64, 128, 256, 512]
RECT = [(8, 512), (512, 8), (28, 28), (13, 77), (100, 3), (1, 9)]


def _device(impl: str) -> str:
    return "cuda" if impl == "cuda" else "cpu"


def _run(impl: str, a: torch.Tensor, keep: float = 0.875, eps: float = TOPK_MASK_EPS, grad: str = "ste"):
    if impl == "fallback":
        return topk_mask_reference(a, keep, eps, grad)
    assert backend("topk_mask", a.device.type) == impl
    return topk_mask(a, keep, eps, grad)


# --- oracles ---------------------------------------------------------------------------------------------

def _np_dtype(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def oracle_forward(a: torch.Tensor, keep: float, eps: float) -> tuple[torch.Tensor, np.ndarray]:
    """(mask in a's dtype, s per map in the compute dtype) by sorting every map."""
    h, w = a.shape[-2:]
    n = h * w
    k = max(1, int(np.floor(np.float64(1.0 - keep) * n + 0.5)))
    ct = _np_dtype(a.dtype)
    x = a.detach().cpu().to(torch.float64 if ct is np.float64 else torch.float32).reshape(-1, n).numpy()
    masks, ss = [], []
    for row in x:
        s = ct(np.sort(row)[n - k]) + ct(0.0)          # + 0 turns -0.0 into +0.0
        with np.errstate(invalid="ignore", divide="ignore"):   # inf - inf, inf / inf: NaN, as documented
            d = ct(s) - row
            d = np.where(d < 0, ct(0), d)              # relu, NaN kept
            masks.append((d / (d + ct(eps))).astype(ct))
        ss.append(s)
    mask = torch.from_numpy(np.stack(masks)).to(a.dtype).reshape(a.shape)
    return mask, np.array(ss, dtype=ct)


def oracle_grad(g: torch.Tensor, a: torch.Tensor, keep: float, eps: float, mode: str) -> torch.Tensor:
    """dL/dA in float64 loops (exact: eq. 2 differentiated with s; ste: -(g - mean g))."""
    h, w = a.shape[-2:]
    n = h * w
    k = max(1, int(np.floor((1.0 - keep) * n + 0.5)))
    gs = g.detach().cpu().double().reshape(-1, n).numpy()
    xs = a.detach().cpu().double().reshape(-1, n).numpy()
    out = np.zeros_like(gs)
    for b in range(xs.shape[0]):
        if mode == "ste":
            out[b] = -(gs[b] - gs[b].sum() / n)
            continue
        s = np.sort(xs[b])[n - k]
        if math.isnan(s):
            out[b] = np.nan
            continue
        through_s, ties = 0.0, []
        for i in range(n):
            x = xs[b, i]
            if x < s:
                dm_dx = -eps / (s - x + eps) ** 2
                out[b, i] = gs[b, i] * dm_dx
                through_s -= gs[b, i] * dm_dx
            elif x == s:
                ties.append(i)
            elif math.isnan(x):
                out[b, i] = np.nan
        for i in ties:
            out[b, i] = through_s / len(ties)
    return torch.from_numpy(out).reshape(a.shape)


def assert_bitwise(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.dtype == ref.dtype and out.shape == ref.shape
    out, ref = out.detach().cpu(), ref.detach().cpu()
    nan_o, nan_r = out.isnan(), ref.isnan()
    assert torch.equal(nan_o, nan_r), f"NaN at different places: {nan_o.sum()} vs {nan_r.sum()}"
    itype = {torch.float64: torch.int64, torch.float32: torch.int32}.get(out.dtype, torch.int16)
    bo, br = out.view(itype)[~nan_o], ref.view(itype)[~nan_r]
    bad = (bo != br).sum().item()
    assert bad == 0, f"{bad} of {bo.numel()} mask values differ in their bits"


# --- forward ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_forward_every_square_shape(impl, dtype):
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    for size in SQUARE:
        b = 3 if size <= 64 else 1
        a = torch.randn(b, size, size, generator=gen).to(dtype).to(_device(impl))
        keep = float(torch.rand((), generator=gen)) if size in (16, 128) else 0.875
        ref, s = oracle_forward(a, keep, TOPK_MASK_EPS)
        assert_bitwise(_run(impl, a, keep), ref)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("hw", RECT)
def test_forward_rectangular_and_4d(impl, hw):
    a = torch.rand(4, 1, *hw, device=_device(impl))
    ref, _ = oracle_forward(a, 0.875, TOPK_MASK_EPS)
    out = _run(impl, a)
    assert out.shape == a.shape
    assert_bitwise(out, ref)
    assert_bitwise(_run(impl, a[:, 0]), ref[:, 0])


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_many_maps_split_over_threads(impl):
    # enough maps for the CPU kernel to split them over 2 threads (its grain is ~32K pixels), many CTAs
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for shape in ((1100, 8, 8), (40, 64, 64), (3, 1, 256, 256)):
            a = torch.randn(shape, device=_device(impl))
            ref, _ = oracle_forward(a, 0.875, TOPK_MASK_EPS)
            assert_bitwise(_run(impl, a), ref)
            g = torch.randn(shape, device=a.device)
            for mode in ("ste", "exact"):
                torch.testing.assert_close(_grads(impl, a, g, 0.875, 1e-2, mode).cpu().double(),
                                           oracle_grad(g, a, 0.875, 1e-2, mode), rtol=2e-5, atol=2e-6)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("impl", IMPLS)
def test_distinct_values_hide_exactly_k(impl):
    n = 28 * 28
    a = torch.stack([torch.randperm(n) for _ in range(5)]).float().reshape(5, 28, 28).to(_device(impl))
    for keep in (0.875, 0.5, 0.0, 1.0):
        k = hidden_count(keep, n)
        out = _run(impl, a, keep).cpu()
        assert ((out == 0).sum(dim=(1, 2)) == k).all()
        # the hidden pixels are the k largest; below s the mask is d / (d + eps) with d >= 1
        assert torch.equal(out == 0, a.cpu() >= n - k)
        assert (out[out > 0] >= 1 / (1 + TOPK_MASK_EPS)).all()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("levels", [2, 5, 50])
def test_ties_hide_every_pixel_at_s(impl, levels):
    a = torch.randint(0, levels, (6, 16, 24)).float().to(_device(impl))
    ref, s = oracle_forward(a, 0.875, TOPK_MASK_EPS)
    out = _run(impl, a)
    assert_bitwise(out, ref)
    k = hidden_count(0.875, 16 * 24)
    hidden = (out.cpu() == 0).sum(dim=(1, 2))
    at_or_above = (a.cpu() >= torch.from_numpy(s).view(-1, 1, 1)).sum(dim=(1, 2))
    assert torch.equal(hidden, at_or_above) and (hidden >= k).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_constant_maps_are_hidden_entirely(impl):
    a = torch.tensor([0.0, -0.0, 3.5, -2.0]).view(4, 1, 1).expand(4, 8, 8).contiguous().to(_device(impl))
    out = _run(impl, a)
    assert (out == 0).all() and not out.signbit().any()


@pytest.mark.parametrize("impl", IMPLS)
def test_signed_zeros_and_relu_maps(impl):
    # ReLU outputs: mostly zeros (some -0.0), s = 0 when fewer than k values are positive
    a = torch.relu(torch.randn(8, 32, 32) - 1.4)
    zeros = a == 0
    a[zeros & (torch.rand(a.shape) < 0.5)] = -0.0
    a = a.to(_device(impl))
    ref, s = oracle_forward(a, 0.875, TOPK_MASK_EPS)
    assert_bitwise(_run(impl, a), ref)
    if impl != "fallback":
        _, thr = torch.ops.reconad.topk_mask(a, hidden_count(0.875, 1024), TOPK_MASK_EPS, "ste")
        assert_bitwise(thr.cpu(), torch.from_numpy(s))         # a zero threshold is +0.0


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_propagates(impl):
    n, k = 16 * 16, hidden_count(0.875, 256)
    a = torch.randn(3, 16, 16)
    a.view(3, n)[0, torch.randperm(n)[: k - 1]] = float("nan")     # fewer than k NaNs: s is a number
    a.view(3, n)[1, torch.randperm(n)[:k]] = -float("nan")         # k NaNs (negative ones too): s is NaN
    a = a.to(_device(impl))
    out = _run(impl, a).cpu()
    ref, s = oracle_forward(a, 0.875, TOPK_MASK_EPS)
    assert_bitwise(out, ref)
    assert torch.equal(out[0].isnan(), a[0].cpu().isnan()) and not math.isnan(s[0])
    assert out[1].isnan().all()
    assert not out[2].isnan().any()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_values(impl, dtype):
    # infinities, huge ranges (one outlier squeezes every other value into one bucket), subnormal gaps
    info = torch.finfo(dtype)
    a = torch.rand(6, 48, 48, dtype=dtype)
    a[0, 0, :5] = torch.tensor([float("inf"), -float("inf"), info.max, -info.max, 0.5], dtype=dtype)
    a[1, 3, 3] = 1e30
    a[2] = torch.randint(0, 1000, (48, 48)).to(dtype) * info.tiny * info.eps   # subnormals
    a[3, :, :] = float("inf")
    a[3, 0, 0] = 1.0
    a[4] = torch.randn(48, 48, dtype=dtype) * 1e-3 + 1.0                         # narrow range, no outlier
    a = a.to(_device(impl))
    ref, _ = oracle_forward(a, 0.875, TOPK_MASK_EPS)
    assert_bitwise(_run(impl, a), ref)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_contiguous_inputs(impl):
    dev = _device(impl)
    base = torch.randn(4, 3, 40, 36, device=dev)
    for a in (base[:, 1:2], base[:, 0].transpose(1, 2), base[:, 2, ::2, 1::3], base.permute(0, 1, 3, 2)[:, :1]):
        assert not a.is_contiguous()
        ref, _ = oracle_forward(a, 0.8, TOPK_MASK_EPS)
        assert_bitwise(_run(impl, a, 0.8), ref)


def test_hidden_count():
    assert hidden_count(0.875, 28 * 28) == 98 and hidden_count(0.875, 64) == 8
    assert hidden_count(1.0, 100) == 1 and hidden_count(0.0, 100) == 100 and hidden_count(0.999, 10) == 1
    assert hidden_count(0.9, 100) == 10 and hidden_count(0.75, 2) == 1  # 0.5 rounds up
    assert hidden_count(0.5, 3) == 2


@pytest.mark.parametrize("bad", [
    dict(activation=torch.rand(2, 3, 8, 8)), dict(activation=torch.rand(8, 8)),
    dict(activation=torch.rand(2, 0, 8)), dict(activation=torch.ones(2, 8, 8, dtype=torch.int64)),
    dict(keep=1.5), dict(keep=-0.1), dict(eps=0.0), dict(eps=float("inf")), dict(grad="soft"),
])
def test_bad_arguments(bad):
    args = dict(activation=torch.rand(2, 8, 8), keep=0.875, eps=TOPK_MASK_EPS, grad="ste") | bad
    with pytest.raises((ValueError, TypeError)):
        topk_mask(**args)


# --- backward --------------------------------------------------------------------------------------------

def _grads(impl, a, g, keep, eps, mode):
    a = a.detach().clone().requires_grad_(True)
    _run(impl, a, keep, eps, mode).backward(g)
    return a.grad


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["exact", "ste"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [1e-2, TOPK_MASK_EPS])
def test_gradients_match_float64_analytic(impl, mode, dtype, eps):
    dev = _device(impl)
    for shape, levels in (((3, 12, 20), None), ((2, 1, 64, 64), None), ((4, 9, 9), 4)):
        a = (torch.randn(shape) if levels is None else torch.randint(0, levels, shape).float()).to(dtype).to(dev)
        g = torch.randn(shape, dtype=dtype, device=dev)
        out = _grads(impl, a, g, 0.875, eps, mode)
        ref = oracle_grad(g, a, 0.875, eps, mode)
        assert out.dtype == dtype and out.shape == a.shape
        scale = ref.abs().max().item() + 1e-30
        tol = 1e-12 if dtype == torch.float64 else 2e-6
        torch.testing.assert_close(out.cpu().double(), ref, rtol=tol * 10, atol=tol * scale)
        if mode == "exact":   # the route through s makes the map's gradient sum to zero, like ste's
            assert abs(out.double().sum().item()) <= 1e-4 * scale * a.numel() ** 0.5


@pytest.mark.parametrize("impl", IMPLS)
def test_exact_gradient_nan(impl):
    a = torch.randn(2, 8, 8)
    a[0, 3, 4] = float("nan")
    a[1].view(-1)[:10] = float("nan")   # >= k = 8 NaNs: s is NaN
    a = a.to(_device(impl))
    g = torch.randn(2, 8, 8, device=a.device)
    exact = _grads(impl, a, g, 0.875, 1e-2, "exact").cpu()
    assert exact[0, 3, 4].isnan() and exact[0].isnan().sum() == 1 and exact[1].isnan().all()
    torch.testing.assert_close(_grads(impl, a, g, 0.875, 1e-2, "ste").cpu().double(),
                               oracle_grad(g, a, 0.875, 1e-2, "ste"))


def _spread_map(shape, device) -> torch.Tensor:
    """Float64 maps whose values are >= 1e-3 apart, so gradcheck's 1e-6 steps never reorder them."""
    n = shape[-1] * shape[-2]
    rows = [torch.randperm(n, dtype=torch.float64) * 1e-2 + torch.rand(n, dtype=torch.float64) * 5e-3
            for _ in range(shape[0])]
    return torch.stack(rows).reshape(shape).to(device).requires_grad_(True)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_exact(impl):
    a = _spread_map((2, 5, 7), _device(impl))
    assert torch.autograd.gradcheck(lambda x: _run(impl, x, 0.7, 0.05, "exact"), (a,))
    a4 = _spread_map((2, 1, 4, 6), _device(impl))
    assert torch.autograd.gradcheck(lambda x: _run(impl, x, 0.875, 0.05, "exact"), (a4,))


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_ste_is_the_surrogates_jacobian(impl):
    # The ste backward claims to be the Jacobian of M~(A) = -(A - mean_map(A)). This function's value is
    # M~(A) (computed here, independently) and its analytic gradient is the op's ste backward.
    def f(x):
        m = _run(impl, x, 0.875, TOPK_MASK_EPS, "ste")
        xs = x.detach()
        surrogate = -(xs - xs.mean(dim=(-2, -1), keepdim=True))
        return m - m.detach() + surrogate
    a = _spread_map((3, 6, 5), _device(impl))
    assert torch.autograd.gradcheck(f, (a,))


# --- the compiled op: opcheck, torch.compile, backend -----------------------------------------------------

def _op_samples(device: str) -> list[tuple]:
    return [
        (torch.randn(3, 8, 8, device=device, requires_grad=True), 8, TOPK_MASK_EPS, "ste"),
        (torch.randn(2, 1, 12, 7, device=device, dtype=torch.float64, requires_grad=True), 11, 1e-2, "exact"),
        (torch.randn(4, 20, 16, device=device).transpose(1, 2).requires_grad_(True), 40, 1e-3, "exact"),
        (torch.randint(0, 3, (2, 16, 16), device=device).half(), 32, 1e-3, "ste"),
    ]


def _opcheck(device: str) -> None:
    for args in _op_samples(device):
        torch.library.opcheck(torch.ops.reconad.topk_mask.default, args)
    g, a = torch.randn(2, 9, 9, device=device), torch.randn(2, 9, 9, device=device)
    thr = torch.ops.reconad.topk_mask(a, 10, 1e-3, "exact")[1]
    for mode in ("ste", "exact"):
        torch.library.opcheck(torch.ops.reconad.topk_mask_backward.default, (g, a, thr, 1e-3, mode))


@pytest.mark.skipif(not HAS_CPP, reason="reconad._C has no topk_mask CPU kernel")
def test_opcheck_cpu():
    _opcheck("cpu")


@pytest.mark.skipif(not HAS_CPP, reason="reconad._C has no topk_mask CPU kernel")
def test_backend_is_cpp():
    assert backend("topk_mask", "cpu") == "cpp"


@pytest.mark.parametrize("impl", IMPLS)
def test_torch_compile(impl):
    dev = _device(impl)
    fn = topk_mask_reference if impl == "fallback" else topk_mask

    def loss(x, img):
        return (img * fn(x, 0.875, 1e-3, "exact")).square().sum() + fn(x[:, 0], 0.5).sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 1, 16, 16, device=dev, requires_grad=True)
    img = torch.randn(2, 3, 16, 16, device=dev)
    l_eager = loss(x, img)
    (g_eager,) = torch.autograd.grad(l_eager, x)
    l_comp = compiled(x, img)
    (g_comp,) = torch.autograd.grad(l_comp, x)
    torch.testing.assert_close(l_comp, l_eager)
    torch.testing.assert_close(g_comp, g_eager)


# --- CUDA only -------------------------------------------------------------------------------------------

@pytest.mark.cuda
def test_cuda_large_maps_and_many_maps():
    # maps too large for shared memory (global path), and many small maps per launch
    for shape in ((3, 700, 700), (2, 1, 1024, 333), (1000, 8, 8), (17, 1, 1)):
        for dist in ("randn", "ties"):
            a = torch.randn(shape, device="cuda") if dist == "randn" else \
                torch.randint(0, 7, shape, device="cuda").float()
            ref, _ = oracle_forward(a, 0.875, TOPK_MASK_EPS)
            assert_bitwise(topk_mask(a), ref)
            g = torch.randn(shape, device="cuda")
            for mode in ("ste", "exact"):
                torch.testing.assert_close(_grads("cuda", a, g, 0.875, 1e-2, mode).cpu().double(),
                                           oracle_grad(g, a, 0.875, 1e-2, mode), rtol=2e-5, atol=1e-6)


@pytest.mark.cuda
def test_opcheck_cuda():
    _opcheck("cuda")
