"""reconad.Detector: fitting on every kind of X, scores and maps against the engine, the conformal threshold
on a real model's scores, save / load (bit-identical scores, tampering, versions, plugins), bad input, the
scikit-learn parameter protocol, and every method / config name fitted through the API."""
from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from reconad import Detector
from reconad.api import ArtifactError, NotFittedError, _digest, config_names
from reconad.config import ConfigError
from reconad.data.base import DataError
from reconad.data.textures import load_texture
from reconad.thresholds import Conformal, Quantile

SIZE = 16
TINY = {"train.steps": 3, "train.batch_size": 16, "train.device": "cpu", "train.progress": False,
        "model.encoder.channels": [8, 16], "model.memory.slots": 20, "data.holdout_fraction": 0.3}


def patches(rows: tuple[int, int], n: int, size: int = SIZE, texture: str = "brick") -> np.ndarray:
    """(n, size, size) float32 patches of a scikit-image texture photo, from a band of its rows."""
    photo = load_texture(texture)
    out = [photo[y:y + size, x:x + size] for y in range(rows[0], rows[1] - size + 1, size)
           for x in range(0, photo.shape[1] - size + 1, size)]
    assert len(out) >= n
    return np.stack(out[:n]).astype(np.float32)


@pytest.fixture(scope="module")
def normal() -> np.ndarray:
    return patches((0, 128), 64)


@pytest.fixture(scope="module")
def fitted(normal) -> Detector:
    return Detector("memae", **TINY).fit(normal)


def held_out(n: int, fraction: float = 0.3, seed: int = 0) -> list[int]:
    """The indices Detector.fit holds out (the rule of reconad.data.base.holdout_count, a seeded permutation)."""
    k = min(n - 1, max(1, round(fraction * n)))
    return sorted(np.random.default_rng(seed).permutation(n)[:k].tolist())


def test_fit_holds_out_images_and_fits_the_conformal_threshold_on_them(fitted, normal):
    held = held_out(len(normal))
    assert fitted.decision_scores_.shape == (len(held),)
    np.testing.assert_array_equal(fitted.decision_function(normal[held]), fitted.decision_scores_)
    rule = fitted.threshold_rule_
    assert isinstance(rule, Conformal) and rule.alpha == 0.05
    n = len(held)
    k = math.ceil((n + 1) * 0.95 - 1e-9)          # 19 held-out scores, k = 19: the largest
    assert fitted.threshold_ == np.sort(fitted.decision_scores_)[k - 1]
    assert fitted.pixel_threshold_ == pytest.approx(np.quantile(fitted.anomaly_map(normal[held]).astype(np.float64),
                                                                0.99))
    assert (fitted.image_size_, fitted.channels_) == (SIZE, 1)
    assert fitted.config_.data.image_size == SIZE and fitted.config_.train.steps == 3


def test_scores_maps_and_decisions_are_consistent(fitted):
    x = patches((256, 512), 30)
    rng = torch.get_rng_state()
    s = fitted.decision_function(x)
    assert s.shape == (30,) and s.dtype == np.float64
    assert torch.equal(torch.get_rng_state(), rng)      # scoring draws from its own seeded RNG
    np.testing.assert_array_equal(fitted.decision_function(x), s)
    np.testing.assert_array_equal(fitted.predict(x), (s > fitted.threshold_).astype(np.int64))
    np.testing.assert_array_equal(fitted.score_samples(x), -s)
    p = fitted.p_values(x)
    cal = fitted.decision_scores_
    np.testing.assert_allclose(p, [(1 + (cal >= v).sum()) / (cal.size + 1) for v in s])
    proba = fitted.predict_proba(x)
    assert proba.shape == (30, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(proba[:, 0], p)
    np.testing.assert_array_equal(fitted.predict(x), (p <= 0.05).astype(np.int64))
    maps = fitted.anomaly_map(x)
    assert maps.shape == (30, SIZE, SIZE) and maps.dtype == np.float32
    np.testing.assert_array_equal(fitted.predict_masks(x), maps > fitted.pixel_threshold_)
    # another input resolution: scored at the model's size, the maps upsampled back to the input's
    big = patches((256, 512), 5, size=24)
    assert fitted.anomaly_map(big).shape == (5, 24, 24)
    small = torch.nn.functional.interpolate(torch.from_numpy(big)[:, None], size=(SIZE, SIZE), mode="bilinear",
                                            antialias=True).clamp(0, 1)
    np.testing.assert_allclose(fitted.decision_function(big), fitted.decision_function(small.numpy()[:, 0]),
                               rtol=1e-5)


def test_every_kind_of_x_gives_the_same_scores(fitted, tmp_path):
    x8 = (patches((256, 512), 12) * 255).round().astype(np.uint8)
    ref = fitted.decision_function(x8)
    np.testing.assert_allclose(fitted.decision_function(x8.astype(np.float32) / 255), ref, rtol=1e-6)
    np.testing.assert_allclose(fitted.decision_function(x8[..., None]), ref, rtol=1e-6)
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for i, im in enumerate(x8):
        paths.append(str(folder / f"{i:02d}.png"))
        Image.fromarray(im).save(paths[-1])
    np.testing.assert_allclose(fitted.decision_function(paths), ref, rtol=1e-6)
    np.testing.assert_allclose(fitted.decision_function(str(folder)), ref, rtol=1e-6)
    t = torch.from_numpy(x8).float().div(255)[:, None]
    np.testing.assert_allclose(fitted.decision_function(t), ref, rtol=1e-6)

    class Items(torch.utils.data.Dataset):
        def __init__(self, as_dict): self.as_dict = as_dict
        def __len__(self): return len(t)
        def __getitem__(self, i): return {"image": t[i], "label": 0} if self.as_dict else t[i]

    np.testing.assert_allclose(fitted.decision_function(Items(False)), ref, rtol=1e-6)
    np.testing.assert_allclose(fitted.decision_function(Items(True)), ref, rtol=1e-6)
    # RGB files are converted to the model's grey, as `reconad predict` reads them
    rgb = folder / "rgb.png"
    Image.fromarray(np.repeat(x8[0][..., None], 3, 2)).save(rgb)
    np.testing.assert_allclose(fitted.decision_function([str(rgb)]), ref[:1], rtol=1e-5)


def test_conformal_false_alarm_rate_on_a_real_models_scores(fitted):
    """Normal scores of the tiny model on unseen brick patches, split at random 2000 times into 19 calibration
    and the rest test scores: random splits of one pool are exchangeable, so the false-alarm rate of
    Conformal(0.05) is at most 0.05 (plus 4 standard deviations of the mean over the draws)."""
    pool = fitted.decision_function(patches((256, 512), 300, texture="brick"))
    rng = np.random.default_rng(0)
    draws, n, alpha = 2000, 19, 0.05
    rates = []
    for _ in range(draws):
        perm = rng.permutation(pool.size)
        rule = Conformal(alpha).fit(pool[perm[:n]])
        rates.append(rule.predict(pool[perm[n:]]).mean())
    slack = 4 * math.sqrt((alpha * (1 - alpha) / (n + 2) + alpha * (1 - alpha) / (pool.size - n)) / draws)
    assert np.mean(rates) <= alpha + slack
    assert np.mean(rates) >= alpha - slack           # the pool has no ties: not trivially conservative


def test_save_load_round_trip_is_bit_identical(fitted, tmp_path):
    x = patches((256, 512), 20)
    path = fitted.save(tmp_path / "det.safetensors")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]   # the temp file was renamed
    back = Detector.load(path)
    np.testing.assert_array_equal(back.decision_function(x), fitted.decision_function(x))
    np.testing.assert_array_equal(back.anomaly_map(x), fitted.anomaly_map(x))
    np.testing.assert_array_equal(back.predict_proba(x), fitted.predict_proba(x))
    np.testing.assert_array_equal(back.decision_scores_, fitted.decision_scores_)
    assert (back.threshold_, back.pixel_threshold_) == (fitted.threshold_, fitted.pixel_threshold_)
    assert back.get_params() == fitted.get_params()
    assert (back.image_size_, back.channels_) == (fitted.image_size_, fitted.channels_)
    with open(path, "rb") as fh:   # no pickle: a safetensors header (JSON) and raw tensor bytes
        head = fh.read(8 + int.from_bytes(open(path, "rb").read(8), "little"))
    meta = json.loads(head[8:])["__metadata__"]
    header = json.loads(meta["reconad"])
    assert header["reconad_version"] == "0.1.0" and header["config"]["data"]["image_size"] == SIZE
    assert {c["distribution"] for c in header["components"]} == {"reconad"}


def rewrite(path, out, edit=None, tensor_edit=None, rehash=True):
    """A copy of an artifact with its header and / or tensors changed (the sha256 recomputed when asked)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(meta["reconad"])
    if edit:
        edit(header)
    if tensor_edit:
        tensor_edit(tensors)
    text = json.dumps(header, sort_keys=True)
    save_file(tensors, str(out), metadata={"reconad": text,
                                           "sha256": _digest(text, tensors) if rehash else meta["sha256"]})
    return str(out)


def test_tampered_corrupt_newer_and_plugin_missing_artifacts_are_refused(fitted, tmp_path):
    from reconad.plugins import build_registry, make_plugin_manager

    path = fitted.save(tmp_path / "det.safetensors")

    def scale(tensors):
        key = next(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())
        tensors[key] = tensors[key] * 1.001

    bad = rewrite(path, tmp_path / "weights.safetensors", tensor_edit=scale, rehash=False)
    with pytest.raises(ArtifactError, match=r"weights\.safetensors.*sha256.*modified or corrupted"):
        Detector.load(bad)
    bad = rewrite(path, tmp_path / "thr.safetensors", edit=lambda h: h.update(threshold=None), rehash=False)
    with pytest.raises(ArtifactError, match=r"thr\.safetensors.*sha256"):
        Detector.load(bad)
    data = open(path, "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ArtifactError, match=r"cut\.safetensors: not a readable detector file"):
        Detector.load(tmp_path / "cut.safetensors")
    newer = rewrite(path, tmp_path / "newer.safetensors", edit=lambda h: h.update(reconad_version="9.1.0"))
    with pytest.raises(ArtifactError, match=r"newer\.safetensors was saved by reconad 9\.1\.0.*installed reconad 0\.1\.0"):
        Detector.load(newer)

    def needs_oled(h):
        h["components"].append({"kind": "masker", "name": "oled", "plugin": "reconad-oled:oled",
                                "distribution": "reconad-oled", "version": "0.1.0"})

    plugin = rewrite(path, tmp_path / "plugin.safetensors", edit=needs_oled)
    core_only = build_registry(make_plugin_manager(entry_points=False))
    with pytest.raises(ArtifactError, match=r"plugin\.safetensors needs plugin reconad-oled 0\.1\.0 \(for masker "
                                            r"'oled'\), which is not installed; install it \(pip install reconad-oled"):
        Detector.load(plugin, registry=core_only)
    with pytest.raises(ArtifactError, match="no such file"):
        Detector.load(tmp_path / "missing.safetensors")


def test_a_cli_run_folder_loads(tiny_raw, tmp_path):
    from reconad.config import validate
    from reconad.engine import run
    from reconad.engine.trainer import build_data
    from reconad.plugins import get_registry

    cfg = validate(tiny_raw)
    result = run(cfg, str(tmp_path / "run"), log=lambda s: None)
    det = Detector.load(tmp_path / "run")
    splits = build_data(cfg, get_registry())
    test = torch.stack([splits.test[i]["image"] for i in range(len(splits.test))])
    import csv
    with open(result.files["scores"]) as fh:
        run_scores = [float(r["score"]) for r in csv.DictReader(fh)]
    np.testing.assert_allclose(det.decision_function(test), run_scores, rtol=1e-6)
    hold = torch.stack([splits.holdout[i]["image"] for i in range(len(splits.holdout))])
    np.testing.assert_array_equal(det.decision_scores_, det.decision_function(hold))
    assert isinstance(det.threshold_rule_, Conformal)


@pytest.mark.parametrize("x,match", [
    (np.zeros((4, 16, 16), np.uint16), "expected uint8 images or floats in \\[0, 1\\], got dtype uint16"),
    (np.zeros((16, 16), np.float32), "expected images \\(N, H, W\\) or \\(N, H, W, C\\).*one image\\? pass X\\[None\\]"),
    (np.zeros((4, 3, 16, 16), np.float32), "channels first\\? pass X.transpose\\(0, 2, 3, 1\\)"),
    (np.full((4, 16, 16), np.nan, np.float32), "1024 value\\(s\\) are NaN or inf \\(the first at index \\(0, 0, 0\\)\\)"),
    (np.full((4, 16, 16), 2.0, np.float32), "must be in \\[0, 1\\], got values in \\[2, 2\\]"),
    (np.zeros((0, 16, 16), np.uint8), "X is empty"),
    ([], "X is an empty list"),
    ([np.zeros((8, 8)), np.zeros((9, 9))], "mixed shapes"),
    ({"a": 1}, "got a dict; expected a numpy array"),
    (np.zeros((4, 16, 16, 3), np.uint8), "X has 3 channel\\(s\\) but the detector was fitted on 1-channel"),
])
def test_bad_input_is_one_clear_error(fitted, x, match):
    with pytest.raises(DataError, match=match):
        fitted.decision_function(x)


def test_mixed_sizes_unfitted_and_unknown_names(tmp_path, fitted):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(a)
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(b)
    with pytest.raises(DataError, match=r"mixed sizes: .*a\.png is 16x16 but .*b\.png is 16x20"):
        fitted.decision_function([str(a), str(b)])
    with pytest.raises(NotFittedError, match="decision_function: this detector is not fitted yet; call fit"):
        Detector("memae").decision_function(np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(ConfigError, match="not a config file nor a known method.*did you mean 'oled'"):
        Detector("olde").fit(np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        Detector("memae", **{"train.epochs": "many"}).fit(np.zeros((4, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="unknown parameter 'epochs'.*dotted config key"):
        Detector().set_params(epochs=3)


def test_fit_on_an_mvtec_folder_and_paths(tmp_path):
    x8 = (patches((0, 256), 40) * 255).astype(np.uint8)
    root = tmp_path / "mvtec"
    for sub in ("train/good", "test/good", "test/scratch"):
        (root / sub).mkdir(parents=True)
    for i, im in enumerate(x8[:30]):
        Image.fromarray(im).save(root / "train/good" / f"{i}.png")
    for i, im in enumerate(x8[30:]):
        Image.fromarray(im).save(root / ("test/good" if i % 2 else "test/scratch") / f"{i}.png")
    with pytest.warns(UserWarning, match="needs at least 19"):      # 3 held-out images: no finite threshold
        det = Detector("memae", **{**TINY, "data.holdout_fraction": 0.1, "data.image_size": 16}).fit(root)
    assert det.fit_data_.startswith("folder") and det.config_.data.name == "folder"
    assert det.threshold_ == math.inf and det.decision_scores_.shape == (3,)
    det = Detector("memae", threshold=Quantile(0.9), **TINY).fit(sorted(map(str, (root / "train/good").iterdir())))
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.9))
    assert isinstance(det.get_params()["threshold"], Quantile)


def test_scikit_learn_params_clone_and_estimator_checks(fitted, normal):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.utils import estimator_checks as ec

    params = fitted.get_params()
    assert params["train.steps"] == 3 and params["config"] == "memae"
    copy_ = clone(fitted)
    assert copy_.get_params() == params and not hasattr(copy_, "model_")
    copy_.set_params(**{"train.steps": 2, "threshold": "quantile"})
    assert copy_.get_params()["train.steps"] == 2 and fitted.get_params()["train.steps"] == 3
    # the checks of scikit-learn's estimator suite that do not need 2-D tabular X
    name = "Detector"
    ec.check_no_attributes_set_in_init(name, Detector())
    ec.check_get_params_invariance(name, Detector("memae", **TINY))
    ec.check_set_params(name, Detector("memae", **TINY))
    ec.check_parameters_default_constructible(name, Detector())
    # a grid search over a dotted key: fitted on normal images only, scored on labelled ones
    from sklearn.model_selection import GridSearchCV

    anomalous = patches((0, 128), 12, texture="grass")
    x = np.concatenate([normal, anomalous])
    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    test_idx = np.r_[np.arange(50, 64), np.arange(64, 76)]
    search = GridSearchCV(Detector("memae", **TINY), {"train.lr": [1e-3, 1e-2]}, scoring="roc_auc",
                          cv=[(np.arange(50), test_idx)], refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(x, y)
    assert set(search.cv_results_["param_train.lr"]) == {1e-3, 1e-2}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# one config per method / config name (the "<paper>/<config>" variants are marked slow: ~1 min for all on 2 cores)
TINY_METHOD = {"train.steps": 2, "train.batch_size": 8, "train.device": "cpu", "train.progress": False,
               "data.holdout_fraction": 0.3}
# 16x16 inputs: MMAE's five scales stop at 1 pixel (3 reach its 4x4 maps); a single-step stage 1 for the
# two-stage AE; the self-supervised curriculum at 8 then 16 pixels
SMALL_MMAE = {"model.encoder.scales": 3}
EXTRA = {"mmae": SMALL_MMAE, "mmae/mmae": SMALL_MMAE, "mmae/mmae_paper": SMALL_MMAE, "mmae/digits": SMALL_MMAE,
         "maskedmem": SMALL_MMAE,
         "selfsup": {"model.objective.progressive": [[0, 8], [0.5, 16]]},
         "twostage": {"model.objective.pretrain_steps": 1}}


NAMES = [pytest.param(n, marks=pytest.mark.slow) if "/" in n else n for n in config_names()]


@pytest.mark.parametrize("name", NAMES)
def test_every_method_fits_through_the_api(name, tmp_path):
    x = patches((0, 256), 64)
    extra = EXTRA.get(name, EXTRA.get(name.split("/")[0], {}) if "mmae" not in name else {})
    if name == "mmae/video":   # a clip model: images cannot feed it, and fit says so in one line
        with pytest.raises(DataError, match=r"video-clip model .*`reconad video RUN FRAMES`"):
            Detector(name, **TINY_METHOD).fit(x)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = Detector(name, **TINY_METHOD, **extra).fit(x)
    s = det.decision_function(x[:6])
    assert s.shape == (6,) and np.isfinite(s).all()
    assert det.predict(x[:6]).shape == (6,)
    back = Detector.load(det.save(tmp_path / "d.safetensors"))
    np.testing.assert_array_equal(back.decision_function(x[:6]), s)


def test_calibration_images_area_rule_and_f1_on_a_validation_split(normal):
    from reconad.engine.trainer import build_data
    from reconad.metrics import area_threshold, f1_max, f1_score
    from reconad.plugins import get_registry

    cal = patches((128, 256), 25)
    det = Detector("memae", threshold={"rule": "area", "min_area": 5}, **TINY).fit(normal, calibration=cal)
    assert "calibrated on numpy array (25, 16, 16)" in det.fit_data_
    np.testing.assert_array_equal(det.decision_scores_, det.decision_function(cal))   # all of X trained
    maps = det.anomaly_map(cal)
    assert det.threshold_ == area_threshold(maps, 5)
    x = patches((256, 512), 10)
    np.testing.assert_array_equal(det.predict(x), det.threshold_rule_.predict_images(det.anomaly_map(x)))
    with pytest.raises(DataError, match="calibration=.*needs X as images"):
        Detector("memae", **TINY).fit(None, calibration=cal)
    # F1 on the labelled validation split of the config's own dataset (digits, as OLED's protocol)
    small = {"train.steps": 2, "train.batch_size": 16, "train.device": "cpu", "train.progress": False,
             "train.select_every": 0, "data.image_size": 16, "data.validation_normals": 20,
             "data.validation_anomalies_per_class": 3}
    det = Detector("digits", threshold="f1", **small).fit()
    val = build_data(det.config_, get_registry()).validation
    images = torch.stack([val[i]["image"] for i in range(len(val))])
    labels = np.array([val[i]["label"] for i in range(len(val))])
    s = det.decision_function(images)
    assert f1_score(s, labels, det.threshold_) == pytest.approx(f1_max(s, labels))
    with pytest.raises(DataError, match="threshold='f1' needs a labelled validation split"):
        Detector("memae", threshold="f1", **TINY).fit(normal)


def test_the_cli_config_selects_the_conformal_rule(tiny_raw, tmp_path):
    from reconad.config import validate
    from reconad.engine import RunError, load_trained, run
    from reconad.engine.trainer import build_data
    from reconad.plugins import get_registry

    tiny_raw["test"] = {"threshold": "conformal", "alpha": 0.1}
    tiny_raw["data"]["holdout_fraction"] = 0.3
    cfg = validate(tiny_raw)
    run(cfg, str(tmp_path / "run"), test=False, log=lambda s: None)
    trained = load_trained(str(tmp_path / "run"), "cpu")
    splits = build_data(cfg, get_registry())
    det = Detector.load(tmp_path / "run")                   # refitted with Conformal(test.alpha) on the holdout
    hold = torch.stack([splits.holdout[i]["image"] for i in range(len(splits.holdout))])
    s = np.sort(det.decision_function(hold))
    k = math.ceil((s.size + 1) * 0.9 - 1e-9)
    assert trained.calibration["method"].startswith("split-conformal") and trained.calibration["alpha"] == 0.1
    assert trained.calibration["threshold"] == pytest.approx(s[k - 1]) == pytest.approx(det.threshold_)
    tiny_raw["test"] = {"threshold": "conformal", "alpha": 0.001}
    with pytest.raises(RunError, match=r"test.alpha=0.001 needs at least 999 held-out normal images, the dataset "
                                       r"held out \d+; raise data.holdout_fraction or test.alpha"):
        run(validate(tiny_raw), str(tmp_path / "run2"), test=False, log=lambda s: None)
    tiny_raw["test"] = {"threshold": "conformel"}
    with pytest.raises(ConfigError, match=r"test.threshold: expected one of 'quantile', 'conformal'.*did you mean"):
        validate(tiny_raw)
    tiny_raw["test"] = {"threshold": "conformal", "alpha": 1.5}
    with pytest.raises(ConfigError, match=r"test.alpha: expected a false-alarm rate in \(0, 1\), got 1.5"):
        validate(tiny_raw)


def test_a_per_image_scale_scores_one_image_as_in_a_batch_and_a_set_scale_warns():
    """OLED's default scale is fitted on the held-out normals when training ends: an image scores the same
    alone as among others, and the threshold is on that scale; ``scale: set`` couples the images of X."""
    x = patches((0, 256), 64)
    det = Detector("oled", **TINY_METHOD).fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = det.decision_function(x[:6])
        alone = np.concatenate([det.decision_function(x[i:i + 1]) for i in range(6)])
    np.testing.assert_allclose(alone, batch, rtol=1e-5, atol=1e-7)
    # the held-out normals span [0, 1] on every part, so their mean s_avg does not pass 1
    assert det.decision_scores_.min() >= -1e-6 and det.decision_scores_.max() <= 1 + 1e-6
    coupled = Detector("oled", **TINY_METHOD, **{"model.scorers.0.scale": "set"}).fit(x)
    with pytest.warns(UserWarning, match=r"scorer\(s\) oled scale scores over the scored set"):
        coupled.decision_function(x[:6])
