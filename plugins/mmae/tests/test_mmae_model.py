"""MMAE modules: shapes per scale, K / gamma from config, memory semantics vs reconad.ops.memory_address,
the fuser's weights, and the multi-scale contract with reconad's model builder."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reconad.config import validate
from reconad.model import BuildError, build_model
from reconad.ops import memory_address
from reconad.plugins import get_registry
from reconad_mmae.model import (MMAEDecoder, MMAEEncoder, MultiScaleMemory, ScaleAttentionFuser,
                                pixel_shuffle_nd, scale_resolutions)

SMALL = {"channels": 16, "base_width": 8, "max_width": 16}


def _shapes(feats):
    return [tuple(f.shape[1:]) for f in feats]


def _model(raw_model: dict, size: int, channels: int = 1):
    raw = {"data": {"name": "textures", "category": "brick", "image_size": size}, "model": raw_model}
    cfg = validate(raw, get_registry())
    return build_model(cfg.model, get_registry(), channels, size)[0]


def test_scale_resolutions_follow_the_paper():
    assert scale_resolutions(256, 5, 0.5) == [256, 128, 64, 32, 16]
    assert scale_resolutions(64, 3, 0.75) == [64, 48, 36]
    with pytest.raises(ValueError, match="gamma"):
        scale_resolutions(64, 3, 1.5)
    with pytest.raises(ValueError, match="fewer scales"):
        scale_resolutions(16, 8, 0.5)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_gradients_at_32(channels):
    torch.manual_seed(0)
    enc = MMAEEncoder(channels, 32, **SMALL)
    x = torch.rand(2, channels, 32, 32)
    feats = enc(x)
    assert enc.resolutions == [32, 16, 8, 4, 2] and len(feats) == 5
    assert _shapes(feats) == [(16, 2, 2)] * 5            # default feature_size = the smallest resolution
    mem = MultiScaleMemory(_shapes(feats), slots=10)
    dec = MMAEDecoder(_shapes(feats), channels, 32, base_width=8, max_width=16)
    read = mem(feats)
    out = dec(read.output)
    assert out["recon"].shape == x.shape and out["scale_weights"].shape == (2, 5, 2, 2)
    loss = F.mse_loss(out["recon"], x) + 0.0002 * read.entropy
    loss.backward()
    for name, p in [*enc.named_parameters(), *mem.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_shapes_at_64_with_a_feature_size():
    enc = MMAEEncoder(1, 64, scales=4, feature_size=4, **SMALL)
    feats = enc(torch.rand(2, 1, 64, 64))
    assert enc.resolutions == [64, 32, 16, 8] and _shapes(feats) == [(16, 4, 4)] * 4
    recon = MMAEDecoder(_shapes(feats), 1, 64, base_width=8, max_width=16)(feats)["recon"].detach()
    assert recon.shape == (2, 1, 64, 64) and 0 <= float(recon.min()) and float(recon.max()) <= 1


@torch.no_grad()
def test_shapes_at_256_paper_scales():
    enc = MMAEEncoder(3, 256, scales=5, gamma=0.5, feature_size=4, channels=8, base_width=4, max_width=8)
    feats = enc(torch.rand(1, 3, 256, 256))
    assert enc.resolutions == [256, 128, 64, 32, 16] and _shapes(feats) == [(8, 4, 4)] * 5
    recon = MMAEDecoder(_shapes(feats), 3, 256, base_width=4, max_width=8)(feats)["recon"]
    assert recon.shape == (1, 3, 256, 256)


def test_vector_latent_and_odd_sizes():
    enc = MMAEEncoder(1, 28, scales=2, feature_size=7, latent_dim=32, **SMALL)
    feats = enc(torch.rand(2, 1, 28, 28))
    assert _shapes(feats) == [(32,), (32,)]
    out = MMAEDecoder(_shapes(feats), 1, 28, start_size=7, base_width=8, max_width=16)(feats)
    assert out["recon"].shape == (2, 1, 28, 28) and out["scale_weights"].shape == (2, 2)
    # 20 -> 10 -> 5 -> 3: the decoder crops the doubled 6 to 5, then 10, 20
    enc = MMAEEncoder(1, 20, scales=2, feature_size=3, **SMALL)
    feats = enc(torch.rand(2, 1, 20, 20))
    assert MMAEDecoder(_shapes(feats), 1, 20, base_width=8, max_width=16)(feats)["recon"].shape == (2, 1, 20, 20)


def test_k_and_gamma_come_from_the_config():
    model = _model({"encoder": {"name": "mmae", "scales": 3, "gamma": 0.5, **SMALL},
                    "memory": {"name": "mmae_multiscale", "slots": 7},
                    "decoder": {"name": "mmae", "base_width": 8, "max_width": 16}}, 64)
    assert model.encoder.resolutions == [64, 32, 16] and len(model.memory.memories) == 3
    assert [m.memory.shape for m in model.memory.memories] == [(7, 16)] * 3
    out = model(torch.rand(2, 1, 64, 64))
    assert _shapes(out["features"]) == [(16, 16, 16)] * 3 and out["scale_weights"].shape == (2, 3, 16, 16)

    model = _model({"encoder": {"name": "mmae", "scales": 3, "gamma": 0.75, "feature_size": 2, **SMALL},
                    "memory": "mmae_multiscale", "decoder": {"name": "mmae", "base_width": 8, "max_width": 16}}, 64)
    assert model.encoder.resolutions == [64, 48, 36]
    with pytest.raises(BuildError, match="feature_size"):   # 64 never halves to 36
        _model({"encoder": {"name": "mmae", "scales": 3, "gamma": 0.75}, "memory": "mmae_multiscale",
                "decoder": "mmae"}, 64)


def test_memory_reads_every_scale_with_memory_address():
    torch.manual_seed(1)
    shapes = [(8, 4, 4), (6, 2, 2), (5,)]                 # a memory may take different shapes per scale
    mem = MultiScaleMemory(shapes, slots=[5, 7, 9], shrink_threshold=0.05)
    feats = [torch.randn(3, *s) for s in shapes]
    for mode in ("train", "eval"):
        getattr(mem, mode)()
        read = mem(feats)
        assert _shapes(read.output) == shapes
        entropies, per_sample = [], []
        for f, m, out in zip(feats, mem.memories, read.output):
            c = f.shape[1]
            q = f.reshape(3, c, -1).transpose(1, 2).reshape(-1, c)
            ref = memory_address(q, m.memory.detach(), 0.05, return_weights=True)
            expect = ref.output.view(3, -1, c).transpose(1, 2).reshape(f.shape)
            torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-5)
            entropies.append(ref.entropy)
            w = ref.weights
            per_sample.append((-(w * torch.log(w.clamp_min(1e-30))).sum(1)).view(3, -1).mean(1))
        torch.testing.assert_close(read.entropy, torch.stack(entropies).mean(), atol=1e-5, rtol=1e-5)
        if mode == "train":
            assert read.sample_entropy is None
        else:
            torch.testing.assert_close(read.sample_entropy, torch.stack(per_sample).mean(0), atol=1e-5, rtol=1e-5)
    assert mem.memories[0].shrink_threshold == 0.05
    assert MultiScaleMemory([(4,)], slots=20).memories[0].shrink_threshold == pytest.approx(1 / 20)


def test_memory_is_the_core_memae_memory_and_reads_video_cubes():
    from reconad.builtin.memae import MemAEMemory

    torch.manual_seed(3)
    mem = MultiScaleMemory([(6, 2, 3, 3), (6, 4, 4)], slots=8).eval()
    torch.manual_seed(3)
    core = MemAEMemory((6, 2 * 3 * 3, 1), 8)
    assert all(isinstance(m, MemAEMemory) for m in mem.memories)
    torch.testing.assert_close(mem.memories[0].memory, core.memory)        # same initialisation
    f = torch.randn(2, 6, 2, 3, 3)                                          # (B, C, t, h, w)
    read = mem([f, torch.randn(2, 6, 4, 4)])
    q = f.reshape(2, 6, -1).transpose(1, 2).reshape(-1, 6)
    ref = memory_address(q, mem.memories[0].memory.detach(), 1 / 8, return_weights=True)
    torch.testing.assert_close(read.output[0], ref.output.view(2, -1, 6).transpose(1, 2).reshape(f.shape))
    with pytest.raises(ValueError, match=r"features of shape \(2, 5, 4, 4\) for a memory of 6-channel slots"):
        mem([f, torch.randn(2, 5, 4, 4)])


def test_memory_takes_a_single_tensor_and_checks_its_input():
    mem = MultiScaleMemory((8, 4, 4), slots=5)             # one tensor: K = 1, returned as a tensor
    read = mem(torch.randn(2, 8, 4, 4))
    assert isinstance(read.output, torch.Tensor) and read.output.shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match="2 counts"):
        MultiScaleMemory([(4,), (4,), (4,)], slots=[3, 4])
    with pytest.raises(ValueError, match="built for 2 scales"):
        MultiScaleMemory([(4,), (4,)], slots=3)([torch.randn(2, 4)])
    with pytest.raises(ValueError, match="in_shape"):
        MultiScaleMemory("nope")


def test_fuser_weights_sum_to_one():
    torch.manual_seed(2)
    feats = [torch.randn(2, 6, 3, 3) for _ in range(4)]
    fuser = ScaleAttentionFuser(4, 6)
    fused, w = fuser(feats)
    torch.testing.assert_close(w, torch.full_like(w, 0.25))          # zero-initialised: starts as the mean
    torch.testing.assert_close(fused, torch.stack(feats).mean(0))
    for p in fuser.parameters():
        torch.nn.init.normal_(p)
    fused, w = fuser(feats)
    assert w.shape == (2, 4, 3, 3) and (w >= 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(2, 3, 3))
    torch.testing.assert_close(fused, sum(w[:, i:i + 1] * f for i, f in enumerate(feats)))
    assert w.std() > 0.01                                            # not uniform once trained
    fused.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fuser.parameters())

    mean = ScaleAttentionFuser(4, 6, mode="mean")
    assert not list(mean.parameters())
    torch.testing.assert_close(mean(feats)[0], torch.stack(feats).mean(0))
    _, wv = ScaleAttentionFuser(3, 5)([torch.randn(2, 5) for _ in range(3)])   # vectors: one weight per scale
    torch.testing.assert_close(wv.sum(1), torch.ones(2))


def test_decoder_needs_one_shape_and_ablation_option():
    with pytest.raises(ValueError, match="one shape"):
        MMAEDecoder([(8, 4, 4), (8, 2, 2)], 1, 32)
    dec = MMAEDecoder([(8, 4, 4)] * 2, 1, 32, fuser="mean")
    assert dec.fuser.score is None


def test_pixel_shuffle_nd_matches_torch_and_a_loop():
    x = torch.randn(2, 3 * 4, 5, 6)
    torch.testing.assert_close(pixel_shuffle_nd(x, (2, 2)), F.pixel_shuffle(x, 2))
    y = torch.randn(1, 2 * 2 * 3 * 2, 2, 3, 4)
    out = pixel_shuffle_nd(y, (2, 3, 2))
    assert out.shape == (1, 2, 4, 9, 8)
    for c in range(2):
        for a in range(2):
            for b in range(3):
                for d in range(2):
                    src = y[0, ((c * 2 + a) * 3 + b) * 2 + d]
                    torch.testing.assert_close(out[0, c, a::2, b::3, d::2], src)


def test_contract_models_build():
    """The contract test composes each MMAE component with the others (the ``contract_model`` they register)."""
    for kind, name in (("encoder", "mmae"), ("memory", "mmae_multiscale"), ("decoder", "mmae")):
        model = {"scorers": ["l2"], "objective": "reconstruction",
                 **get_registry().get(kind, name).contract_model, kind: name}
        m = _model(model, 32, 3)
        assert m(torch.rand(2, 3, 32, 32))["recon"].shape == (2, 3, 32, 32)
