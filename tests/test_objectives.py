"""The built-in `reconstruction` objective: its terms against hand-computed losses, and the two ways a paper's
objective reuses it (its own reconstruction term, no KL term)."""
from __future__ import annotations

import pytest
import torch

from reconad.builtin.objectives import ReconstructionObjective
from reconad.components import MemoryRead


def _outputs(kl: float | None = None) -> dict:
    g = torch.Generator().manual_seed(0)
    x, r = torch.rand(3, 2, 5, 5, generator=g), torch.rand(3, 2, 5, 5, generator=g)
    out = {"input": x, "recon": r, "memory": MemoryRead(r, torch.tensor(1.5), None)}
    if kl is not None:
        out["kl"] = torch.tensor(kl)
    return out


@pytest.mark.parametrize("kind", ["mse", "l1"])
def test_terms_are_the_error_the_entropy_and_the_kl(kind):
    out = _outputs(kl=2.0)
    diff = (out["input"] - out["recon"]).double()
    err = diff.pow(2).mean() if kind == "mse" else diff.abs().mean()
    got = ReconstructionObjective(loss=kind, entropy_weight=0.1, kl_weight=0.25).loss(out, {})
    assert set(got) == {"rec", "entropy", "kl", "loss"}
    assert got["rec"].item() == pytest.approx(err.item(), rel=1e-6)
    assert got["entropy"].item() == pytest.approx(1.5) and got["kl"].item() == pytest.approx(2.0)
    assert got["loss"].item() == pytest.approx(err.item() + 0.1 * 1.5 + 0.25 * 2.0, rel=1e-6)


def test_without_memory_or_kl_the_loss_is_the_error():
    out = _outputs()
    del out["memory"]
    got = ReconstructionObjective().loss(out, {})
    assert set(got) == {"rec", "loss"}
    assert got["loss"].item() == pytest.approx((out["input"] - out["recon"]).pow(2).mean().item(), rel=1e-6)


class _SummedNoKL(ReconstructionObjective):
    kl_term = False

    def reconstruction(self, outputs):
        return (outputs["input"] - outputs["recon"]).abs().flatten(1).sum(1).mean()


def test_a_subclass_changes_the_error_and_drops_the_kl_keeping_the_entropy():
    out = _outputs(kl=2.0)
    got = _SummedNoKL(entropy_weight=0.1).loss(out, {})
    err = (out["input"] - out["recon"]).abs().double().sum().item() / 3
    assert set(got) == {"rec", "entropy", "loss"}
    assert got["rec"].item() == pytest.approx(err, rel=1e-6)
    assert got["loss"].item() == pytest.approx(err + 0.1 * 1.5, rel=1e-6)
