"""ONNX decompositions under onnxruntime: reconad::memory_address against its pure-PyTorch reference,
reconad::topk_mask against a loop over its definition."""
from __future__ import annotations

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from reconad.deploy.onnx_ops import translation_table  # noqa: E402
from reconad.ops.memory_address import memory_address_reference  # noqa: E402


class _Read(torch.nn.Module):
    def __init__(self, memory: torch.Tensor, lam: float) -> None:
        super().__init__()
        self.memory = torch.nn.Parameter(memory)
        self.lam = lam

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # queries are pre-normalised by the caller's kernel path; here dot similarity on normalised inputs
        out, row_entropy, _, _ = torch.ops.reconad.memory_address(q, self.memory, self.memory, self.lam)
        return out, row_entropy


@pytest.mark.parametrize("lam", [0.0, 0.02, 0.9])
def test_memory_address_onnx_matches_reference(tmp_path, lam):
    torch.manual_seed(0)
    memory, q = torch.randn(20, 8), torch.randn(6, 8) * 3
    model = _Read(memory, lam).eval()
    path = tmp_path / "m.onnx"
    with torch.no_grad():
        prog = torch.onnx.export(model, (q,), dynamo=True, custom_translation_table=translation_table())
    prog.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out, ent = sess.run(None, {sess.get_inputs()[0].name: q.numpy()})
    ref = memory_address_reference(q, memory, lam, similarity="dot")
    torch.testing.assert_close(torch.from_numpy(out), ref.output, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(ent), ref.row_entropy, rtol=1e-5, atol=1e-5)
    if lam == 0.9:  # lambda above 1/K with spread scores: some rows have an empty support and read zeros
        assert (ref.output.abs().sum(1) == 0).any()


class _Mask(torch.nn.Module):
    def __init__(self, k: int, eps: float) -> None:
        super().__init__()
        self.k, self.eps = k, eps

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ops.reconad.topk_mask(a, self.k, self.eps, "ste")


@pytest.mark.parametrize("shape,k", [((3, 1, 6, 5), 4), ((2, 7, 4), 1), ((2, 1, 3, 3), 9)])
def test_topk_mask_onnx_matches_a_numpy_loop(tmp_path, shape, k):
    torch.manual_seed(1)
    a = torch.randn(*shape)
    a.view(-1)[:3] = a.view(-1)[3]          # ties at one value
    path = tmp_path / "t.onnx"
    with torch.no_grad():
        torch.onnx.export(_Mask(k, 1e-7).eval(), (a,), dynamo=True,
                          custom_translation_table=translation_table()).save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mask, thr = sess.run(None, {sess.get_inputs()[0].name: a.numpy()})
    flat = a.numpy().reshape(-1, shape[-1] * shape[-2]).astype("float64")
    for i, row in enumerate(flat):               # the op's definition, one map at a time
        s = sorted(row, reverse=True)[k - 1]
        d = [max(s - v, 0.0) for v in row]
        want = [di / (di + 1e-7) for di in d]
        assert thr.reshape(-1)[i] == pytest.approx(s, abs=0)
        assert mask.reshape(flat.shape)[i] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert mask.shape == shape and thr.shape == shape[:-2]
