"""A benchmark suite: methods (configs + overrides) x datasets (with classes or categories) x seeds, read from
YAML and checked whole before any cell runs.

```yaml
name: digits-all
baseline: memae                 # the method every other one is compared with (paired)
metric: image_auroc             # the summary's main metric (bootstrapped over test images)
seeds: [0, 1, 2]                # training seeds (the top-level ``seed``); the test split stays the same
methods:
  memae: {config: ../../configs/digits.yaml, set: {train.epochs: 30}}
  oled: ../../configs/oled/oled.yaml            # a config path alone
  twostage: {config: ../../configs/twostage/twostage.yaml, quick_set: {model.objective.pretrain_steps: 1}}
datasets:
  digits: {data: {name: digits, image_size: 28}, classes: [0, 1, 2]}
  brick:  {data: {name: textures, image_size: 64}, categories: [brick]}
quick: {set: {train.steps: 2}}  # what --quick changes: the first seed and class, these overrides
```

A config path is relative to the suite file (else to the working folder). A cell's config is the method's
config, then the dataset's ``data`` and ``set``, then the method's ``set`` and its ``on: {dataset: {...}}``
overrides, then the class / category, the seed, with ``--quick`` the suite's, dataset's and method's
``quick_set`` overrides, and ``--device``.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from .stats import METRICS

__all__ = ["METRICS", "Cell", "DatasetEntry", "Method", "Suite", "SuiteError", "check_cells", "load_suite", "parse_suite",
           "select", "set_baseline"]


class SuiteError(ValueError):
    """A suite that cannot run: the message names the suite file, the key and what was expected."""


@dataclass
class Method:
    name: str
    config: str                                   # absolute path
    overrides: list[str] = field(default_factory=list)
    on: dict[str, list[str]] = field(default_factory=dict)   # dataset -> extra overrides
    quick_overrides: list[str] = field(default_factory=list)


@dataclass
class DatasetEntry:
    name: str
    data: dict[str, Any]
    key: str | None = None                        # normal_class | category | None (one cell)
    values: list[Any] = field(default_factory=lambda: [None])
    overrides: list[str] = field(default_factory=list)
    quick_overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    method: str
    dataset: str
    cls: Any                                       # the class / category, None for a dataset without
    seed: int
    overrides: tuple[str, ...]                     # in order, over the method's config
    config: str

    @property
    def group(self) -> str:
        """``dataset/class``, or the dataset alone when it has no classes."""
        return self.dataset if self.cls is None else f"{self.dataset}/{self.cls}"

    @property
    def label(self) -> str:
        return f"{self.method} {self.group} seed {self.seed}"

    @property
    def folder(self) -> str:
        """Where its run folder lies under the benchmark's ``--out``."""
        return os.path.join("cells", self.method, self.dataset, "all" if self.cls is None else str(self.cls),
                            f"seed{self.seed}")


@dataclass
class Suite:
    path: str
    name: str
    methods: dict[str, Method]
    datasets: dict[str, DatasetEntry]
    seeds: list[int]
    baseline: str | None = None
    metric: str = "image_auroc"
    quick_overrides: list[str] = field(default_factory=list)
    description: str = ""

    def cells(self, *, quick: bool = False, device: str | None = None) -> list[Cell]:
        """Every cell, method by method; ``quick``: the first seed and class of each dataset, the quick
        overrides."""
        seeds = self.seeds[:1] if quick else self.seeds
        out = []
        for m in self.methods.values():
            for d in self.datasets.values():
                for value in (d.values[:1] if quick else d.values):
                    for seed in seeds:
                        # data.seed pinned: every training seed sees the same split and test images (a
                        # run's seed would reseed the data too), so seeds pool and methods pair
                        sets = ["data.seed=0", *(f"data.{k}={_yaml(v)}" for k, v in d.data.items()), *d.overrides,
                                *m.overrides, *m.on.get(d.name, [])]
                        if d.key is not None:
                            sets.append(f"data.{d.key}={_yaml(value)}")
                        sets.append(f"seed={seed}")
                        if quick:
                            sets += [*self.quick_overrides, *d.quick_overrides, *m.quick_overrides]
                        if device:
                            sets.append(f"train.device={device}")
                        sets.append("train.progress=false")
                        out.append(Cell(m.name, d.name, value, seed, tuple(_last_length_wins(sets)), m.config))
        return out


def _last_length_wins(sets: list[str]) -> list[str]:
    """The suite's layers (dataset, method, quick) each may give the training length: the last one given
    wins, as a later ``--set`` would (``train.steps`` and ``train.epochs`` together are a config error)."""
    length = ("train.steps=", "train.epochs=")
    last = max((i for i, s in enumerate(sets) if s.startswith(length)), default=None)
    return [s for i, s in enumerate(sets) if i == last or not s.startswith(length)]


_SUITE_KEYS = ("name", "description", "baseline", "metric", "seeds", "methods", "datasets", "quick")
_METHOD_KEYS = ("config", "set", "on", "quick_set")
_DATASET_KEYS = ("data", "classes", "categories", "set", "quick_set")
_QUICK_KEYS = ("set",)
# datasets whose classes are known without building them: a class that does not exist is an error up front
_CLASSES = {"digits": list(range(10)), "fashion_mnist": list(range(10))}


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _closest(value: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _keys(raw: Any, known: tuple[str, ...], where: str, errors: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a mapping, got {raw!r}")
        return {}
    for key in raw:
        if key not in known:
            errors.append(f"{where}.{key}: unknown key{_closest(key, list(known))} (known keys: {', '.join(known)})")
    return raw


def _sets(raw: Any, where: str, errors: list[str]) -> list[str]:
    """A ``set:`` mapping ``{a.b: value}`` (or a list of ``a.b=value``) as ``--set`` overrides."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [f"{k}={_yaml(v)}" for k, v in raw.items()]
    if isinstance(raw, list) and all(isinstance(s, str) and "=" in s for s in raw):
        return list(raw)
    errors.append(f"{where}: expected a mapping of config keys to values ({{train.epochs: 5}}), got {raw!r}")
    return []


def _config_path(value: Any, folder: str, where: str, errors: list[str]) -> str:
    if not isinstance(value, str) or not value:
        errors.append(f"{where}: expected a config file path, got {value!r}")
        return ""
    for candidate in (value if os.path.isabs(value) else os.path.join(folder, value), value):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    errors.append(f"{where}: config file {value!r} not found (relative to the suite's folder {folder} or the "
                  "working folder)")
    return ""


def _method(name: str, raw: Any, folder: str, where: str, errors: list[str]) -> Method:
    if isinstance(raw, str):
        raw = {"config": raw}
    raw = _keys(raw, _METHOD_KEYS, where, errors)
    if "config" not in raw:
        errors.append(f"{where}.config: missing (the method's YAML config)")
    config = _config_path(raw.get("config"), folder, f"{where}.config", errors) if "config" in raw else ""
    on = raw.get("on") or {}
    if not isinstance(on, dict):
        errors.append(f"{where}.on: expected a mapping dataset -> overrides, got {on!r}")
        on = {}
    return Method(name, config, _sets(raw.get("set"), f"{where}.set", errors),
                  {d: _sets(s, f"{where}.on.{d}", errors) for d, s in on.items()},
                  _sets(raw.get("quick_set"), f"{where}.quick_set", errors))


def _dataset(name: str, raw: Any, where: str, errors: list[str]) -> DatasetEntry:
    raw = _keys(raw, _DATASET_KEYS, where, errors)
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        errors.append(f"{where}.data: expected a mapping with the dataset's name ({{name: digits}}), got {data!r}")
        data = {"name": "?"}
    entry = DatasetEntry(name, dict(data), overrides=_sets(raw.get("set"), f"{where}.set", errors),
                         quick_overrides=_sets(raw.get("quick_set"), f"{where}.quick_set", errors))
    if "classes" in raw and "categories" in raw:
        errors.append(f"{where}: give classes (data.normal_class) or categories (data.category), not both")
    for key, field_name in (("classes", "normal_class"), ("categories", "category")):
        if key in raw:
            values = raw[key]
            if not isinstance(values, list) or not values:
                errors.append(f"{where}.{key}: expected a non-empty list, got {values!r}")
                continue
            entry.key, entry.values = field_name, list(values)
    return entry


def _check_classes(entry: DatasetEntry, where: str, errors: list[str]) -> None:
    """A class or category the dataset does not have, found before anything trains."""
    from ..data.textures import TEXTURES

    dataset = entry.data.get("name")
    if entry.key == "normal_class" and dataset in _CLASSES:
        known = _CLASSES[dataset]
        for v in entry.values:
            if isinstance(v, bool) or v not in known:
                errors.append(f"{where}.classes: {dataset} has no class {v!r} (its classes: "
                              f"{known[0]}..{known[-1]})")
    elif entry.key == "category" and dataset == "textures":
        for v in entry.values:
            if v not in TEXTURES:
                errors.append(f"{where}.categories: textures has no category {v!r}{_closest(v, list(TEXTURES))} "
                              f"(its categories: {', '.join(TEXTURES)})")
    elif entry.key == "category" and dataset == "folder" and entry.data.get("root"):
        for v in entry.values:
            if not os.path.isdir(os.path.join(str(entry.data["root"]), str(v))):
                errors.append(f"{where}.categories: no folder {os.path.join(str(entry.data['root']), str(v))!r} "
                              f"for category {v!r}")


def _seeds(raw: Any, where: str, errors: list[str]) -> list[int]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        if len(set(raw)) != len(raw):
            errors.append(f"{where}: a seed is given twice in {raw!r}")
        return list(raw)
    errors.append(f"{where}: expected a list of ints (training seeds), got {raw!r}")
    return [0]


def parse_suite(raw: Any, path: str) -> Suite:
    """A suite mapping (read from ``path``) -> :class:`Suite`; every problem in one :class:`SuiteError`."""
    errors: list[str] = []
    raw = _keys(raw, _SUITE_KEYS, "suite", errors)
    folder = os.path.dirname(os.path.abspath(path))
    methods_raw, datasets_raw = raw.get("methods"), raw.get("datasets")
    for key, value in (("methods", methods_raw), ("datasets", datasets_raw)):
        if not isinstance(value, dict) or not value:
            errors.append(f"{key}: expected a non-empty mapping of name -> entry, got {value!r}")
    methods = {str(n): _method(str(n), v, folder, f"methods.{n}", errors)
               for n, v in (methods_raw.items() if isinstance(methods_raw, dict) else [])}
    datasets = {str(n): _dataset(str(n), v, f"datasets.{n}", errors)
                for n, v in (datasets_raw.items() if isinstance(datasets_raw, dict) else [])}
    for d in datasets.values():
        _check_classes(d, f"datasets.{d.name}", errors)
    for m in methods.values():
        for d in m.on:
            if d not in datasets:
                errors.append(f"methods.{m.name}.on.{d}: no such dataset in the suite{_closest(d, list(datasets))} "
                              f"(its datasets: {', '.join(datasets)})")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in methods:
        errors.append(f"baseline: unknown method {baseline!r}{_closest(str(baseline), list(methods))} "
                      f"(the suite's methods: {', '.join(methods)})")
    metric = raw.get("metric", "image_auroc")
    if metric not in METRICS:
        errors.append(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}{_closest(str(metric), list(METRICS))}")
    quick = _keys(raw.get("quick") or {}, _QUICK_KEYS, "quick", errors)
    suite = Suite(path=os.path.abspath(path), name=str(raw.get("name") or os.path.splitext(os.path.basename(path))[0]),
                  methods=methods, datasets=datasets, seeds=_seeds(raw.get("seeds", [0]), "seeds", errors),
                  baseline=baseline, metric=metric, quick_overrides=_sets(quick.get("set"), "quick.set", errors),
                  description=str(raw.get("description") or ""))
    if errors:
        raise SuiteError(f"suite {path}:\n  " + "\n  ".join(errors))
    return suite


def load_suite(path: str) -> Suite:
    """Read and check a suite file (``yaml.safe_load``); see the module docstring for its keys."""
    if not os.path.isfile(path):
        raise SuiteError(f"suite file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise SuiteError(f"suite file {path!r} is not valid YAML: {exc}") from None
    return parse_suite(raw or {}, path)


def check_cells(suite: Suite, cells: list[Cell]) -> None:
    """Build and validate every cell's config (an unknown dataset, key or component is found here, with the
    config's own "did you mean"), before any cell runs; one error listing each cell that fails."""
    from ..config import ConfigError, load_config
    from ..plugins import get_registry

    registry = get_registry()
    known = registry.names("dataset")
    errors = []
    for d in suite.datasets.values():
        if d.data.get("name") not in known:
            errors.append(f"datasets.{d.name}.data.name: unknown dataset {d.data.get('name')!r}"
                          f"{_closest(str(d.data.get('name')), known)} (registered: {', '.join(known)})")
    if not errors:
        for cell in (c for c in cells if c.seed == cells[0].seed):   # seeds change nothing a config checks
            try:
                load_config(cell.config, list(cell.overrides), registry)
            except ConfigError as exc:
                errors.append(f"{cell.label} ({os.path.relpath(cell.config)}): {exc}")
    if errors:
        raise SuiteError(f"suite {suite.path}:\n  " + "\n  ".join(dict.fromkeys(errors)))



def set_baseline(suite: Suite, name: str) -> None:
    """Compare the suite's methods with ``name`` (``--baseline``); a method the suite does not have is a
    :class:`SuiteError` naming the option and the suite's methods."""
    if name not in suite.methods:
        have = list(suite.methods)
        raise SuiteError(f"suite {suite.path}:\n  --baseline: the suite has no {name!r}{_closest(name, have)} (it "
                         f"has: {', '.join(have)})")
    suite.baseline = name


def select(suite: Suite, cells: list[Cell], *, methods: list[str] | None = None, datasets: list[str] | None = None,
           classes: list[str] | None = None, seeds: list[int] | None = None) -> list[bool]:
    """Which of ``cells`` to run: those whose method, dataset, class / category (compared as text) and seed are
    among the ones given (``None``: all). A name the suite does not have is a :class:`SuiteError` naming the
    option and what the suite has, before anything runs."""
    errors = []
    known = {"--methods": (methods, list(suite.methods)), "--datasets": (datasets, list(suite.datasets)),
             "--classes": (classes, list(dict.fromkeys(str(v) for d in suite.datasets.values() for v in d.values
                                                       if v is not None))),
             "--seeds": (None if seeds is None else [str(s) for s in seeds], [str(s) for s in suite.seeds])}
    for option, (given, have) in known.items():
        for value in given or []:
            if value not in have:
                errors.append(f"{option}: the suite has no {value!r}{_closest(value, have)} (it has: "
                              f"{', '.join(have) or 'none'})")
    if errors:
        raise SuiteError(f"suite {suite.path}:\n  " + "\n  ".join(errors))
    return [(methods is None or c.method in methods) and (datasets is None or c.dataset in datasets)
            and (classes is None or str(c.cls) in classes) and (seeds is None or c.seed in seeds) for c in cells]
