"""The training recipe: progressive sizes, augmentations, crops, the step, and its saved state."""
from __future__ import annotations

import pytest
import torch

from reconad.components import StepContext
from reconad.config import validate
from reconad.model import build_model
from reconad.plugins import get_registry
from reconad_selfsup.objective import SelfSupObjective, augment, progressive_size, take_size

SCHEDULE = [(0.0, 32), (0.5, 48), (0.8, 64)]


@pytest.mark.parametrize("step,size", [(0, 32), (49, 32), (50, 48), (79, 48), (80, 64), (99, 64)])
def test_progressive_schedule_picks_the_size_at_a_step(step, size):
    assert progressive_size(SCHEDULE, step, 100, 64) == size
    assert progressive_size(None, step, 100, 64) == 64


def test_schedule_is_validated():
    for bad, msg in [([[0.2, 32]], "fraction 0"), ([[0, 32], [0, 48]], "increase"), ([[0, 80]], "image_size=64"),
                     ([[0, 32, 1]], "expected"), ([[1.0, 32]], "\\[0, 1\\)")]:
        with pytest.raises(ValueError, match=msg):
            SelfSupObjective(image_size=64, progressive=bad)


def _dihedral(img):
    out = []
    for k in range(4):
        r = torch.rot90(img, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_augmentations_are_dihedral_transforms_of_each_image():
    x = torch.rand(16, 2, 5, 5)
    y = augment(x, torch.Generator().manual_seed(0), rot90=True, hflip=True, vflip=True)
    seen = set()
    for a, b in zip(x, y):
        match = [i for i, t in enumerate(_dihedral(a)) if torch.equal(t, b)]
        assert match, "an augmented image is not a rotation / flip of its source"
        seen.add(match[0])
    assert len(seen) > 3
    assert torch.equal(augment(x, torch.Generator().manual_seed(0)), x)      # nothing enabled: unchanged
    h = augment(x, torch.Generator().manual_seed(1), hflip=True)
    assert all(torch.equal(b, a) or torch.equal(b, a.flip(-1)) for a, b in zip(x, h))
    v = augment(x, torch.Generator().manual_seed(1), vflip=True)
    assert all(torch.equal(b, a) or torch.equal(b, a.flip(-2)) for a, b in zip(x, v))


def test_crop_is_a_block_of_each_image_and_resize_keeps_everything():
    x = torch.rand(6, 1, 12, 12)
    c = take_size(x, 8, torch.Generator().manual_seed(0))
    assert c.shape == (6, 1, 8, 8)
    for a, b in zip(x, c):
        assert any(torch.equal(a[:, i:i + 8, j:j + 8], b) for i in range(5) for j in range(5))
    assert take_size(x, 8, torch.Generator(), "resize").shape == (6, 1, 8, 8)
    assert take_size(x, 12, torch.Generator()) is x


def _model(objective):
    raw = {"data": {"name": "textures", "category": "brick", "image_size": 32},
           "model": {"encoder": {"name": "selfsup", "width": 4, "sdc_width": 4, "sdc_blocks": 1},
                     "decoder": {"name": "selfsup", "width": 4}, "scorers": ["selfsup"], "objective": objective}}
    cfg = validate(raw, get_registry())
    return build_model(cfg.model, get_registry(), 1, 32)


def test_training_step_follows_the_schedule_and_resumes_exactly():
    torch.manual_seed(0)
    model, obj = _model({"name": "selfsup", "objective": 3, "seed": 7, "rot90": True,
                         "progressive": [[0, 16], [0.5, 32]]})
    ctx = StepContext(model, obj.configure_optimizers(model, lambda p: torch.optim.Adam(p, 1e-3)),
                      torch.device("cpu"))
    ctx.total_steps, ctx.steps_per_epoch = 4, 2
    batch = {"image": torch.rand(4, 1, 32, 32)}
    sizes = []
    for step in range(2):
        ctx.step_index = step
        logs = obj.training_step(ctx, batch)
        sizes.append(logs["size"])
        assert torch.isfinite(torch.tensor(logs["loss"]))
    state = obj.state_dict()
    a = obj.training_sample(batch["image"], 32)
    obj2 = _model({"name": "selfsup", "objective": 3, "seed": 99})[1]
    obj2.load_state_dict(state)
    obj2.augment_options = obj.augment_options
    b = obj2.training_sample(batch["image"], 32)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    ctx.step_index = 2
    assert obj.training_step(ctx, batch)["size"] == 32
    assert sizes == [16, 16]


def test_progressive_sizes_must_suit_the_encoder():
    model, obj = _model({"name": "selfsup", "progressive": [[0, 12], [0.5, 32]]})
    ctx = StepContext(model, obj.configure_optimizers(model, lambda p: torch.optim.Adam(p)), torch.device("cpu"))
    ctx.total_steps = 4
    with pytest.raises(ValueError, match="multiples of 8"):
        obj.training_step(ctx, {"image": torch.rand(2, 1, 32, 32)})


def test_plain_autoencoder_is_mse_on_undistorted_images():
    model, obj = _model({"name": "selfsup", "distort": False})
    x = torch.rand(2, 1, 32, 32)
    target, x_hat, mask = obj.training_sample(x, 32)
    assert mask is None and torch.equal(target, x_hat)
    out = model(x)
    loss = obj.loss(out, {"image": x})
    assert loss["loss"].item() == pytest.approx(torch.mean((out["recon"] - x) ** 2).item(), rel=1e-6)
