"""Label-free thresholds against brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import reconad.metrics as M


def test_quantile_and_normalized(rng):
    s = rng.normal(size=500)
    assert M.quantile_threshold(s, 0.95) == pytest.approx(np.quantile(s, 0.95))
    t = M.normalized_score_threshold(s, 0.9)
    assert t == pytest.approx(s.min() + 0.9 * (s.max() - s.min()))
    norm = M.normalize_scores(s)
    assert norm.min() == 0.0 and norm.max() == 1.0
    np.testing.assert_array_equal(M.normalize_scores(np.full(4, 2.5)), np.zeros(4))
    with pytest.raises(ValueError, match="gamma"):
        M.normalized_score_threshold(s, 1.5)
    with pytest.raises(ValueError, match="q must"):
        M.quantile_threshold(s, -0.1)


def _largest_brute(binary: np.ndarray) -> int:
    best = 0
    for b in binary:
        lab, n = ndimage.label(b, np.ones((3, 3)))
        if n:
            best = max(best, int(np.bincount(lab.ravel())[1:].max()))
    return best


def test_area_threshold_is_lowest_passing_value(rng):
    maps = ndimage.gaussian_filter(rng.random((3, 20, 24)), (0, 1.5, 1.5))
    maps = np.round(maps, 3)                          # ties
    min_area = int(rng.integers(3, 15))
    t = M.area_threshold(maps, min_area)
    values = np.unique(maps)
    passing = [v for v in values if _largest_brute(maps > v) <= min_area]
    assert t == passing[0]
    assert _largest_brute(maps > t) <= min_area
    below = values[values < t]
    if below.size:
        assert _largest_brute(maps > below[-1]) > min_area
    areas = M.largest_component_area(maps, t)
    assert areas.shape == (3,) and areas.max() <= min_area
    assert [int(a) for a in areas] == [_largest_brute(maps[i : i + 1] > t) for i in range(3)]
    with pytest.raises(ValueError, match="min_area"):
        M.area_threshold(maps, 20 * 24)


def test_area_segmentation_matches_skimage_labelling(rng):
    from skimage.measure import label, regionprops

    maps = ndimage.gaussian_filter(rng.random((4, 18, 21)), (0, 1.2, 1.2))
    t = float(np.quantile(maps, 0.7))
    min_area = int(rng.integers(2, 12))
    expected = np.zeros(maps.shape, bool)
    for i, m in enumerate(maps):                 # each map on its own, 8-connected (connectivity=2)
        for region in regionprops(label(m > t, connectivity=2)):
            if region.area > min_area:
                expected[i][tuple(region.coords.T)] = True
    seg = M.area_segmentation(maps, t, min_area)
    np.testing.assert_array_equal(seg, expected)
    assert expected.any() and (~expected & (maps > t)).any()   # the data exercises both outcomes
    # an image has a segmented pixel iff its largest component exceeds min_area
    np.testing.assert_array_equal(seg.reshape(4, -1).any(1), M.largest_component_area(maps, t) > min_area)
    np.testing.assert_array_equal(M.area_segmentation(maps[0], t, min_area), expected[:1])
    with pytest.raises(ValueError, match="NaN"):
        M.area_segmentation(np.full((1, 3, 3), np.nan), 0.5, 1)


def test_area_segmentation_is_8_connected_per_map():
    m = np.zeros((2, 5, 5))
    m[0, 0, 0] = m[0, 1, 1] = m[0, 2, 2] = 1      # a diagonal: one 8-connected component of 3
    m[1, 0, 0] = 1                                 # same place in another map: not connected to map 0
    seg = M.area_segmentation(m, 0.5, 2)
    assert seg[0].sum() == 3 and seg[1].sum() == 0
