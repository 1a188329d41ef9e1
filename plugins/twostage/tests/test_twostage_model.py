"""The RotNet encoder (ResNet-18), the DCGAN decoders and the rotation pretext (paper 003 eqs. 1-2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reconad_twostage.model import DCGANDecoder, DualDecoder, RotNetEncoder
from reconad_twostage.pretext import PRETEXT_TASKS, RotationPretext, register_pretext, rotate_batch


def test_imagenet_stem_is_torchvision_resnet18():
    import torchvision as tv   # a dev dependency (pyproject's [dev] extra): this test must run, never skip

    torch.manual_seed(0)
    ref = tv.models.resnet18(weights=None, num_classes=4).eval()
    ours = RotNetEncoder(3, 64, width=64, stem="imagenet").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)        # same names and shapes
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.pretext_logits(x), ref(x))
        assert ours(x).shape == (2, 512)


@pytest.mark.parametrize("stride,sizes", [(1, [16, 16, 8, 4, 2]), (2, [8, 8, 4, 2, 1])])
def test_small_stem_keeps_small_inputs_spatial(stride, sizes):
    enc = RotNetEncoder(1, 16, width=4, stem_stride=stride)
    assert isinstance(enc.maxpool, nn.Identity) and enc.conv1.kernel_size == (3, 3)
    h = enc.relu(enc.bn1(enc.conv1(torch.rand(2, 1, 16, 16))))
    seen = [h.shape[-1]]
    for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4):
        h = layer(h)
        seen.append(h.shape[-1])
    assert seen == sizes
    assert enc(torch.rand(2, 1, 16, 16)).shape == (2, 32)
    assert enc.pretext_logits(torch.rand(2, 1, 16, 16)).shape == (2, 4)
    assert "fc.weight" in enc.state_dict()                      # the rotation head is saved with the encoder


def test_dcgan_decoder_is_ganomalys():
    dec = DCGANDecoder((100,), 3, 32, width=64, output="tanh")
    kinds = [(type(m).__name__, getattr(m, "in_channels", None), getattr(m, "out_channels", None),
              getattr(m, "kernel_size", None), getattr(m, "stride", None), getattr(m, "padding", None))
             for m in dec.main]
    assert kinds == [
        ("ConvTranspose2d", 100, 256, (4, 4), (1, 1), (0, 0)), ("BatchNorm2d", None, None, None, None, None),
        ("ReLU", None, None, None, None, None),
        ("ConvTranspose2d", 256, 128, (4, 4), (2, 2), (1, 1)), ("BatchNorm2d", None, None, None, None, None),
        ("ReLU", None, None, None, None, None),
        ("ConvTranspose2d", 128, 64, (4, 4), (2, 2), (1, 1)), ("BatchNorm2d", None, None, None, None, None),
        ("ReLU", None, None, None, None, None),
        ("ConvTranspose2d", 64, 3, (4, 4), (2, 2), (1, 1)), ("Tanh", None, None, None, None, None)]
    assert dec(torch.rand(2, 100)).shape == (2, 3, 32, 32)
    assert DCGANDecoder((8, 2, 2), 1, 16, width=4)(torch.rand(2, 8, 2, 2)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="image_size must be 4 \\* 2\\^k.*got 28.*data.image_size: 32"):
        DCGANDecoder((100,), 1, 28)


def test_dual_decoders_share_no_parameter():
    dual = DualDecoder((32,), 1, 16, width=4)
    a = {id(p) for p in dual.mse.parameters()}
    b = {id(p) for p in dual.ssim.parameters()}
    assert a and b and not a & b
    out = dual(torch.rand(3, 32))
    assert set(out) == {"recon", "recon_ssim"} and out["recon"].shape == out["recon_ssim"].shape == (3, 1, 16, 16)


def test_rotate_batch_matches_numpy_rot90():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    images, labels = rotate_batch(x)
    assert images.shape == (8, 1, 3, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for i in range(8):
        t, b = divmod(i, 2)
        np.testing.assert_array_equal(images[i, 0].numpy(), np.rot90(x[b, 0].numpy(), t))
    half, lab2 = rotate_batch(x, 2)
    assert lab2.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(half[2, 0].numpy(), np.rot90(x[0, 0].numpy(), 2))
    with pytest.raises(ValueError, match="rotations must be 4"):
        rotate_batch(x, 3)


def test_rotation_loss_is_eq2():
    torch.manual_seed(0)
    enc = RotNetEncoder(1, 16, width=4).eval()
    x = torch.rand(3, 1, 16, 16)
    out = RotationPretext().loss(enc, x)
    # eq. 2 per image: -1/K sum_t log F^t(h(x|t)), then the batch mean
    per_image = []
    for b in range(3):
        logp = torch.stack([F.log_softmax(enc.pretext_logits(torch.rot90(x[b:b + 1], t, (-2, -1))), 1)[0, t]
                            for t in range(4)])
        per_image.append(-logp.mean())
    torch.testing.assert_close(out["loss"], torch.stack(per_image).mean())
    with pytest.raises(TypeError, match="pretext_logits"):
        RotationPretext().loss(nn.Conv2d(1, 1, 3), x)


def test_pretext_registry_accepts_new_tasks():
    class Flip:
        def loss(self, component, images):
            return {"loss": component(images.flip(-1)).pow(2).mean()}

    register_pretext("flip_test", Flip)
    try:
        assert PRETEXT_TASKS["flip_test"] is Flip
        with pytest.raises(ValueError, match="already registered"):
            register_pretext("flip_test", RotationPretext)
    finally:
        PRETEXT_TASKS.pop("flip_test")
