"""Threshold rules as small objects with one interface: ``fit(normal) -> self``, ``threshold_``, ``predict``.

A rule is fitted on anomaly scores of normal images (never on test labels; ``F1`` is the exception and needs
a labelled validation split) and then decides ``score > threshold_`` (anomalous), like every metric in
``reconad.metrics``. The same rules threshold pixel maps: fitted on the pixels of normal images' maps, their
``predict`` turns maps into masks. ``reconad.metrics.thresholds`` holds the pure functions they call; these
objects add the fitted state (what a detector saves and loads) and the guarantees.

* ``Conformal(alpha)``: split-conformal. With ``n`` held-out normal scores, ``threshold_`` is the
  ``ceil((n + 1)(1 - alpha))``-th smallest of them; for a new image exchangeable with the calibration images
  (a normal image from the same source), ``P(score > threshold_) <= alpha`` holds for any ``n`` and any score
  distribution, and equals ``alpha`` for continuous scores when ``(n + 1) alpha`` is an integer.
  ``p_values`` are the conformal p-values ``(1 + #{calibration >= s}) / (n + 1)``; ``p <= alpha`` is exactly
  ``predict``. On pixels the bound is per pixel of a random image only approximately (pixels of one image are
  not exchangeable with each other); the image-level guarantee is the proven one.
* ``Quantile(q)``: the ``q`` quantile of normal scores (the CLI's ``test.threshold_quantile``); no guarantee.
* ``Area(min_area)``: paper 004's connected-component rule on maps (``reconad.metrics.area_threshold``).
* ``F1()``: the threshold of the best F1 on a labelled validation split (scores and labels).
* ``Fixed(value)``: a given value (e.g. a scorer's own ``fixed_threshold``).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np

from .metrics import area_segmentation, area_threshold, f1_max, quantile_threshold

__all__ = ["RULES", "Area", "Conformal", "F1", "Fixed", "Quantile", "ThresholdRule", "conformal_p_values",
           "make_rule"]


def _scores(values: object, what: str) -> np.ndarray:
    """Any array-like of scores (or maps) -> float64, flattened; empty or NaN is an error naming ``what``."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    a = np.asarray(values)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{what}: expected real-valued scores, got dtype {a.dtype}")
    a = a.astype(np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{what}: no scores given (an empty array)")
    if np.isnan(a).any():
        raise ValueError(f"{what}: {int(np.isnan(a).sum())} score(s) are NaN")
    return a


class ThresholdRule:
    """The interface. ``fit`` takes normal scores (any shape: maps are fitted on their pixels), ``predict``
    returns ``scores > threshold_`` with the input's shape (0/1 int for scores, bool for maps).

    ``on_maps`` rules (``Area``) are fitted on and applied to (N, H, W) maps instead of image scores.
    ``state()`` / ``from_state()`` are what a saved detector keeps: the parameters and the fitted values,
    plain JSON numbers (an infinite threshold as null) plus named arrays.
    """

    name: ClassVar[str] = ""
    on_maps: ClassVar[bool] = False
    threshold_: float

    def fit(self, normal: object, labels: object | None = None) -> ThresholdRule:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(normal_scores) first")

    def predict(self, scores: object) -> np.ndarray:
        self._check_fitted()
        s = np.asarray(scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores, dtype=np.float64)
        out = s > self.threshold_
        return out.astype(np.int64) if out.ndim <= 1 else out

    def params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {}

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able parameters and fitted numbers, named fitted arrays)."""
        self._check_fitted()
        t = float(self.threshold_)
        return {"rule": self.name, "params": self.params(), "threshold": None if math.isinf(t) else t}, {}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ThresholdRule:
        rule = RULES[meta["rule"]](**meta["params"])
        rule.threshold_ = math.inf if meta["threshold"] is None else float(meta["threshold"])  # JSON has no inf
        rule._restore(arrays)
        return rule

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def conformal_p_values(calibration: object, scores: object) -> np.ndarray:
    """Conformal p-values of ``scores`` against normal ``calibration`` scores: ``(1 + #{cal >= s}) / (n + 1)``.
    Under exchangeability a normal image's p-value is super-uniform: ``P(p <= alpha) <= alpha``."""
    cal = np.sort(_scores(calibration, "conformal_p_values: calibration"))
    s = np.asarray(scores, dtype=np.float64)
    at_least = cal.size - np.searchsorted(cal, s, side="left")   # how many calibration scores are >= s
    return (1.0 + at_least) / (cal.size + 1.0)


def conformal_rank(n: int, alpha: float) -> int:
    """``ceil((n + 1)(1 - alpha))``, guarded against float error (0.95 * 20 must be 19, not 19.000000000000004)."""
    return math.ceil(round((n + 1) * (1.0 - alpha), 9))


class Conformal(ThresholdRule):
    """Split-conformal threshold: a false-alarm rate of at most ``alpha`` on new normal images (module doc).

    With too few calibration scores (``n < 1/alpha - 1``) no finite threshold has the guarantee: ``threshold_``
    is +inf (nothing is flagged) and a warning names ``n`` and the smallest ``n`` that works.
    """

    name = "conformal"

    def __init__(self, alpha: float = 0.05) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) < 1.0:
            raise ValueError(f"Conformal: alpha (the false-alarm rate) must be in (0, 1), got {alpha!r}")
        self.alpha = float(alpha)

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    @staticmethod
    def min_calibration(alpha: float) -> int:
        """The smallest number of calibration scores that gives a finite threshold at ``alpha``."""
        return max(1, math.ceil(round(1.0 / alpha - 1.0, 9)))

    def fit(self, normal: object, labels: object | None = None) -> Conformal:
        cal = np.sort(_scores(normal, "Conformal.fit: normal scores"))
        n = cal.size
        k = conformal_rank(n, self.alpha)
        if k > n:
            warnings.warn(f"Conformal(alpha={self.alpha}): {n} calibration score(s) are too few for a false-alarm "
                          f"rate of {self.alpha}: it needs at least {self.min_calibration(self.alpha)}; the threshold "
                          f"is +inf (nothing is flagged). Hold out more normal images (data.holdout_fraction) or "
                          f"raise alpha", UserWarning, stacklevel=2)
            self.threshold_ = math.inf
        else:
            self.threshold_ = float(cal[k - 1])
        self.calibration_ = cal
        return self

    def p_values(self, scores: object) -> np.ndarray:
        self._check_fitted()
        return conformal_p_values(self.calibration_, scores)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return super().state()[0], {"calibration": self.calibration_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.calibration_ = np.asarray(arrays["calibration"], dtype=np.float64)


class Quantile(ThresholdRule):
    """The ``q`` quantile of normal scores (numpy's linear interpolation), as ``test.threshold_quantile``."""

    name = "quantile"

    def __init__(self, q: float = 0.99) -> None:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < float(q) <= 1.0:
            raise ValueError(f"Quantile: q must be in (0, 1], got {q!r}")
        self.q = float(q)

    def params(self) -> dict[str, Any]:
        return {"q": self.q}

    def fit(self, normal: object, labels: object | None = None) -> Quantile:
        self.threshold_ = quantile_threshold(_scores(normal, "Quantile.fit: normal scores"), self.q)
        return self


class Fixed(ThresholdRule):
    """A given threshold; ``fit`` only records it (a scorer's ``fixed_threshold``, or a user's value)."""

    name = "fixed"

    def __init__(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"Fixed: value must be a number, got {value!r}")
        self.value = float(value)

    def params(self) -> dict[str, Any]:
        return {"value": self.value}

    def fit(self, normal: object = None, labels: object | None = None) -> Fixed:
        self.threshold_ = self.value
        return self


class F1(ThresholdRule):
    """The threshold with the best F1 on a labelled validation split (``fit(scores, labels)``, labels 0/1).

    Unlike the others it needs anomalous examples; use it only on a split that is not the test set.
    """

    name = "f1"

    def fit(self, normal: object, labels: object | None = None) -> F1:
        if labels is None:
            raise ValueError("F1.fit needs labels (0 normal, 1 anomalous) of a labelled validation split; "
                             "without one use Conformal or Quantile")
        s = _scores(normal, "F1.fit: scores")
        y = np.asarray(labels).reshape(-1)
        if y.shape != s.shape:
            raise ValueError(f"F1.fit: {s.size} scores but {y.size} labels")
        _, t = f1_max(s, y, return_threshold=True)   # decides score >= t
        self.threshold_ = float(np.nextafter(t, -np.inf))   # the same decision as score > threshold_
        return self


class Area(ThresholdRule):
    """Paper 004's rule on (N, H, W) maps: the lowest threshold at which no normal map has a connected
    component (8-connectivity) of more than ``min_area`` pixels above it. ``predict(maps)`` gives the
    segmentation (bool (N, H, W): pixels in such components); an image is anomalous when its mask has a pixel
    (``predict_images``)."""

    name = "area"
    on_maps = True

    def __init__(self, min_area: int = 10) -> None:
        if isinstance(min_area, bool) or not isinstance(min_area, int) or min_area < 0:
            raise ValueError(f"Area: min_area must be an int >= 0 (pixels), got {min_area!r}")
        self.min_area = min_area

    def params(self) -> dict[str, Any]:
        return {"min_area": self.min_area}

    def fit(self, normal: object, labels: object | None = None) -> Area:
        self.threshold_ = area_threshold(normal, self.min_area)
        return self

    def predict(self, scores: object) -> np.ndarray:
        self._check_fitted()
        return area_segmentation(scores, self.threshold_, self.min_area)

    def predict_images(self, maps: object) -> np.ndarray:
        """0/1 per map: does it hold a component of more than ``min_area`` pixels above ``threshold_``."""
        masks = self.predict(maps)
        return masks.reshape(masks.shape[0], -1).any(1).astype(np.int64)


RULES: dict[str, type[ThresholdRule]] = {r.name: r for r in (Conformal, Quantile, Fixed, F1, Area)}


def make_rule(spec: ThresholdRule | str | dict[str, Any]) -> ThresholdRule:
    """A rule from an instance, a name (``"conformal"``, default parameters) or ``{"rule": name, **params}``."""
    if isinstance(spec, ThresholdRule):
        return spec
    if isinstance(spec, str):
        spec = {"rule": spec}
    if not isinstance(spec, dict) or spec.get("rule") not in RULES:
        got = spec.get("rule") if isinstance(spec, dict) else spec
        raise ValueError(f"unknown threshold rule {got!r}: expected one of {', '.join(RULES)} (a name, a "
                         f"{{'rule': name, ...params}} mapping or a reconad.thresholds rule object)")
    params = {k: v for k, v in spec.items() if k != "rule"}
    return RULES[spec["rule"]](**params)
