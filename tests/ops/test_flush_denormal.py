"""reconad::set_flush_denormal against the CPU's own arithmetic: a float32 product whose exact result is subnormal,
computed by torch over 2^20 elements on two intra-op threads, comes out 0 on every element once the mode is set
on every thread, and equal to numpy's unflushed product once it is cleared."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reconad.ops import flush_denormal as fd

N = 1 << 20          # far above torch's grain size: the product is split between the two threads

pytestmark = pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    fd.set_flush_denormal(False)
    torch.set_num_threads(before)


def _nonzero_products() -> tuple[int, float]:
    y = torch.full((N,), 1e-30, dtype=torch.float32) * 1e-10
    return int((y != 0).sum()), float(y.max())


def test_the_compiled_op_sets_every_intra_op_thread(two_threads):
    if not fd.every_thread():
        pytest.skip("reconad._C is not built here, or was built before reconad::set_flush_denormal")
    reference = float(np.float32(1e-30) * np.float32(1e-10))        # unflushed: a subnormal, not 0
    assert 0 < reference < np.finfo(np.float32).tiny
    assert fd.set_flush_denormal(True)
    assert _nonzero_products() == (0, 0.0)
    assert fd.set_flush_denormal(False)
    n, value = _nonzero_products()
    assert n == N and value == pytest.approx(reference, rel=1e-6)


def test_without_the_extension_the_calling_thread_flushes(monkeypatch):
    monkeypatch.setattr(fd, "every_thread", lambda: False)
    try:
        assert fd.set_flush_denormal(True)
        assert (torch.tensor([1e-30], dtype=torch.float32) * 1e-10).item() == 0.0
    finally:
        fd.set_flush_denormal(False)
    assert (torch.tensor([1e-30], dtype=torch.float32) * 1e-10).item() != 0.0
