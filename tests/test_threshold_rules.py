"""Threshold rules (reconad.thresholds): the split-conformal false-alarm guarantee, measured over many
calibration / test draws, and every rule checked against an independent computation."""
from __future__ import annotations

import math
import warnings
import zlib
from fractions import Fraction

import numpy as np
import pytest

from reconad.metrics import area_segmentation, area_threshold, f1_max, f1_score
from reconad.thresholds import F1, Area, Conformal, Fixed, Quantile, ThresholdRule, conformal_p_values, make_rule

DRAWS = 2000   # calibration / test splits per case
M = 50         # new normal scores per draw


def false_alarm_slack(alpha: float, n: int, draws: int = DRAWS, m: int = M) -> float:
    """Four standard deviations of the mean false-alarm rate over ``draws`` splits (continuous scores): per
    draw, the rate given the calibration set is Beta(n + 1 - k, k) (variance (1-a)a/(n+2) at its mean a), and
    the ``m`` test scores add binomial noise a(1-a)/m."""
    a = alpha
    per_draw = a * (1 - a) / (n + 2) + a * (1 - a) / m
    return 4.0 * math.sqrt(per_draw / draws)


DISTRIBUTIONS = {
    "normal": lambda rng, shape: rng.normal(size=shape),
    "exponential": lambda rng, shape: rng.exponential(size=shape),
    "lognormal_heavy_tail": lambda rng, shape: rng.lognormal(sigma=2.0, size=shape),
    "uniform": lambda rng, shape: rng.uniform(size=shape),
    "poisson_ties": lambda rng, shape: rng.poisson(3.0, size=shape).astype(float),   # many ties
}


def rate_over_draws(sample, alpha: float, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    cal, test = sample(rng, (DRAWS, n)), sample(rng, (DRAWS, M))
    flags = [Conformal(alpha).fit(c).predict(t) for c, t in zip(cal, test)]
    return float(np.mean(flags))


@pytest.mark.parametrize("alpha,n", [(0.05, 19), (0.1, 49), (0.2, 9), (0.1, 30)])
@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
def test_conformal_false_alarm_rate_is_at_most_alpha(dist, alpha, n):
    rate = rate_over_draws(DISTRIBUTIONS[dist], alpha, n, seed=zlib.crc32(f"{dist}-{alpha}-{n}".encode()))
    slack = false_alarm_slack(alpha, n)
    # the finite-sample bound: P(new normal score > threshold) <= 1 - k/(n+1) <= alpha
    assert rate <= alpha + slack, (dist, alpha, n, rate, slack)
    exact = 1 - math.ceil(Fraction(n + 1) * (1 - Fraction(str(alpha)))) / (n + 1)
    if dist != "poisson_ties":
        # continuous scores: the rate is exactly 1 - k/(n+1), which is alpha when (n+1) alpha is an integer;
        # the rule is not trivially conservative
        assert abs(rate - exact) <= slack, (dist, alpha, n, rate, exact, slack)
        if (Fraction(n + 1) * Fraction(str(alpha))).denominator == 1:
            assert rate >= alpha - slack


def test_conformal_threshold_is_the_kth_smallest_score():
    rng = np.random.default_rng(0)
    for n in (1, 5, 19, 20, 99, 100, 250):
        for alpha in ("0.01", "0.05", "0.1", "0.2", "0.5"):
            cal = rng.normal(size=n)
            # the smallest calibration score t with #{cal <= t} >= (n+1)(1-alpha), in exact arithmetic
            need = Fraction(n + 1) * (1 - Fraction(alpha))
            ok = [t for t in sorted(cal) if (cal <= t).sum() >= need]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rule = Conformal(float(alpha)).fit(cal)
            assert rule.threshold_ == (ok[0] if ok else math.inf), (n, alpha)


def test_conformal_too_few_scores_warns_with_the_smallest_n_that_works():
    with pytest.warns(UserWarning, match=r"10 calibration score\(s\).*at least 19"):
        rule = Conformal(0.05).fit(np.arange(10.0))
    assert rule.threshold_ == math.inf and rule.predict([1e9]).tolist() == [0]
    assert Conformal.min_calibration(0.05) == 19 and Conformal.min_calibration(0.01) == 99
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Conformal(0.05).fit(np.arange(19.0)).threshold_ == 18.0


def test_p_values_match_predict_and_are_super_uniform():
    rng = np.random.default_rng(1)
    for alpha in (0.05, 0.1, 0.3):
        for cal in (rng.normal(size=40), rng.integers(0, 4, size=40).astype(float)):
            rule = Conformal(alpha).fit(cal)
            s = np.concatenate([rng.normal(size=200), cal, [cal.max() + 1, cal.min() - 1]])
            p = rule.p_values(s)
            # an oracle by counting
            assert np.allclose(p, [(1 + (cal >= x).sum()) / (cal.size + 1) for x in s])
            assert np.array_equal(rule.predict(s), (p <= alpha).astype(np.int64))
    # a normal score's p-value: P(p <= a) <= a over exchangeable draws
    cal, new = rng.normal(size=(DRAWS, 19)), rng.normal(size=(DRAWS, 1))
    p = np.array([conformal_p_values(c, t)[0] for c, t in zip(cal, new)])
    for a in (0.05, 0.1, 0.25, 0.5):
        assert (p <= a).mean() <= a + 4 * math.sqrt(a * (1 - a) / DRAWS)


def test_quantile_fixed_f1_rules_against_the_metrics():
    rng = np.random.default_rng(2)
    normal = rng.normal(size=300)
    assert Quantile(0.9).fit(normal).threshold_ == np.quantile(normal, 0.9)
    assert Fixed(0.5).fit(normal).threshold_ == 0.5
    scores = np.concatenate([rng.normal(size=100), rng.normal(2.0, size=30)])
    labels = np.r_[np.zeros(100), np.ones(30)]
    rule = F1().fit(scores, labels)
    assert f1_score(scores, labels, rule.threshold_) == pytest.approx(f1_max(scores, labels))
    with pytest.raises(ValueError, match="needs labels"):
        F1().fit(scores)


def test_rules_threshold_pixel_maps_into_masks():
    rng = np.random.default_rng(3)
    normal_maps = rng.random((6, 16, 16))
    test_maps = rng.random((3, 16, 16))
    test_maps[0, 4:9, 4:9] = 2.0                             # a 25-pixel blob
    for rule in (Conformal(0.01), Quantile(0.999)):
        rule.fit(normal_maps)
        assert rule.threshold_ == (np.sort(normal_maps.ravel())[math.ceil(round(1537 * 0.99, 9)) - 1]
                                   if isinstance(rule, Conformal) else np.quantile(normal_maps, 0.999))
        masks = rule.predict(test_maps)
        assert masks.shape == test_maps.shape and masks.dtype == bool
        assert np.array_equal(masks, test_maps > rule.threshold_)
    area = Area(min_area=10).fit(normal_maps)
    assert area.threshold_ == area_threshold(normal_maps, 10)
    assert np.array_equal(area.predict(test_maps), area_segmentation(test_maps, area.threshold_, 10))
    assert area.predict_images(test_maps)[0] == 1 and area.predict(test_maps)[0, 4:9, 4:9].all()


def test_state_round_trip_and_bad_arguments():
    rng = np.random.default_rng(4)
    cal = rng.normal(size=50)
    for rule in (Conformal(0.1), Quantile(0.95), Fixed(1.0), Area(3)):
        rule.fit(rng.random((4, 8, 8)) if rule.on_maps else cal)
        meta, arrays = rule.state()
        back = ThresholdRule.from_state(meta, arrays)
        assert type(back) is type(rule) and back.params() == rule.params() and back.threshold_ == rule.threshold_
    with pytest.warns(UserWarning):
        inf = Conformal(0.01).fit(cal)
    back = ThresholdRule.from_state(*inf.state())
    assert back.threshold_ == math.inf and np.array_equal(back.calibration_, np.sort(cal))
    assert make_rule("quantile").q == 0.99 and make_rule({"rule": "conformal", "alpha": 0.2}).alpha == 0.2
    with pytest.raises(ValueError, match="unknown threshold rule 'conformel'.*conformal"):
        make_rule("conformel")
    for bad in (0, 1, 1.5, True):
        with pytest.raises(ValueError, match="alpha"):
            Conformal(bad)
    with pytest.raises(ValueError, match="NaN"):
        Conformal(0.1).fit([0.0, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        Quantile().fit([])
    with pytest.raises(ValueError, match="not fitted"):
        Conformal().predict([1.0])
