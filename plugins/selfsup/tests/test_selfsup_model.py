"""Table 1's autoencoder: layer widths, SDC dilations, output shapes at several sizes, size errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reconad_selfsup.model import SDC, SelfSupDecoder, SelfSupEncoder


def _convs(module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_sdc_has_one_branch_per_dilation_and_keeps_the_size():
    sdc = SDC(7, 4, kernel=5, dilations=[1, 2, 4, 8, 16])
    assert [c.dilation for c in sdc.branches] == [(d, d) for d in (1, 2, 4, 8, 16)]
    assert all(c.kernel_size == (5, 5) and c.out_channels == 4 for c in sdc.branches)
    for s in (3, 8, 20):
        assert sdc(torch.rand(2, 7, s, s)).shape == (2, 20, s, s)


def test_sdc_dilation_reaches_that_far():
    # an impulse at the centre shows up exactly at offsets k * d, k in -2..2, in branch d
    sdc = SDC(1, 1, kernel=5, dilations=[1, 4])
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1
    for conv, d in zip(sdc.branches, (1, 4)):
        nn.init.ones_(conv.weight)
        hit = conv(x)[0, 0].nonzero().tolist()
        assert sorted({r for r, _ in hit}) == [10 + k * d for k in range(-2, 3)]


def test_table1_layout_at_the_default_width():
    enc = SelfSupEncoder(3, 512)
    dec = SelfSupDecoder((320, 64, 64), 3, 512)
    widths = [c.out_channels for c in _convs(enc)]
    assert widths[:6] == [32, 32, 64, 64, 128, 128]
    assert widths[6:] == [64] * 20                      # 4 SDC blocks x 5 dilations x 64 filters
    assert sum(isinstance(m, nn.MaxPool2d) for m in enc.modules()) == 3
    convs = _convs(dec)
    assert [c.out_channels for c in convs] == [256, 256, 256, 128, 128, 128, 64, 64, 64, 32, 3]
    assert [type(c).__name__[4] for c in convs].count("T") == 3          # ConvTranspose2d
    assert convs[-1].kernel_size == (1, 1)
    assert isinstance(list(dec.body)[-1], nn.Sigmoid) and not isinstance(list(dec.body)[-2], nn.BatchNorm2d)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in dec.modules())
    assert n_bn == len(convs) - 1                       # BN after every convolution but the last


@pytest.mark.parametrize("size", [16, 32, 48, 64])
@pytest.mark.parametrize("depth", [2, 3])
def test_shapes_at_several_sizes_fully_convolutional(size, depth):
    enc = SelfSupEncoder(1, 64, width=4, depth=depth, sdc_blocks=2, sdc_width=4, dilations=[1, 2, 4])
    dec = SelfSupDecoder((12, 64 // 2 ** depth, 64 // 2 ** depth), 1, 64, width=4)
    enc.eval(), dec.eval()
    x = torch.rand(2, 1, size, size)
    z = enc(x)
    assert z.shape == (2, 12, size // 2 ** depth, size // 2 ** depth)
    y = dec(z)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_sizes_that_do_not_divide_are_errors():
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth = 8"):
        SelfSupEncoder(1, 36)
    enc = SelfSupEncoder(1, 32, width=4, sdc_width=4)
    with pytest.raises(ValueError, match="multiples of 8"):
        enc(torch.rand(1, 1, 20, 20))
    with pytest.raises(ValueError, match="doublings"):
        SelfSupDecoder((8, 5, 5), 1, 32)
