"""OLED's components: the mask (exactly the t fraction kept, midpoint semantics), R's scale and clipping, the
loss terms against a hand computation, the scorer's parts and finalize against numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reconad.config import validate
from reconad.model import build_model
from reconad.ops.topk_mask import hidden_count
from reconad.plugins import get_registry
from reconad_oled.losses import oled_terms
from reconad_oled.model import MaskModule, ReconstructorDecoder, ReconstructorEncoder, reconstruct
from reconad_oled.scorer import OLEDScorer


def _model(size: int = 16, channels: int = 1, masker: dict | None = None, scorer: dict | str = "oled"):
    raw = {"data": {"name": "digits", "normal_class": 0, "image_size": size},
           "model": {"masker": masker or {"name": "oled"},
                     "encoder": {"name": "oled", "channels": [8, 16], "latent_dim": 8},
                     "decoder": {"name": "oled", "channels": [16, 8]},
                     "scorers": [scorer], "objective": "oled"}}
    registry = get_registry()
    return build_model(validate(raw, registry).model, registry, channels, size)


@pytest.mark.parametrize("keep", [0.875, 0.5, 0.9])
@pytest.mark.parametrize("size", [16, 28])
def test_mask_hides_exactly_the_fraction(keep, size):
    torch.manual_seed(0)
    mm = MaskModule(1, size, keep=keep)
    x = torch.rand(4, 1, size, size)
    for mode in (True, False):  # training and eval: MM masks at test time too
        mm.train(mode)
        mask = mm.mask(x)
        assert mask.shape == (4, 1, size, size)
        hidden = (mask == 0).flatten(1).sum(1)
        assert hidden.tolist() == [hidden_count(keep, size * size)] * 4
        # the kept pixels are d / (d + eps) of eq. 2: positive, ~1 unless within ~100 eps of the threshold
        assert bool((mask >= 0).all() and (mask <= 1).all())
        assert float((mask > 0.99).float().mean()) >= keep - 0.02


def test_relu_rank_mode_ties_hide_every_zero():
    """Eq. 1 literally on the ReLU map: with fewer than k positive pixels the threshold is 0 and every zero
    is hidden; the default pre-ReLU ranking keeps exactly k hidden."""
    torch.manual_seed(0)
    mm = MaskModule(1, 16, keep=0.875, rank="relu")
    with torch.no_grad():
        last = mm.generator.decoder.body[-1]
        last.bias.fill_(-100.0)  # every activation is ReLU'd to 0
    x = torch.rand(2, 1, 16, 16)
    assert int((mm.mask(x) == 0).sum()) == 2 * 256
    mm.rank = "pre_relu"
    assert (mm.mask(x) == 0).flatten(1).sum(1).tolist() == [hidden_count(0.875, 256)] * 2


@pytest.mark.parametrize("channels", [1, 3])
def test_masked_pixels_sit_at_the_midpoint(channels):
    torch.manual_seed(1)
    mm = MaskModule(channels, 16).eval()
    x = torch.rand(3, channels, 16, 16)
    x_m, mask = mm(x)
    hidden = (mask == 0).expand_as(x)
    # hidden pixels are 0 in the paper's [-1, 1] scale, 0.5 in reconad's [0, 1], on every channel
    assert torch.equal(x_m[hidden], torch.full_like(x_m[hidden], 0.5))
    # kept pixels are x * d / (d + eps) (eq. 2): x itself up to pixels within ~1e4 eps of the threshold
    assert float(((x_m - x).abs()[~hidden] < 1e-3).float().mean()) > 0.98
    # eq. 3 in the paper's scale
    torch.testing.assert_close(x_m * 2 - 1, (x * 2 - 1) * mask, atol=1e-6, rtol=0)


def test_reconstructor_scale_clipping_and_sizes():
    torch.manual_seed(0)
    enc = ReconstructorEncoder(1, 28, channels=[8, 16, 32], latent_dim=10)
    dec = ReconstructorDecoder((10,), 1, 28, channels=[32, 16, 8])
    with torch.no_grad():
        dec.body.body[-1].bias.fill_(5.0)  # pre-clip output far above 1
        y = dec(enc(torch.rand(2, 1, 28, 28)))
    assert y.shape == (2, 1, 28, 28)
    assert torch.equal(y, torch.ones_like(y))  # clipped to 1 in [-1, 1] = 1 in [0, 1]
    with pytest.raises(ValueError, match="dense bottleneck"):
        ReconstructorDecoder((16, 7, 7), 1, 28)


def test_mask_generator_is_far_smaller_than_the_reconstructor():
    mm = sum(p.numel() for p in MaskModule(1, 28).parameters())
    r = sum(p.numel() for p in ReconstructorEncoder(1, 28).parameters()) + \
        sum(p.numel() for p in ReconstructorDecoder((64,), 1, 28).parameters())
    assert mm * 20 < r


def test_losses_match_a_hand_computation():
    # 1 image, 1 channel, 2x2: values in [0, 1]; the paper's scale is 2v - 1
    x = torch.tensor([[[[1.0, 0.0], [0.5, 0.25]]]])
    rm = torch.tensor([[[[0.5, 0.0], [0.5, 1.0]]]])     # R(x_m)
    r = torch.tensor([[[[1.0, 0.5], [0.0, 0.25]]]])     # R(x)
    mask = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])   # hides pixels (0,0) and (1,1)
    t = oled_terms(x, rm, mask, r)
    # differences in [-1, 1] units: x - R(x_m) = 2 * [0.5, 0, 0, -0.75] = [1, 0, 0, -1.5]
    assert t.mask.item() == pytest.approx((1 + 0 + 0 + 2.25) / 4)
    # masked region only: [1, ., ., -1.5] -> L2 norm sqrt(3.25), / sqrt(N = 4)
    assert t.cont.item() == pytest.approx(np.sqrt(3.25) / 2)
    # x - R(x) = 2 * [0, -0.5, 0.5, 0] = [0, -1, 1, 0]
    assert t.rec.item() == pytest.approx(2 / 4)
    assert oled_terms(x, rm, mask).rec is None
    # cont="l1" (the authors' code): the absolute differences of the masked region, summed, / N
    assert oled_terms(x, rm, mask, r, cont="l1").cont.item() == pytest.approx((1 + 1.5) / 4)
    assert oled_terms(x, rm, mask, r, cont="l1").mask.item() == pytest.approx(t.mask.item())
    with pytest.raises(ValueError, match="mask must be"):
        oled_terms(x, rm, mask[:, :, :1])
    with pytest.raises(ValueError, match="cont must be"):
        oled_terms(x, rm, mask, cont="l3")


@pytest.mark.parametrize("cont", ["l2", "l1"])
def test_objective_loss_is_eq_8(cont):
    from reconad_oled.objective import OLEDObjective

    x = torch.rand(2, 1, 4, 4)
    out = {"input": x, "recon": torch.rand_like(x), "recon_unmasked": torch.rand_like(x),
           "mask": (torch.rand(2, 1, 4, 4) > 0.3).float()}
    t = oled_terms(x, out["recon"], out["mask"], out["recon_unmasked"], cont)
    losses = OLEDObjective(gamma=12.5, lam=2, cont=cont).loss(out, {"image": x})
    expect = t.mask.mean() + 12.5 * t.cont.mean() + 2 * t.rec.mean()
    torch.testing.assert_close(losses["loss"], expect)


def test_cont_option_is_checked():
    from reconad_oled.objective import OLEDObjective

    with pytest.raises(ValueError, match="oled objective: cont"):
        OLEDObjective(cont="L1")
    with pytest.raises(ValueError, match="oled scorer: cont"):
        OLEDScorer(cont="huber")


@pytest.mark.parametrize("cont", ["l2", "l1"])
def test_scorer_parts_and_finalize_match_numpy(cont):
    torch.manual_seed(0)
    model, _ = _model(16, scorer={"name": "oled", "cont": cont})
    model.eval()
    x = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        out = model(x)
        sc = model.score(out)["oled"]
        t = oled_terms(x, out["recon"], out["mask"], reconstruct(model, x), cont)
    torch.testing.assert_close(sc.parts["mask"], t.mask)
    torch.testing.assert_close(sc.parts["cont"], t.cont)
    torch.testing.assert_close(sc.parts["rec"], t.rec)
    assert sc.pixel.shape == (5, 16, 16)

    rng = np.random.default_rng(0)
    raw = {"image": rng.random(7), "mask": rng.random(7) * 3, "cont": rng.random(7) + 5, "rec": np.full(7, 2.0)}
    fin = OLEDScorer().finalize(raw)
    for k in ("mask", "cont"):
        v = raw[k]
        np.testing.assert_allclose(fin[k], (v - v.min()) / (v.max() - v.min()))
    np.testing.assert_array_equal(fin["rec"], np.zeros(7))  # a constant part carries no information
    np.testing.assert_allclose(fin["image"], (fin["mask"] + fin["cont"] + fin["rec"]) / 3)
    assert set(fin) == set(raw)


def test_reference_scale_scores_each_image_alone():
    """scale 'reference': min-max of the held-out raw parts (numpy), applied in forward; one image scores the
    same alone as in a batch; finalize then changes nothing; an old checkpoint without the buffers, or
    scale 'set', scores over the set."""
    torch.manual_seed(0)
    model, _ = _model(16)
    model.eval()
    scorer = model.scorers[0]
    held, test = torch.rand(6, 1, 16, 16), torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        raw_held = model.score(model(held))["oled"].parts
        raw_test = model.score(model(test))["oled"].parts
    assert scorer.set_level and not scorer.fitted
    assert scorer.fit_reference({"image": np.zeros(6), **{k: v.double().numpy() for k, v in raw_held.items()}})
    assert scorer.fitted and not scorer.set_level
    with torch.no_grad():
        sc = model.score(model(test))["oled"]
        alone = model.score(model(test[2:3]))["oled"]
    want = {}
    for k in ("mask", "cont", "rec"):
        lo, hi = raw_held[k].double().min(), raw_held[k].double().max()
        want[k] = (raw_test[k].double() - lo) / (hi - lo)
        np.testing.assert_allclose(sc.parts[k].double().numpy(), want[k].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sc.image.numpy(), ((want["mask"] + want["cont"] + want["rec"]) / 3).numpy(),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone.image, sc.image[2:3])
    fin = {"image": sc.image.double().numpy(), **{k: v.double().numpy() for k, v in sc.parts.items()}}
    assert all(np.array_equal(scorer.finalize(fin)[k], v) for k, v in fin.items())

    state = {k: v for k, v in model.state_dict().items() if "ref_" not in k}   # a checkpoint from before
    fresh, _ = _model(16)
    fresh.load_state_dict(state)
    assert fresh.scorers[0].set_level
    assert not OLEDScorer(scale="set").fit_reference({k: np.ones(3) for k in ("image", "mask", "cont", "rec")})
    with pytest.raises(ValueError, match="scale must be one of"):
        OLEDScorer(scale="test")


def test_scorer_outside_a_model_is_an_error():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="recon_unmasked"):
        OLEDScorer()({"input": x, "recon": x, "mask": torch.ones(2, 1, 8, 8)})
    with pytest.raises(ValueError, match="no masker"):
        OLEDScorer()({"input": x, "recon": x})


def test_masker_composes_with_core_components():
    """MM is an ordinary masker: it drives the built-in conv autoencoder and MemAE memory too."""
    raw = {"data": {"name": "digits", "normal_class": 0, "image_size": 16},
           "model": {"masker": {"name": "oled"}, "encoder": {"name": "conv", "channels": [8, 16]},
                     "memory": {"name": "memae", "slots": 10}, "decoder": {"name": "conv"},
                     "scorers": ["oled", "l2"], "objective": "oled"}}
    registry = get_registry()
    model, _ = build_model(validate(raw, registry).model, registry, 1, 16)
    model.eval()
    with torch.no_grad():
        scores = model.score(model(torch.rand(3, 1, 16, 16)))
    assert set(scores["oled"].parts) == {"mask", "cont", "rec"}
