"""Objectives (1)-(3) against a hand computation on tiny tensors."""
from __future__ import annotations

import math

import pytest
import torch

from reconad_selfsup.losses import selfsup_loss


def _hand(recon, target, x_hat, mask, objective, lam):
    """Equations (1)-(3) written out with Python loops over one image at a time."""
    total = 0.0
    b, c, h, w = target.shape
    for i in range(b):
        sq_n = sq_d = cnt_n = cnt_d = 0.0
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    e = float(recon[i, ch, y, x] - target[i, ch, y, x])
                    m = float(mask[i, 0, y, x])
                    d = abs(float(x_hat[i, ch, y, x] - target[i, ch, y, x])) if objective == 3 else m
                    sq_n += ((1 - m) * e) ** 2
                    cnt_n += 1 - m
                    sq_d += (d * e) ** 2
                    cnt_d += d
        first = lam / cnt_n * math.sqrt(sq_n) if cnt_n else 0.0
        second = (1 - lam) / cnt_d * math.sqrt(sq_d) if cnt_d else 0.0
        total += first + second if objective == 1 else first - second
    return total / b


@pytest.mark.parametrize("objective", [1, 2, 3])
@pytest.mark.parametrize("lam", [0.5, 0.2])
def test_objectives_match_the_equations(objective, lam):
    g = torch.Generator().manual_seed(objective)
    target = torch.rand(2, 3, 3, 4, generator=g, dtype=torch.float64)
    mask = torch.zeros(2, 1, 3, 4, dtype=torch.float64)
    mask[0, 0, :2, 1:3] = 1
    mask[1, 0, 2, :] = 1
    x_hat = torch.where(mask.bool(), torch.rand(2, 3, 3, 4, generator=g, dtype=torch.float64), target)
    recon = torch.rand(2, 3, 3, 4, generator=g, dtype=torch.float64)
    out = selfsup_loss(recon, target, x_hat, mask, objective, lam)
    assert out["loss"].item() == pytest.approx(_hand(recon, target, x_hat, mask, objective, lam), rel=1e-12)


def test_objective_3_weights_by_the_real_valued_difference():
    target = torch.zeros(1, 1, 1, 3, dtype=torch.float64)
    x_hat = torch.tensor([[[[0.0, 0.5, 1.0]]]], dtype=torch.float64)   # pixel 0 masked but unchanged
    mask = torch.tensor([[[[1.0, 1.0, 1.0]]]], dtype=torch.float64)
    recon = torch.tensor([[[[0.9, 0.2, 0.4]]]], dtype=torch.float64)
    out = selfsup_loss(recon, target, x_hat, mask, 3, 0.5)
    # M_bar is empty -> first term 0; second: ||(0, .5*.2, 1*.4)||_2 / 1.5
    assert out["loss"].item() == pytest.approx(-0.5 * math.hypot(0.1, 0.4) / 1.5, rel=1e-12)
    out2 = selfsup_loss(recon, target, x_hat, mask, 2, 0.5)
    assert out2["loss"].item() == pytest.approx(-0.5 * math.sqrt(0.81 + 0.04 + 0.16) / 3, rel=1e-12)


def test_empty_mask_gives_finite_gradients():
    recon = torch.rand(2, 1, 4, 4, requires_grad=True)
    target = recon.detach().clone()        # zero error: the norm's gradient must not be NaN
    out = selfsup_loss(recon, target, target, torch.zeros(2, 1, 4, 4), 1, 0.5)
    out["loss"].backward()
    assert torch.isfinite(recon.grad).all()
    assert out["loss"].item() == 0.0


def test_bad_arguments():
    x = torch.rand(1, 1, 2, 2)
    with pytest.raises(ValueError, match="1, 2 or 3"):
        selfsup_loss(x, x, x, x, 4, 0.5)
    with pytest.raises(ValueError, match="lam"):
        selfsup_loss(x, x, x, x, 1, 1.5)
