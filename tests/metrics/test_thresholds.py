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
