"""The two-stage recipe: phase switch at the right step, a frozen encoder afterwards, isolated decoders."""
from __future__ import annotations

import math

import pytest
import torch

from _twostage_fixtures import context, tiny_model


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_phase_switch_and_frozen_encoder():
    torch.manual_seed(0)
    model, objective = tiny_model(objective={"pretrain_steps": None, "pretrain_epochs": 2})
    ctx = context(model, objective, steps_per_epoch=2, total_steps=7)
    assert objective.stage1_steps(2) == 4
    sgd, adam = ctx.optimizers
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["lr"] == 0.1
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 2e-4 and adam.defaults["betas"] == (0.5, 0.999)
    enc_ids = {id(p) for p in model.encoder.parameters()}
    assert {id(p) for g in sgd.param_groups for p in g["params"]} == enc_ids
    assert not enc_ids & {id(p) for g in adam.param_groups for p in g["params"]}
    batch = {"image": torch.rand(4, 1, 16, 16)}
    lrs = []
    for step in range(7):
        ctx.step_index, ctx.epoch = step, step // 2
        enc, dec = _state(model.encoder), _state(model.decoder)
        logs = objective.training_step(ctx, batch)
        assert objective.stage(step, 2) == ("pretrain_rotation" if step < 4 else "reconstruction")
        if step < 4:
            assert logs["stage"] == 1.0 and "pretext_acc" in logs
            assert _changed(enc, model.encoder), f"step {step}: stage 1 must train the encoder"
            assert not _changed(dec, model.decoder), f"step {step}: stage 1 must leave the decoders alone"
            lrs.append(sgd.param_groups[0]["lr"])
        else:
            assert logs["stage"] == 2.0 and {"recon_mse", "recon_ssim_ssim"} <= set(logs)
            assert not _changed(enc, model.encoder), f"step {step}: the frozen encoder changed (BN stats too)"
            assert not model.encoder.training and not any(p.requires_grad for p in model.encoder.parameters())
            assert _changed(dec, model.decoder)
            model.train()                       # as the trainer after scoring: the freeze must hold anyway
    assert lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)])


def test_gradients_stay_in_their_decoder():
    torch.manual_seed(0)
    model, objective = tiny_model()
    objective.freeze_component(model)
    x = torch.rand(3, 1, 16, 16)
    for term, own, other in (("recon_mse", "mse", "ssim"), ("recon_ssim_ssim", "ssim", "mse")):
        model.zero_grad(set_to_none=True)
        objective.loss(model(x), {"image": x})[term].backward()
        assert all(p.grad is None for p in getattr(model.decoder, other).parameters()), term
        assert all(p.grad is None for p in model.encoder.parameters()), term
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model.decoder, own).parameters())
    # the summed loss gives each decoder exactly the gradient of its own term
    grads = {}
    for term in ("recon_mse", "recon_ssim_ssim", "loss"):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        objective.loss(model(x), {"image": x})[term].backward()
        grads[term] = {n: p.grad.clone() for n, p in model.decoder.named_parameters() if p.grad is not None}
    for name, g in grads["loss"].items():
        own = grads["recon_mse"] if name.startswith("mse.") else grads["recon_ssim_ssim"]
        torch.testing.assert_close(g, own[name])


def test_stage2_loss_is_eqs_8_and_9():
    from reconad.metrics import ssim

    model, objective = tiny_model()
    x = torch.rand(2, 1, 16, 16)
    out = {"input": x, "recon": torch.rand_like(x), "recon_ssim": torch.rand_like(x)}
    losses = objective.loss(out, {"image": x})
    torch.testing.assert_close(losses["recon_mse"], ((out["recon"] - x) ** 2).mean())
    torch.testing.assert_close(losses["recon_ssim_ssim"], -ssim(x, out["recon_ssim"], data_range=1.0))
    torch.testing.assert_close(losses["loss"], losses["recon_mse"] + losses["recon_ssim_ssim"])


def test_end_to_end_mode_trains_the_encoder_with_adam():
    torch.manual_seed(0)
    model, objective = tiny_model(objective={"pretrain_steps": 0, "freeze": "none", "losses": {"recon": "mse"}},
                                  decoder="twostage_dcgan")
    ctx = context(model, objective, total_steps=2)
    enc = _state(model.encoder)
    logs = objective.training_step(ctx, {"image": torch.rand(4, 1, 16, 16)})
    assert logs["stage"] == 2.0 and model.encoder.training
    assert _changed(enc, model.encoder)


def test_errors():
    model, objective = tiny_model(objective={"pretrain_steps": 6})
    with pytest.raises(ValueError, match="stage 1 takes 6 steps.*6 steps in all"):
        objective.training_step(context(model, objective, total_steps=6), {"image": torch.rand(2, 1, 16, 16)})
    with pytest.raises(Exception, match="unknown pretext task 'jigsaw'; registered: rotation"):
        tiny_model(objective={"pretext": "jigsaw"})
    with pytest.raises(Exception, match="freeze must name a model component"):
        tiny_model(objective={"freeze": "encodr"})
    with pytest.raises(Exception, match="losses.recon must be one of mse, ssim"):
        tiny_model(objective={"losses": {"recon": "l1"}})
    with pytest.raises(Exception, match="losses names output 'recon_ssim'"):
        m, o = tiny_model(decoder="twostage_dcgan", objective={})
        x = torch.rand(2, 1, 16, 16)
        o.loss(m(x), {"image": x})


def test_component_names_share_the_plugin_prefix_and_the_old_objective_name_is_suggested():
    from reconad.config import ConfigError, validate
    from reconad.plugins import get_registry

    registry = get_registry()
    names = {s.name for s in registry if s.factory.__module__.startswith("reconad_twostage.")}
    assert names == {"twostage", "twostage_rotnet", "twostage_dual", "twostage_dcgan"}
    raw = {"data": {"name": "digits"}, "model": {"encoder": "twostage_rotnet", "decoder": "twostage_dual",
                                                  "memory": None, "objective": "two_stage"}}
    with pytest.raises(ConfigError, match=r"unknown objective 'two_stage'.*did you mean 'twostage'\?"):
        validate(raw, registry)
