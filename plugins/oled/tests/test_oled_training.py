"""The Mask Module actually learns: under OLED's alternating adversarial training its masks move (still exactly k
hidden pixels per image), and MM steps against a fixed Reconstructor raise its objective L_mask + gamma L_cont
(through topk_mask's straight-through gradient)."""
from __future__ import annotations

import pytest
import torch

from reconad.components import StepContext
from reconad.config import validate
from reconad.data.digits import load_mnist
from reconad.data.base import resize_images
from reconad.engine.trainer import make_optimizer_factory
from reconad.model import build_model
from reconad.plugins import get_registry
from reconad_oled.losses import oled_terms
from reconad_oled.model import reconstruct

SIZE = 16


def _build(grad: str = "ste", mask_lr: float | None = None):
    raw = {"data": {"name": "digits", "normal_class": 0, "image_size": SIZE},
           "model": {"masker": {"name": "oled", "grad": grad, "channels": [8, 16]},
                     "encoder": {"name": "oled", "channels": [16, 32], "latent_dim": 16},
                     "decoder": {"name": "oled", "channels": [32, 16]},
                     "scorers": ["oled"], "objective": {"name": "oled", "mask_lr": mask_lr}},
           "train": {"lr": 0.0005, "betas": [0.5, 0.9]}}
    registry = get_registry()
    cfg = validate(raw, registry)
    model, objective = build_model(cfg.model, registry, 1, SIZE)
    return cfg, model, objective


def _digits(n: int, cls: int = 0) -> torch.Tensor:
    x, y = load_mnist()
    idx = torch.from_numpy((y == cls).nonzero()[0][:n])
    return resize_images(torch.from_numpy(x[idx.numpy()]).unsqueeze(1), SIZE)


def _mm_term(model, mm, x) -> float:
    """MM's objective for the masks of ``mm`` against ``model``'s Reconstructor (eval mode)."""
    model.eval()
    mm.eval()
    with torch.no_grad():
        x_m, mask = mm(x)
        t = oled_terms(x, reconstruct(model, x_m), mask)
    return float(t.mask.mean() + 50.0 * t.cont.mean())


def test_mask_module_learns_under_adversarial_training():
    """Alternating training (objective.training_step): MM gets its own optimiser and its masks move."""
    torch.manual_seed(0)
    cfg, model, objective = _build(mask_lr=0.005)
    data = _digits(64)
    probe = data[:32]
    opts = objective.configure_optimizers(model, make_optimizer_factory(cfg.train))
    assert len(opts) == 2  # R's and MM's Adam
    mm_ids = {id(p) for p in model.masker.parameters()}
    assert {id(p) for g in opts[1].param_groups for p in g["params"]} == mm_ids
    assert not mm_ids & {id(p) for g in opts[0].param_groups for p in g["params"]}
    assert opts[1].param_groups[0]["lr"] == 0.005 and opts[0].param_groups[0]["betas"] == (0.5, 0.9)
    with torch.no_grad():
        initial_hidden = model.masker.eval().mask(probe) == 0
    ctx = StepContext(model, opts, torch.device("cpu"))
    model.train()
    g = torch.Generator().manual_seed(0)
    logs = []
    for step in range(25):
        ctx.step_index = step
        logs.append(objective.training_step(ctx, {"image": data[torch.randperm(64, generator=g)[:16]]}))
    assert {"mm_objective", "mask", "cont", "rec", "loss"} <= set(logs[-1])
    with torch.no_grad():
        final_hidden = model.masker.eval().mask(probe) == 0
    assert int(final_hidden.sum()) == int(initial_hidden.sum())  # still exactly k per image
    # the masks moved: a large share of the hidden pixels are not the ones hidden at the start
    moved = 1.0 - float((initial_hidden & final_hidden).sum()) / float(initial_hidden.sum())
    assert moved > 0.3, moved


@pytest.mark.parametrize("grad", ["ste"])
def test_mask_module_ascends_its_objective_against_a_fixed_reconstructor(grad):
    """MM steps alone against a fixed R: the straight-through gradient of topk_mask raises
    L_mask + gamma L_cont, i.e. MM learns to hide what R reconstructs worst."""
    torch.manual_seed(1)
    cfg, model, objective = _build(grad=grad, mask_lr=0.005)
    x = _digits(16, cls=3)
    opts = objective.configure_optimizers(model, make_optimizer_factory(cfg.train))
    ctx = StepContext(model, opts, torch.device("cpu"))
    model.train()
    model.encoder.eval(), model.decoder.eval()   # a fixed R (its BN statistics too)
    for p in [*model.encoder.parameters(), *model.decoder.parameters()]:
        p.requires_grad_(False)
    start = _mm_term(model, model.masker, x)
    terms = []
    for _ in range(25):
        model.masker.train()
        out = model(x)
        t = oled_terms(x, out["recon"], out["mask"])
        adv = t.mask.mean() + 50.0 * t.cont.mean()
        terms.append(float(adv.detach()))
        ctx.step(-adv, opts[1])
    end = _mm_term(model, model.masker, x)
    assert end > 1.08 * start, (start, end)
    assert sum(terms[-5:]) > sum(terms[:5])


@pytest.mark.parametrize("masker", [{"name": "random_block", "block": 4, "at_eval": True}])
def test_parameter_free_masker_trains_only_the_reconstructor(masker):
    raw = {"data": {"name": "digits", "normal_class": 0, "image_size": SIZE},
           "model": {"masker": masker, "encoder": {"name": "oled", "channels": [8, 16], "latent_dim": 8},
                     "decoder": {"name": "oled", "channels": [16, 8]}, "scorers": ["oled"], "objective": "oled"}}
    registry = get_registry()
    cfg = validate(raw, registry)
    model, objective = build_model(cfg.model, registry, 1, SIZE)
    opts = objective.configure_optimizers(model, make_optimizer_factory(cfg.train))
    assert len(opts) == 1
    logs = objective.training_step(StepContext(model, opts, torch.device("cpu")), {"image": _digits(8)})
    assert "mm_objective" not in logs and logs["loss"] > 0
