"""reconad-maskedmem, tested as its author would: installed, found through its entry point, composed from the
oled and mmae plugins' components, trained adversarially, and refused at build time when shapes disagree."""
from __future__ import annotations

import copy
import json
import os
import re

import pytest
import torch
import yaml

from reconad.config import validate
from reconad.engine import run
from reconad.model import BuildError, build_model
from reconad.plugins import get_registry

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGISTRY = get_registry()
SMALL = {"masker": {"name": "oled", "keep": 0.75, "channels": [4, 8]},
         "encoder": {"name": "mmae", "scales": 3, "feature_size": 4, "channels": 8, "base_width": 8, "max_width": 16},
         "memory": {"name": "mmae_multiscale", "slots": 10},
         "decoder": {"name": "mmae", "base_width": 8, "max_width": 16},
         "scorers": [{"name": "l2", "reduction": "topk", "topk_fraction": 0.05}, "oled"],
         "objective": {"name": "maskedmem", "entropy_weight": 0.01}}


def _config(model: dict, size: int = 16, **train):
    raw = {"name": "maskedmem-test", "data": {"name": "textures", "category": "brick", "image_size": size,
                                              "patch_size": size, "patch_stride": 24},
           "model": model, "train": {"batch_size": 16, "device": "cpu", "progress": False,
                                             **(train if "steps" in train else {"epochs": 1, **train})}}
    return validate(raw, REGISTRY)


def test_the_entry_point_registers_the_objective():
    spec = REGISTRY.get("objective", "maskedmem")
    assert "reconad-maskedmem" in spec.plugin
    # the components it combines come from the two paper plugins, not from this package
    assert "reconad-oled" in REGISTRY.get("masker", "oled").plugin
    assert "reconad-mmae" in REGISTRY.get("memory", "mmae_multiscale").plugin


def test_reconad_plugins_lists_it(capsys):
    from reconad.cli import main

    assert main(["plugins"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()]
    assert any(r[:2] == ["maskedmem", "reconad-maskedmem:maskedmem"] for r in rows if len(r) >= 2)


def test_the_shipped_config_validates():
    with open(os.path.join(HERE, "config.yaml")) as fh:
        cfg = validate(yaml.safe_load(fh), REGISTRY)
    assert cfg.model.objective.name == "maskedmem" and cfg.model.masker.name == "oled"


@pytest.mark.parametrize("decoder, shape", [({"name": "conv"}, r"\[\(8, 4, 4\), \(8, 4, 4\), \(8, 4, 4\)\]"),
                                            ({"name": "oled"}, r"\[\(8, 4, 4\)")])
def test_a_single_scale_decoder_after_multiscale_memories_fails_at_build_time(decoder, shape):
    model = copy.deepcopy(SMALL)
    model["decoder"] = decoder
    with pytest.raises(BuildError) as err:
        build_model(_config(model).model, REGISTRY, 1, 16)
    msg = str(err.value)
    assert f"decoder {decoder['name']!r}" in msg and "memory 'mmae_multiscale'" in msg
    assert re.search(shape, msg), msg


def test_training_updates_both_players_and_adds_the_entropy_term():
    torch.manual_seed(0)
    cfg = _config(copy.deepcopy(SMALL))
    model, objective = build_model(cfg.model, REGISTRY, 1, 16)
    from reconad.components import StepContext
    from reconad.engine.trainer import make_optimizer_factory

    opts = objective.configure_optimizers(model, make_optimizer_factory(cfg.train))
    assert len(opts) == 2  # the Reconstructor's and the Mask Module's
    ctx = StepContext(model, opts, torch.device("cpu"))
    x = torch.rand(8, 1, 16, 16)
    masker0 = [p.detach().clone() for p in model.masker.parameters()]
    memory0 = [p.detach().clone() for p in model.memory.parameters()]
    model.train()
    logs = objective.training_step(ctx, {"image": x})
    for key in ("mm_objective", "mask", "cont", "rec", "entropy", "loss"):
        assert key in logs and logs[key] == logs[key], key
    want = logs["mask"] + objective.gamma * logs["cont"] + objective.lam * logs["rec"] + 0.01 * logs["entropy"]
    assert logs["loss"] == pytest.approx(want, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(masker0, model.masker.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(memory0, model.memory.parameters()))


def test_run_writes_image_pixel_and_region_metrics(tmp_path):
    cfg = _config(copy.deepcopy(SMALL), size=32, steps=3)
    result = run(cfg, str(tmp_path / "run"), log=lambda *_: None)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # the oled scorer's parts sit beside the l2 score
    assert {"l2", "oled", "oled_mask", "oled_cont", "oled_rec"} <= set(metrics["scorers"])
    assert result.metrics["image_auroc"] == metrics["image_auroc"]
