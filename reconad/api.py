"""``reconad.Detector``: reconad as a library, with the PyOD / scikit-learn conventions.

::

    from reconad import Detector
    det = Detector("memae", **{"train.epochs": 5}).fit(normal_images)   # arrays, paths, a folder, a Dataset
    det.decision_function(X)     # (N,) anomaly scores, higher = more anomalous
    det.anomaly_map(X)           # (N, H, W) at X's resolution
    det.predict(X)               # 0 normal / 1 anomalous: score > threshold_ (conformal: false-alarm rate <= alpha)
    det.predict_proba(X)         # (N, 2): [conformal p-value, 1 - p-value]
    det.save("det.safetensors"); Detector.load("det.safetensors")

Training is the CLI's (``reconad.engine.trainer.train``: the same loop, progress bar, seeding and checkpoint).
A seeded ``data.holdout_fraction`` of X's images is held out and never trained on: the threshold rules are
fitted on their scores (``decision_scores_``) and maps. docs/python-api.md is the guide.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from ._inputs import Images, as_images, is_mvtec_folder, split_normals
from .config import Config, ConfigError, apply_overrides, layer, load_raw, to_dict, validate, validate_resolved
from .data.base import DEFAULT_IMAGE_SIZE, DataError, DatasetSplits
from .engine.checkpoint import CheckpointError
from .engine.evaluate import ScoreSet, fixed_thresholds, score_dataset
from .engine.runtime import apply_threads, local_device, setup_runtime
from .engine.trainer import build_data, prepare_data, train
from .io import atomic_path
from .registry import Registry
from .thresholds import Conformal, F1, Fixed, Quantile, ThresholdRule, conformal_p_values, make_rule

__all__ = ["ArtifactError", "Detector", "NotFittedError", "config_names"]

FORMAT = "reconad-detector/1"
# the configs/<paper>/ file a bare paper name stands for, where it is not configs/<paper>/<paper>.yaml
REPRESENTATIVE = {"oddobjects": "memcae", "selfsup": "objective3"}


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted detector was called before ``fit`` (as scikit-learn's NotFittedError)."""


class ArtifactError(CheckpointError):
    """A saved detector that cannot be loaded: unreadable, tampered with, from a newer reconad, or needing a
    plugin that is not installed. The message names the file."""


# ------------------------------------------------------------------------------------------- configs

def _config_roots() -> list[Path]:
    """Where named configs live: ``$RECONAD_CONFIGS`` (os.pathsep-separated), then a checkout's ``configs/``."""
    roots = [Path(p) for p in os.environ.get("RECONAD_CONFIGS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent.parent
    return roots + [here / "configs", here / "examples"]


def config_names() -> dict[str, str | None]:
    """Every name ``Detector(name)`` accepts -> its config file (None: reconad's default config).

    ``memae`` is the default config; ``<stem>`` is ``configs/<stem>.yaml``; ``<paper>/<stem>`` is
    ``configs/<paper>/<stem>.yaml``; a bare ``<paper>`` is its representative config
    (``configs/<paper>/<paper>.yaml``, or ``REPRESENTATIVE``); an example package's ``config.yaml``
    (``examples/reconad-<name>/``) is ``<name>``.
    """
    names: dict[str, str | None] = {"memae": None}
    for root in _config_roots():
        if not root.is_dir():
            continue
        if root.name == "examples":
            for f in sorted(root.glob("*/config.yaml")):
                names.setdefault(f.parent.name.removeprefix("reconad-"), str(f))
            continue
        for f in sorted(root.glob("*.yaml")):
            names.setdefault(f.stem, str(f))
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(d.glob("*.yaml"))
            for f in files:
                names.setdefault(f"{d.name}/{f.stem}", str(f))
            pick = d / f"{REPRESENTATIVE.get(d.name, d.name)}.yaml"
            if files:
                names.setdefault(d.name, str(pick if pick.is_file() else files[0]))
    return names


def _json_value(key: str, value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)   # JSON is YAML: apply_overrides parses it back exactly
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: override values must be numbers, strings, booleans, None, lists or dicts, "
                          f"got {value!r}") from None


def _raw_config(config: str | os.PathLike | dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The raw config mapping (layered over the default, overrides applied, named), not validated yet."""
    default = load_raw(None)
    if isinstance(config, dict):
        raw, name = layer(default, copy.deepcopy(config)), "detector"
    elif isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        names = config_names()
        if os.path.isfile(path):
            raw, name = layer(default, load_raw(path)), Path(path).stem
        elif path in names:
            raw = default if names[path] is None else layer(default, load_raw(names[path]))
            name = path.replace("/", "-")
        else:
            close = difflib.get_close_matches(path, names, n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise ConfigError(f"Detector({path!r}): not a config file nor a known method / config name; {hint}"
                              f"known names: {', '.join(sorted(names))} (see reconad.api.config_names())")
    else:
        raise ConfigError(f"Detector: config must be a config file path, a dict or a method name such as "
                          f"'memae', got {type(config).__name__}")
    raw.setdefault("name", name)
    return apply_overrides(raw, [f"{k}={_json_value(k, v)}" for k, v in overrides.items()])


# ------------------------------------------------------------------------------------------- artifacts

def _components(cfg: Config, registry: Registry) -> list[dict[str, Any]]:
    """The model's components with the distribution providing each and its version (for the artifact)."""
    m = cfg.model
    parts = [("encoder", m.encoder), ("decoder", m.decoder), ("memory", m.memory), ("masker", m.masker),
             ("objective", m.objective)] + [("scorer", s) for s in m.scorers]
    dists = importlib.metadata.packages_distributions()
    out = []
    for kind, cc in parts:
        if cc is None:
            continue
        spec = registry.get(kind, cc.name)
        top = getattr(spec.factory, "__module__", "").split(".")[0]
        dist = (dists.get(top) or [top])[0]
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = None
        out.append({"kind": kind, "name": cc.name, "plugin": spec.plugin, "distribution": dist, "version": version})
    return out


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
        if not part.isdigit():
            break
    return tuple(out)


def _digest(header: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the JSON header and every tensor (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256(header.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _read_artifact(path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: not a readable detector file (safetensors): {exc}") from None
    if "reconad" not in meta or "sha256" not in meta:
        raise ArtifactError(f"{path}: a safetensors file without reconad's metadata; not a reconad.Detector "
                            f"artifact (save one with Detector.save)")
    if _digest(meta["reconad"], tensors) != meta["sha256"]:
        raise ArtifactError(f"{path}: its contents do not match the sha256 saved with them: the file was modified "
                            f"or corrupted after it was saved; use an intact copy or fit and save it again")
    header = json.loads(meta["reconad"])
    if header.get("format") != FORMAT:
        raise ArtifactError(f"{path}: unknown artifact format {header.get('format')!r}, expected {FORMAT!r}")
    saved = header.get("reconad_version", "?")
    if _version_tuple(saved) > _version_tuple(__version__):
        raise ArtifactError(f"{path} was saved by reconad {saved}, newer than the installed reconad {__version__}; "
                            f"upgrade reconad (pip install -U reconad) to load it")
    return header, tensors


def _check_plugins(path: str, header: dict[str, Any], registry: Registry) -> None:
    missing: dict[str, list[str]] = {}
    for c in header["components"]:
        if (c["kind"], c["name"]) not in registry:
            key = f"{c['distribution']}{' ' + c['version'] if c['version'] else ''}"
            missing.setdefault(key, []).append(f"{c['kind']} {c['name']!r}")
    if missing:
        need = "; ".join(f"plugin {d} (for {', '.join(parts)})" for d, parts in missing.items())
        dists = " ".join(d.split()[0] for d in missing)
        raise ArtifactError(f"{path} needs {need}, which is not installed; install it (pip install {dists}) "
                            f"and load again")


def _param_json(rule: Any) -> Any:
    """A parameter as JSON: rule objects as ``{"rule": name, ...}``, paths as strings, the rest as it is."""
    if isinstance(rule, os.PathLike):
        return os.fspath(rule)
    return {"rule": rule.name, **rule.params()} if isinstance(rule, ThresholdRule) else rule


# ------------------------------------------------------------------------------------------- the detector

class Detector:
    """An anomaly detector trained on normal images (see the module doc and docs/python-api.md).

    Args:
        config: a config file path, a config dict (layered over the default config, as a file is), or a method
            / config name (``config_names()``: ``"memae"`` is the default config, ``"oled"``, ``"mmae"``,
            ``"twostage"``, ``"selfsup"``, ``"oddobjects"``, ``"digits"`` and ``"<paper>/<config>"``).
        threshold: the image-level rule (``reconad.thresholds``): a rule object, a name (``"conformal"``,
            ``"quantile"``, ``"area"``, ``"f1"``) or ``{"rule": name, ...params}``. Default: the scorer's own
            fixed threshold where it has one, else ``Conformal(alpha=test.alpha)`` (0.05 unless overridden).
        pixel_threshold: the rule for pixel maps (``predict_masks``). Default: ``Quantile(test.threshold_quantile)``
            of the held-out maps' pixels, as the CLI.
        out_dir: where training writes ``checkpoint.pt`` (a temporary folder, removed after ``fit``, when None).
        **overrides: dotted config keys as ``--set`` takes them: ``**{"train.epochs": 3, "train.device": "cpu"}``.
            They are parameters too: ``get_params()`` lists them by their dotted key, so ``set_params`` and a
            scikit-learn grid search use the same keys (``{"train.lr": [1e-3, 1e-4]}``).

    Input size and channels come from X (an array's (H, W) when square, else ``data.image_size``), unless
    ``data.image_size`` / ``data.channels`` are overridden; a folder in the MVTec layout is read by the
    ``folder`` dataset at ``data.image_size``. With X given, ``train.select_every`` is 0 unless overridden (X
    has no labelled validation split); ``fit()`` without X trains on the config's own dataset, as the CLI.
    Scorers that normalise over the scored set (ODDObjects' ``odd_score``) give scores relative to the X
    scored with them, and fix their own threshold.
    """

    def __init__(self, config: str | os.PathLike | dict[str, Any] = "memae", *,
                 threshold: ThresholdRule | str | dict[str, Any] | None = None,
                 pixel_threshold: ThresholdRule | str | dict[str, Any] | None = None,
                 out_dir: str | None = None, **overrides: Any) -> None:
        self.config = config
        self.threshold = threshold
        self.pixel_threshold = pixel_threshold
        self.out_dir = out_dir
        self._overrides = dict(overrides)

    # --- scikit-learn's parameter protocol: the named arguments and every override by its dotted key

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"config": self.config, "threshold": self.threshold, "pixel_threshold": self.pixel_threshold,
                "out_dir": self.out_dir, **self._overrides}

    def set_params(self, **params: Any) -> Detector:
        for key, value in params.items():
            if key in ("config", "threshold", "pixel_threshold", "out_dir"):
                setattr(self, key, value)
            elif "." in key:
                self._overrides[key] = value
            else:
                raise ValueError(f"Detector.set_params: unknown parameter {key!r}; expected config, threshold, "
                                 f"pixel_threshold, out_dir or a dotted config key such as 'train.epochs'")
        return self

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's estimator tags (scikit-learn >= 1.6 asks for them; it is not a dependency of reconad,
        so they are built only when it asks): an outlier detector on image arrays, fitted without y."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=False),
                    input_tags=InputTags(two_d_array=False, three_d_array=True), no_validation=True)

    def __repr__(self) -> str:
        args = [repr(self.config)] + [f"{k}={v!r}" for k, v in self.get_params().items()
                                      if k != "config" and v is not None and "." not in k]
        args += [f"**{{{', '.join(f'{k!r}: {v!r}' for k, v in self._overrides.items())}}}"] if self._overrides else []
        return f"Detector({', '.join(args)})"

    # --- fitting

    def _resolve(self, x: object, calibration: object = None) -> tuple[Config, DatasetSplits | None, str]:
        """The validated config and the data for ``fit(x)``: (config, splits or None = the config's dataset,
        a description of the data)."""
        raw = _raw_config(self.config, self._overrides)
        given = set(self._overrides)
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        if x is not None and "train.select_every" not in given:
            raw.setdefault("train", {})
            raw["train"] = {**(raw["train"] or {}), "select_every": 0}
        if (x is None or is_mvtec_folder(x)) and calibration is not None:
            raise DataError("fit(calibration=...) needs X as images (an array, paths, a Dataset ...); a dataset "
                            "(X=None) or an MVTec folder holds out its own calibration images")
        if x is None:
            return validate(raw), None, f"the config's dataset {data.get('name')!r}"
        if data.get("name") == "video" and data.get("unit") == "clips":
            # a clip model's input is a stack of frames (its channels), not an image: X cannot feed it
            raise DataError(f"config {self.config!r} is a video-clip model (data.name: video, data.unit: clips): "
                            "its input is a clip of frames, not an image; train it with `reconad run CONFIG --set "
                            "data.root=FRAMES` and score videos with `reconad video RUN FRAMES`, or fit(X=None) on "
                            "its own video dataset")
        if is_mvtec_folder(x):
            core = ("image_size", "channels", "holdout_fraction", "skip_bad", "seed")
            raw["data"] = {"name": "folder", "root": os.fspath(x), **{k: data[k] for k in core if k in data}}
            return validate(raw), None, f"folder {os.fspath(x)} (MVTec layout)"
        images = as_images(x)
        cal = None if calibration is None else as_images(calibration)
        if "data.image_size" not in given:
            if images.height == images.width:
                data["image_size"] = images.height
        if "data.channels" not in given:
            data["channels"] = images.channels
        raw["data"] = data
        cfg = validate(raw)
        channels = cfg.data.channels or images.channels
        cfg.data.image_size = cfg.data.image_size or DEFAULT_IMAGE_SIZE     # X's images are not square
        splits = split_normals(images, channels, cfg.data.image_size, cfg.data.holdout_fraction, cfg.data.seed,
                               calibration=cal)
        return cfg, splits, images.what + ("" if cal is None else f", calibrated on {cal.what}")

    def fit(self, X: object = None, y: object = None, *, calibration: object = None) -> Detector:
        """Train on X (normal images only; ``y`` is ignored, as in PyOD) and fit the thresholds on the
        held-out share, or on ``calibration`` (normal images; all of X then trains).

        The conformal guarantee holds for new images that are exchangeable with the held-out ones: when
        images of X are related (overlapping patches of one photo, neighbouring video frames), a random share
        of them is not like new images; pass separate ``calibration`` images then. ``X=None`` trains on the
        config's own dataset (its holdout; its labelled validation split for ``threshold="f1"``)."""
        from .plugins import get_registry

        registry = get_registry()
        cfg, splits, what = self._resolve(X, calibration)
        if splits is None:
            splits = prepare_data(cfg, registry)
        apply_threads(cfg.train.threads)
        runtime = setup_runtime(cfg.train.device)
        out = self.out_dir or tempfile.mkdtemp(prefix="reconad-detector-")
        try:
            result = train(cfg, out, runtime, registry, splits=splits)
        finally:
            runtime.close()
            if self.out_dir is None:
                shutil.rmtree(out, ignore_errors=True)
        self.model_ = result.model.eval()
        self.config_ = cfg
        self.device_ = runtime.device
        self.channels_, self.image_size_ = splits.channels, splits.image_size
        self.fit_data_ = what
        self._fit_thresholds(splits)
        return self

    def _fit_thresholds(self, splits: DatasetSplits) -> None:
        cfg, model = self.config_, self.model_
        holdout = self._score_set(splits.holdout, "held-out normal images")
        fixed = fixed_thresholds(model).get(holdout.names[0])
        spec = self.threshold if self.threshold is not None else (
            Fixed(fixed) if fixed is not None else Conformal(cfg.test.alpha))
        rule = copy.deepcopy(make_rule(spec))
        if isinstance(rule, F1):
            if splits.validation is None:
                raise DataError("threshold='f1' needs a labelled validation split (normal and anomalous images): "
                                "fit() without X on a config whose dataset has one (digits with "
                                "data.validation_normals), or use threshold='conformal'")
            val = self._score_set(splits.validation, "validation images", keep_maps=False)
            rule.fit(val.primary, val.labels)
        elif rule.on_maps:
            rule.fit(self._need_maps(holdout, f"threshold={rule!r}"))
        else:
            rule.fit(holdout.primary)
        self.threshold_rule_ = rule
        self.threshold_ = rule.threshold_
        self.decision_scores_ = holdout.primary
        self.pixel_threshold_rule_ = None
        self.pixel_threshold_ = None
        if holdout.pixel is not None:
            prule = copy.deepcopy(make_rule(self.pixel_threshold if self.pixel_threshold is not None
                                            else Quantile(cfg.test.threshold_quantile)))
            prule.fit(holdout.pixel)
            self.pixel_threshold_rule_, self.pixel_threshold_ = prule, prule.threshold_

    # --- scoring

    def _check_fitted(self, what: str) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"Detector.{what}: this detector is not fitted yet; call fit(X) (or "
                                 "Detector.load(path)) first")

    def _need_maps(self, scores: ScoreSet, what: str) -> np.ndarray:
        if scores.pixel is None:
            raise DataError(f"{what}: the model's scorers ({', '.join(self.model_.scorer_names)}) give no pixel "
                            "maps; use a scorer with maps (e.g. l2)")
        return scores.pixel

    def _score_set(self, ds: Any, where: str, keep_maps: bool = True) -> ScoreSet:
        """``score_dataset`` under a forked RNG seeded with the config's seed: a model that draws at test time
        (a random masker with ``at_eval``) gives the same scores for the same X on every call and after
        ``load``, and the caller's RNG is left alone."""
        coupled = [n for n, sc in zip(self.model_.scorer_names, self.model_.scorers) if sc.set_level]
        if coupled:
            warnings.warn(f"scorer(s) {', '.join(coupled)} scale scores over the scored set ({where}): an image's "
                          "score depends on the other images given with it (e.g. OLED's scale: set, "
                          "ODDObjects' threshold: gamma); use a per-image scale to score images on their own",
                          stacklevel=3)
        with torch.random.fork_rng(devices=[self.device_] if self.device_.type == "cuda" else []):
            torch.manual_seed(self.config_.seed)
            return score_dataset(self.model_, ds, self.device_, self.config_.test.batch_size, keep_maps=keep_maps,
                                 keep_masks=False, where=where)

    def _score(self, X: object, what: str, keep_maps: bool) -> tuple[ScoreSet, Images]:
        self._check_fitted(what)
        images = as_images(X)
        ds = images.dataset(self.channels_, self.image_size_)
        return self._score_set(ds, f"X ({images.what})", keep_maps), images

    def decision_function(self, X: object) -> np.ndarray:
        """(N,) float64 anomaly scores (the primary scorer's; higher = more anomalous)."""
        return self._score(X, "decision_function", keep_maps=False)[0].primary

    def score_samples(self, X: object) -> np.ndarray:
        """scikit-learn's convention (higher = more normal): ``-decision_function(X)``."""
        return -self.decision_function(X)

    def anomaly_map(self, X: object) -> np.ndarray:
        """(N, H, W) float32 pixel anomaly maps at X's resolution (bilinear from the model's maps)."""
        scores, images = self._score(X, "anomaly_map", keep_maps=True)
        return self._upsample(self._need_maps(scores, "Detector.anomaly_map"), images)

    @staticmethod
    def _upsample(maps: np.ndarray, images: Images) -> np.ndarray:
        if maps.shape[1:] == (images.height, images.width):
            return maps
        t = F.interpolate(torch.from_numpy(maps).unsqueeze(1), size=(images.height, images.width),
                          mode="bilinear", align_corners=False)
        return t[:, 0].numpy()

    def predict(self, X: object) -> np.ndarray:
        """(N,) int64: 1 anomalous, 0 normal, by the fitted image-level rule (``score > threshold_``)."""
        rule = self.threshold_rule_ if hasattr(self, "threshold_rule_") else None
        if rule is not None and rule.on_maps:
            scores, _ = self._score(X, "predict", keep_maps=True)
            return rule.predict_images(self._need_maps(scores, "Detector.predict"))
        scores, _ = self._score(X, "predict", keep_maps=False)
        return self.threshold_rule_.predict(scores.primary)

    def p_values(self, X: object) -> np.ndarray:
        """(N,) conformal p-values against the held-out normal scores, ``(1 + #{cal >= s}) / (n + 1)``: small
        means anomalous; a normal image's p-value is at most alpha with probability at most alpha."""
        scores = self.decision_function(X)
        if self.decision_scores_.size == 0:
            raise NotFittedError("Detector.p_values: no held-out scores to compare with (a run loaded without its "
                                 "dataset); fit the detector, or load the run where its dataset can be built")
        return conformal_p_values(self.decision_scores_, scores)

    def predict_proba(self, X: object) -> np.ndarray:
        """(N, 2) float64, PyOD's column order (normal, anomalous): ``[p, 1 - p]`` with ``p`` the conformal
        p-value (``p_values``). Not a calibrated probability of being anomalous: ``1 - p >= 1 - alpha`` is
        exactly ``Conformal(alpha)``'s decision, whatever rule ``threshold`` names."""
        p = self.p_values(X)
        return np.stack([p, 1.0 - p], axis=1)

    def predict_masks(self, X: object) -> np.ndarray:
        """(N, H, W) bool anomalous pixels at X's resolution, by the pixel rule (``pixel_threshold_``)."""
        self._check_fitted("predict_masks")
        if self.pixel_threshold_rule_ is None:
            raise DataError(f"Detector.predict_masks: the model's scorers ({', '.join(self.model_.scorer_names)}) "
                            "give no pixel maps")
        return self.pixel_threshold_rule_.predict(self.anomaly_map(X))

    def export(self, path: str | os.PathLike, **options: Any) -> Any:
        """Export to ONNX with its parity checked: ``reconad.deploy.export_onnx(self, path, **options)``
        (``opset``, ``dynamic_batch``, ``sample``, ``tolerance``); returns its ``ExportReport``."""
        from .deploy import export_onnx

        return export_onnx(self, path, **options)

    # --- saving and loading

    def save(self, path: str | os.PathLike) -> str:
        """Write the fitted detector to one safetensors file (weights as tensors; config, threshold rules,
        calibration scores, input size and channels, reconad and plugin versions, and a sha256 over it all,
        in its JSON metadata; nothing pickled). Written to a temporary file, then renamed."""
        from safetensors.torch import save_file

        from .plugins import get_registry

        self._check_fitted("save")
        path = os.fspath(path)
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.model_.state_dict().items()}
        tensors["decision_scores"] = torch.from_numpy(np.ascontiguousarray(self.decision_scores_, np.float64))
        rules: dict[str, Any] = {}
        for key, rule in (("threshold", self.threshold_rule_), ("pixel_threshold", self.pixel_threshold_rule_)):
            if rule is None:
                rules[key] = None
                continue
            meta, arrays = rule.state()
            rules[key] = meta
            tensors.update({f"{key}.{k}": torch.from_numpy(np.ascontiguousarray(a)) for k, a in arrays.items()})
        params = {k: _param_json(v) for k, v in self.get_params().items()}
        header = {
            "format": FORMAT, "reconad_version": __version__, "python": sys.version.split()[0],
            "torch": torch.__version__, "components": _components(self.config_, get_registry()),
            "config": to_dict(self.config_), "channels": self.channels_, "image_size": self.image_size_,
            "fit_data": self.fit_data_, "params": params, **rules,
        }
        try:
            text = json.dumps(header, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Detector.save: a parameter cannot be stored as JSON ({exc}); parameters must be "
                             f"numbers, strings, lists, dicts or reconad.thresholds rules") from None
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata={"reconad": text, "sha256": _digest(text, tensors)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", registry: Registry | None = None) -> Detector:
        """A detector saved with ``save``, or a run folder / ``checkpoint.pt`` written by ``reconad run``."""
        from .model import build_model
        from .plugins import get_registry

        path = os.fspath(path)
        registry = registry or get_registry()
        if os.path.isdir(path) or path.endswith(".pt"):
            return cls._from_run(path, device, registry)
        if not os.path.isfile(path):
            raise ArtifactError(f"{path}: no such file (expected a file written by Detector.save, a run folder or "
                                f"a checkpoint.pt)")
        header, tensors = _read_artifact(path)
        _check_plugins(path, header, registry)
        try:
            cfg = validate_resolved(header["config"], registry)
        except ConfigError as exc:
            raise ArtifactError(f"{path}: its config does not validate with the installed plugins: {exc}") from None
        dev = local_device(device)
        model, _ = build_model(cfg.model, registry, header["channels"], header["image_size"])
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ArtifactError(f"{path}: its weights do not fit the model its config builds with the installed "
                                f"plugins: {str(exc).splitlines()[0]}") from None
        params = dict(header["params"])
        for key in ("threshold", "pixel_threshold"):
            if isinstance(params.get(key), dict):
                params[key] = make_rule(params[key])
        det = cls(**params)
        det.model_, det.config_, det.device_ = model.to(dev).eval(), cfg, dev
        det.channels_, det.image_size_, det.fit_data_ = header["channels"], header["image_size"], header["fit_data"]
        det.decision_scores_ = tensors["decision_scores"].numpy()
        for key in ("threshold", "pixel_threshold"):
            meta = header[key]
            rule = None if meta is None else ThresholdRule.from_state(
                meta, {k.split(".", 1)[1]: v.numpy() for k, v in tensors.items() if k.startswith(f"{key}.")})
            setattr(det, f"{key}_rule_", rule)
            setattr(det, f"{key}_", None if rule is None else rule.threshold_)
        return det

    @classmethod
    def _from_run(cls, path: str, device: str, registry: Registry) -> Detector:
        """A CLI run: its model and config; the thresholds are fitted again on its dataset's held-out images
        (the run's checkpoint keeps thresholds, not the scores a conformal rule needs). When that dataset
        cannot be built here, the run's own quantile thresholds are kept and ``predict_proba`` is unavailable."""
        from .engine import load_trained

        trained = load_trained(path, device, registry)
        cfg = trained.config
        det = cls(to_dict(cfg))
        det.model_, det.config_ = trained.model, cfg
        det.device_ = next(iter(trained.model.parameters()), torch.empty(0)).device
        det.channels_, det.image_size_ = trained.signature["channels"], trained.signature["image_size"]
        det.fit_data_ = f"run {path}"
        try:
            splits = build_data(cfg, registry)
        except (DataError, OSError, RuntimeError) as exc:
            warnings.warn(f"{path}: its dataset cannot be built here ({exc}); keeping the run's thresholds "
                          "(quantile of its held-out scores); predict_proba and p_values need them refitted",
                          UserWarning, stacklevel=3)
            cal = trained.calibration
            det.threshold_rule_ = Fixed(cal["threshold"]).fit()
            det.threshold_ = det.threshold_rule_.threshold_
            det.decision_scores_ = np.zeros(0)
            pix = cal.get("pixel_threshold")
            det.pixel_threshold_rule_ = None if pix is None else Fixed(pix).fit()
            det.pixel_threshold_ = pix
            return det
        det._fit_thresholds(splits)
        return det
