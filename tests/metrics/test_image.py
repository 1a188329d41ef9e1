"""Image-level metrics against scikit-learn and brute-force loops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reconad.metrics as M

sk = pytest.importorskip("sklearn.metrics")


def _data(rng: np.random.Generator, n: int = 300, ties: bool = True):
    y = rng.random(n) < 0.35
    s = rng.normal(size=n) + 0.8 * y
    if ties:
        s = np.round(s * 3) / 3
    return s, y


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_and_roc_match_sklearn(rng, ties):
    s, y = _data(rng, ties=ties)
    assert M.auroc(s, y) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = M.roc_curve(s, y)
    fpr_s, tpr_s, thr_s = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_s)
    np.testing.assert_allclose(tpr, tpr_s)
    np.testing.assert_array_equal(thr[1:], thr_s[1:])
    # torch tensors, float32 scores, 0/1 integer labels
    assert M.auroc(torch.from_numpy(s).float(), torch.from_numpy(y.astype(np.int64))) == pytest.approx(
        sk.roc_auc_score(y, s.astype(np.float32)), abs=1e-12)


def test_auroc_one_class_is_an_error():
    with pytest.raises(ValueError, match="both classes"):
        M.auroc([0.1, 0.5, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="both classes"):
        M.auroc([0.1, 0.5], [1, 1])
    with pytest.raises(ValueError, match="0/1"):
        M.auroc([0.1, 0.5], [0, 2])
    with pytest.raises(ValueError, match="entries"):
        M.auroc([0.1, 0.5, 0.7], [0, 1])


def test_eer_is_where_fpr_equals_fnr(rng):
    s, y = _data(rng, 400, ties=False)
    e = M.eer(s, y)
    fpr, tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
    fnr = 1 - tpr
    # brute force: the crossing segment of (fpr, fnr), interpolated
    d = fpr - fnr
    k = int(np.flatnonzero(d >= 0)[0])
    t = 0.0 if d[k] == 0 else -d[k - 1] / (d[k] - d[k - 1])
    expected = fpr[k] if d[k] == 0 else fpr[k - 1] + t * (fpr[k] - fpr[k - 1])
    assert e == pytest.approx(expected, abs=1e-12)
    assert min(fpr[k - 1], fnr[k]) - 1e-12 <= e <= max(fpr[k], fnr[k - 1]) + 1e-12
    assert M.eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0


def test_f1_tpr_tnr_at_threshold(rng):
    s, y = _data(rng)
    t = float(np.median(s))
    pred = s > t
    assert M.f1_score(s, y, t) == pytest.approx(sk.f1_score(y, pred), abs=1e-12)
    tn, fp, fn, tp = sk.confusion_matrix(y, pred).ravel()
    tpr, tnr = M.tpr_tnr(s, y, t)
    assert (tpr, tnr) == (pytest.approx(tp / (tp + fn)), pytest.approx(tn / (tn + fp)))
    assert M.f1_score([0.1, 0.2], [0, 0], 0.5) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        M.tpr_tnr([0.1, 0.2], [0, 0], 0.5)


@pytest.mark.parametrize("shape", [(300,), (4, 9, 11)])
def test_confusion_and_decision_rates_match_sklearn(rng, shape):
    y = rng.random(shape) < 0.3
    pred = rng.random(shape) < 0.4
    tn, fp, fn, tp = (int(v) for v in sk.confusion_matrix(y.ravel(), pred.ravel(), labels=[0, 1]).ravel())
    assert M.confusion(pred, y) == (tp, fp, fn, tn)
    assert M.confusion(torch.from_numpy(pred), y.astype(np.uint8)) == (tp, fp, fn, tn)
    r = M.decision_rates(pred, y)
    assert r["tpr"] == pytest.approx(sk.recall_score(y.ravel(), pred.ravel()), abs=1e-12)
    assert r["tnr"] == pytest.approx(sk.recall_score(~y.ravel(), ~pred.ravel()), abs=1e-12)
    assert r["mean"] == pytest.approx(sk.balanced_accuracy_score(y.ravel(), pred.ravel()), abs=1e-12)
    assert r["f1"] == pytest.approx(sk.f1_score(y.ravel(), pred.ravel()), abs=1e-12)


def test_decision_rates_say_none_where_undefined():
    assert M.decision_rates([False, False], [0, 0]) == {"tpr": None, "tnr": 1.0, "mean": None, "f1": None}
    assert M.decision_rates([True, False], [1, 1]) == {"tpr": 0.5, "tnr": None, "mean": None, "f1": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="labels has 3 entries but predictions have 2"):
        M.confusion([True, False], [0, 1, 1])
    with pytest.raises(ValueError, match="predicted must be 0/1"):
        M.confusion([0.5, 1.0], [0, 1])


def test_f1_max_is_best_over_thresholds(rng):
    s, y = _data(rng)
    best = max(sk.f1_score(y, s >= t) for t in np.unique(s))
    f1, thr = M.f1_max(s, y, return_threshold=True)
    assert f1 == pytest.approx(best, abs=1e-12)
    assert sk.f1_score(y, s >= thr) == pytest.approx(best, abs=1e-12)
    with pytest.raises(ValueError, match="anomalous"):
        M.f1_max([0.1, 0.2], [0, 0])
