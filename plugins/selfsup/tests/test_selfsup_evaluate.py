"""The area rule of §4.2 on hand-made heatmaps, the scorer's heatmap, and the run-folder command."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reconad.imageops import gaussian_blur
from reconad_selfsup.evaluate import area_rule_metrics
from reconad_selfsup.scorer import SelfSupScorer, heatmap


def _maps():
    hold = np.zeros((3, 10, 10))
    hold[0, 1:3, 1:3] = 0.5          # a 4-pixel component at 0.5
    hold[1, 5, 5] = 0.9              # one bright pixel
    test = np.zeros((4, 10, 10))
    test[0, 2:5, 2:5] = 0.8          # 9 pixels above 0.5: anomalous
    test[1, 0, 0] = 0.95             # a single pixel: too small
    test[2, 6:8, 6:9] = 0.7          # 6 pixels: anomalous
    masks = np.zeros((4, 10, 10), bool)
    masks[0, 2:5, 2:6] = True        # 12 true pixels, 9 found
    masks[3, 0:2, 0:2] = True        # missed entirely
    labels = np.array([1, 0, 0, 1])
    return hold, test, masks, labels


def test_area_rule_counts_images_and_pixels():
    hold, test, masks, labels = _maps()
    # min_area 3: the 4-pixel normal component must disappear -> the threshold is 0.5 (map > 0.5)
    r = area_rule_metrics(hold, test, masks, labels, min_area=3)
    assert r["pixel_threshold"] == 0.5 and r["min_area"] == 3
    # images: predicted [1, 0, 1, 0] vs labels [1, 0, 0, 1]
    assert r["image_counts"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert r["image_tpr"] == 0.5 and r["image_tnr"] == 0.5 and r["image_mean"] == 0.5 and r["image_f1"] == 0.5
    # pixels: 9 + 6 predicted; 9 of the 16 true pixels found
    assert r["pixel_counts"] == {"tp": 9, "fp": 6, "fn": 7, "tn": 400 - 22}
    assert r["pixel_tpr"] == pytest.approx(9 / 16)
    assert r["pixel_f1"] == pytest.approx(18 / (18 + 6 + 7))
    assert r["pixel_mean"] == pytest.approx((9 / 16 + 378 / 384) / 2)


def test_min_area_fraction_and_no_masks():
    hold, test, _, labels = _maps()
    r = area_rule_metrics(hold, test, None, labels, min_area_fraction=0.05)     # 5 pixels of 100
    assert r["min_area"] == 5 and r["pixel_threshold"] == 0.0   # no normal component exceeds 5 pixels
    assert "pixel_tpr" not in r


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="one image size"):
        area_rule_metrics(np.zeros((2, 4, 4)), np.zeros((2, 5, 5)), None, [0, 1], min_area=1)
    with pytest.raises(ValueError, match="labels"):
        area_rule_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), None, [0], min_area=1)


def test_heatmap_is_the_channel_l2_norm_smoothed():
    x = torch.zeros(1, 3, 8, 8)
    r = torch.zeros(1, 3, 8, 8)
    r[0, :, 4, 4] = torch.tensor([0.3, 0.4, 0.0])
    raw = heatmap(r, x, sigma=0.0)
    assert raw[0, 4, 4].item() == pytest.approx(0.5) and raw.sum().item() == pytest.approx(0.5)
    smooth = heatmap(r, x, sigma=1.0)
    assert torch.allclose(smooth, gaussian_blur(raw, 1.0)) and smooth[0, 4, 4] < 0.5
    s = SelfSupScorer(sigma=0.0, reduction="max")({"recon": r, "input": x})
    assert s.image.item() == pytest.approx(0.5) and s.pixel.shape == (1, 8, 8)
