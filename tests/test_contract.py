"""The component contract, parametrised over every registered component (built-in or installed plugin):
each is composed into a small model, run forward and backward on a tiny batch, and its outputs checked.

A component that only fits certain neighbours (e.g. a multi-scale memory) names them when it is registered,
``register(name, factory, contract_model={...})``: a partial ``model:`` mapping used instead of the defaults.
"""
from __future__ import annotations

import pytest
import torch

from reconad.components import MemoryRead, Objective, Scorer, Scores
from reconad.config import validate
from reconad.model import build_model
from reconad.plugins import get_registry

REGISTRY = get_registry()
BASE = {"encoder": {"name": "conv", "channels": [8, 16]}, "memory": {"name": "memae", "slots": 10},
        "decoder": {"name": "conv"}, "scorers": ["l2"], "objective": "reconstruction"}
SLOT = {"encoder": "encoder", "memory": "memory", "decoder": "decoder", "masker": "masker",
        "scorer": "scorers", "objective": "objective"}
SPECS = [s for s in REGISTRY if s.kind in SLOT]


def _model_config(spec) -> dict:
    model = dict(BASE)
    model.update(spec.contract_model or {})
    model[SLOT[spec.kind]] = [spec.name] if spec.kind == "scorer" else spec.name
    return model


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.kind}:{s.name}" for s in SPECS])
def test_component_contract(spec, channels):
    torch.manual_seed(0)
    size = 32
    raw = {"data": {"name": "textures", "category": "brick", "image_size": size}, "model": _model_config(spec)}
    cfg = validate(raw, REGISTRY)
    model, objective = build_model(cfg.model, REGISTRY, channels, size)
    assert isinstance(objective, Objective)
    assert all(isinstance(s, Scorer) for s in model.scorers)  # build_model refuses other modules
    x = torch.rand(3, channels, size, size)

    model.train()
    out = model(x)
    assert out["recon"].shape == x.shape and out["recon"].dtype == torch.float32
    if "memory" in out:
        assert isinstance(out["memory"], MemoryRead) and out["memory"].entropy.dim() == 0
    if "mask" in out:
        assert out["mask"].shape == (3, 1, size, size) and out["masked"].shape == x.shape
    losses = objective.loss(out, {"image": x})
    assert losses["loss"].dim() == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None for g in grads), "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads if g is not None)

    model.eval()
    with torch.no_grad():
        scores = model.score(model(x))
    for name, sc in scores.items():
        assert isinstance(sc, Scores), name
        assert sc.image.shape == (3,) and sc.image.dtype in (torch.float32, torch.float64)
        assert torch.isfinite(sc.image).all()
        if sc.pixel is not None:
            assert sc.pixel.shape == (3, size, size)


def test_every_component_kind_is_covered():
    kinds = {s.kind for s in SPECS}
    assert kinds == set(SLOT), f"no registered component of kinds {set(SLOT) - kinds}"
