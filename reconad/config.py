"""Configs: YAML (``yaml.safe_load`` semantics only) -> validated dataclasses, with one error naming every
YAML path that is wrong (``model.memory.slots: expected int, got 'many'``) before anything is trained.

The dataclasses below are the core sections; a component's keys (``model.encoder.*`` ...) and a dataset's
keys (``data.*``: ``DataSettings`` plus the dataset's own options) come from the registered factory's
signature. pydantic checks every mapping (``reconad._schema``); this module says what the sections are and
how a user's file layers over the default config.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from ._schema import CONTEXT_PARAMS, ParamSchema, unknown_key
from .data.base import DataSettings
from .registry import ComponentSpec, Registry, RegistryError

__all__ = [
    "CONTEXT_PARAMS", "ComponentConfig", "Config", "ConfigError", "ModelConfig", "TestConfig", "TrainConfig",
    "apply_overrides", "default_config_path", "layer", "load_config", "load_raw", "to_dict", "validate",
    "validate_resolved",
]


class ConfigError(ValueError):
    """An invalid config: the message has one line per problem, each starting with its YAML path."""


@dataclass
class ComponentConfig:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    encoder: ComponentConfig
    decoder: ComponentConfig
    memory: ComponentConfig | None = None
    masker: ComponentConfig | None = None
    scorers: list[ComponentConfig] = field(default_factory=lambda: [ComponentConfig("l2")])
    objective: ComponentConfig = field(default_factory=lambda: ComponentConfig("reconstruction"))


@dataclass
class TrainConfig:
    epochs: int = 20                     # passes over the training set (when steps is not set)
    steps: int | None = None             # total optimiser steps, instead of epochs (a config sets one of them)
    batch_size: int = 32                 # global batch (split across processes under torchrun)
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9                # sgd only
    amp: bool = False                    # mixed precision (fp16 on CUDA, bf16 on CPU)
    grad_clip: float | None = None
    checkpoint_every: int = 0            # steps between checkpoints (0: none by steps)
    checkpoint_minutes: float = 5.0      # minutes between checkpoints (0: none by time); also on SIGINT/SIGTERM
    select_every: int = 0                # epochs between model-selection scorings of the dataset's labelled
    #                                      validation split; the best image AUROC is kept (0: the last model)
    num_workers: int = 0
    threads: int | None = None           # torch's CPU threads for this process (null: torch's default)
    progress: bool = True
    loggers: list[str] = field(default_factory=lambda: ["csv"])   # where the history goes: csv (history.csv,
    #                                      always on), tensorboard, mlflow, or a plugin's logger
    log_every_steps: int = 50            # steps between rows of the training history (also one per epoch)


@dataclass
class TestConfig:
    batch_size: int = 64
    threshold: Literal["quantile", "conformal", "f1"] = "quantile"   # the image threshold rule
    #                                      (reconad.thresholds): quantile or split-conformal at alpha on held-out
    #                                      normal scores, or f1: the best F1 on the dataset's labelled validation
    #                                      split (never the test set)
    threshold_quantile: float = 0.99     # quantile: threshold = this quantile of held-out normal scores
    alpha: float = 0.05                  # conformal: false-alarm rate on new normal images at most alpha
    pixel_threshold: Literal["quantile", "area"] = "quantile"   # the pixel rule on held-out normal maps:
    #                                      threshold_quantile of their pixels, or area: paper 004's rule (no
    #                                      held-out map keeps a component of more than min_area pixels above it)
    min_area: int = 10                   # area: pixels a connected component must exceed to count
    fpr_limit: float = 0.3               # AUPRO integration limit
    report_images: int = 6               # most / least anomalous test images in the report grid


@dataclass
class _TopLevel:
    """The top-level keys besides the sections (data, model, train, test), which have schemas of their own."""
    seed: int = 0
    name: str = "reconad"


@dataclass
class Config:
    data: DataSettings
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    seed: int = 0
    name: str = "reconad"
    data_options: dict[str, Any] = field(default_factory=dict)   # the dataset's own keys under data:
    # test.evaluators: a paper's own measurements of the tested run (reconad.components.Evaluator), components
    # like the scorers (a name or {name, options}); kept beside TestConfig, whose keys are plain values
    evaluators: list[ComponentConfig] = field(default_factory=list)


_TOP, _TRAIN, _TEST = (ParamSchema.of_dataclass(c) for c in (_TopLevel, TrainConfig, TestConfig))
_MODEL_KEYS = [f.name for f in dataclasses.fields(ModelConfig)]


@functools.lru_cache(maxsize=None)
def _data_schema(spec: ComponentSpec) -> ParamSchema:
    """The ``data:`` section of one dataset: ``DataSettings`` and the dataset's own options, in one mapping."""
    return ParamSchema.of_dataclass(DataSettings, extra=spec.schema)


def default_config_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.yaml")


# ------------------------------------------------------------------------------------------ validation

def _component(raw: Any, kind: str, path: str, registry: Registry, errors: list[str]) -> ComponentConfig | None:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        errors.append(f"{path}: expected a component name or a mapping with 'name', got {raw!r}")
        return None
    name, params = raw["name"], {k: v for k, v in raw.items() if k != "name"}
    if not isinstance(name, str):
        errors.append(f"{path}.name: expected a {kind} name, got {name!r}")
        return None
    try:
        spec = registry.get(kind, name)
    except RegistryError as exc:
        errors.append(f"{path}.name: {exc}")
        return None
    return ComponentConfig(name, spec.schema.validate(params, path, errors, also_known=("name",)))


def _model(raw: Any, registry: Registry, errors: list[str]) -> ModelConfig | None:
    if not isinstance(raw, dict):
        errors.append(f"model: expected a mapping, got {raw!r}")
        return None
    before = len(errors)
    for key in raw:
        if key not in _MODEL_KEYS:
            errors.append(unknown_key(str(key), _MODEL_KEYS, f"model.{key}"))
    parts: dict[str, Any] = {}
    for key in ("encoder", "decoder"):
        if raw.get(key) is None:
            errors.append(f"model.{key}: missing required key")
        else:
            parts[key] = _component(raw[key], key, f"model.{key}", registry, errors)
    for key in ("memory", "masker"):
        parts[key] = None if raw.get(key) is None else _component(raw[key], key, f"model.{key}", registry, errors)
    scorers = raw.get("scorers")
    if scorers is None:  # absent or null: the default
        scorers = ["l2"]
    if isinstance(scorers, (str, dict)):
        scorers = [scorers]
    if not isinstance(scorers, list) or not scorers:
        errors.append(f"model.scorers: expected a non-empty list of scorers, got {scorers!r}")
        scorers = []
    parts["scorers"] = [_component(s, "scorer", f"model.scorers[{i}]", registry, errors)
                        for i, s in enumerate(scorers)]
    objective = raw.get("objective")
    parts["objective"] = _component("reconstruction" if objective is None else objective, "objective",
                                    "model.objective", registry, errors)
    return None if len(errors) > before else ModelConfig(**parts)


def _data(raw: Any, registry: Registry, errors: list[str]) -> tuple[DataSettings | None, dict[str, Any]]:
    """(the core settings, the dataset's own options) of the ``data:`` section, checked as one mapping."""
    if not isinstance(raw, dict):
        errors.append(f"data: expected a mapping, got {raw!r}")
        return None, {}
    if not isinstance(raw.get("name"), str):
        errors.append("data.name: missing required key" if raw.get("name") is None
                      else f"data.name: expected a dataset name, got {raw['name']!r}")
        return None, {}
    try:
        spec = registry.get("dataset", raw["name"])
    except RegistryError as exc:
        errors.append(f"data.name: {exc}")
        return None, {}

    def owners(key: str) -> str:  # an option of another dataset: say which
        names = [s.name for s in registry if s.kind == "dataset" and key in s.schema.hints]
        return f"{key!r} is an option of dataset {', '.join(map(repr, names))}" if names else ""

    before = len(errors)
    values = _data_schema(spec).validate(raw, "data", errors, unknown_note=owners)
    if len(errors) > before:
        return None, {}
    core = {f.name for f in dataclasses.fields(DataSettings)}
    return (DataSettings(**{k: v for k, v in values.items() if k in core}),
            {k: v for k, v in values.items() if k not in core})


def validate(raw: Any, registry: Registry | None = None) -> Config:
    """Validate a raw (YAML-loaded) mapping into a ``Config``; raises ``ConfigError`` listing every problem."""
    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    if not isinstance(raw, dict):
        raise ConfigError(f"(top level): expected a mapping of sections, got {raw!r}")
    errors: list[str] = []
    top = _TOP.validate({k: v for k, v in raw.items() if k not in ("data", "model", "train", "test")}, "",
                        errors, also_known=("data", "model", "train", "test"))
    data, data_options, model = None, {}, None
    if "data" in raw:
        data, data_options = _data(raw["data"], registry, errors)
    else:
        errors.append("data: missing required key")
    if "model" in raw:
        model = _model(raw["model"], registry, errors)
    else:
        errors.append("model: missing required key")
    _check_length(raw.get("train"), errors)
    train = _section(TrainConfig, _TRAIN, raw.get("train"), "train", errors)
    _check_train(dataclasses.asdict(train) if train is not None else raw.get("train"), errors)
    raw_test = raw.get("test")
    evaluators = []
    if isinstance(raw_test, dict) and "evaluators" in raw_test:
        raw_test = {k: v for k, v in raw_test.items() if k != "evaluators"}
        evaluators = _evaluators(raw["test"]["evaluators"], registry, errors)
    test = _section(TestConfig, _TEST, raw_test, "test", errors)
    if test is not None and not 0.0 < test.threshold_quantile <= 1.0:
        errors.append(f"test.threshold_quantile: expected a value in (0, 1], got {test.threshold_quantile}")
    if test is not None and not 0.0 < test.alpha < 1.0:
        errors.append(f"test.alpha: expected a false-alarm rate in (0, 1), got {test.alpha}")
    if test is not None and test.min_area < 0:
        errors.append(f"test.min_area: expected a number of pixels >= 0, got {test.min_area}")
    seed, name = top.get("seed", 0), top.get("name", "reconad")
    if data is not None and "seed" not in raw["data"]:
        data.seed = seed  # one seed for the whole run unless the data section sets its own
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return Config(data=data, model=model, train=train, test=test, seed=seed, name=name, data_options=data_options,
                  evaluators=evaluators)


def _evaluators(raw: Any, registry: Registry, errors: list[str]) -> list[ComponentConfig]:
    """``test.evaluators``: a list of evaluator components (null: none); each name once."""
    if raw is None:
        return []
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list):
        errors.append(f"test.evaluators: expected a list of evaluators (names or {{name: ..., options}}), got {raw!r}")
        return []
    out = [_component(e, "evaluator", f"test.evaluators[{i}]", registry, errors) for i, e in enumerate(raw)]
    names = [e.name for e in out if e is not None]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"test.evaluators: {name!r} is listed more than once (its results are keyed by its name)")
    return [e for e in out if e is not None]


def validate_resolved(raw: Any, registry: Registry | None = None) -> Config:
    """``validate`` for a resolved config (a run's config.yaml, a checkpoint's or a saved detector's). One
    written before a config could set only one of ``train.steps`` / ``train.epochs`` holds both; steps was
    the length then, and is now."""
    if isinstance(raw, dict) and isinstance(raw.get("train"), dict) and raw["train"].get("steps") is not None:
        raw = {**raw, "train": {**raw["train"], "epochs": None}}
    return validate(raw, registry)


def _section(cls: type, schema: ParamSchema, raw: Any, path: str, errors: list[str]) -> Any:
    """A core section's dataclass (absent or null: every default), or None when it has errors."""
    before = len(errors)
    values = schema.validate({} if raw is None else raw, path, errors)
    return None if len(errors) > before else cls(**values)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_length(raw: Any, errors: list[str]) -> None:
    """A config sets the training length once: ``train.steps`` or ``train.epochs``, never both (steps would
    silently win)."""
    if isinstance(raw, dict) and _num(raw.get("steps")) and _num(raw.get("epochs")):
        errors.append(f"train: sets both steps ({raw['steps']!r}) and epochs ({raw['epochs']!r}); set one of "
                      "them (steps: optimiser steps in all, epochs: passes over the training set), or remove "
                      "the other with --set train.steps=null / train.epochs=null")


def _check_train(raw: Any, errors: list[str]) -> None:
    """Ranges of the train section; a value whose type is wrong was reported already and is skipped here, so
    one error lists every problem."""
    t = {**dataclasses.asdict(TrainConfig()), **(raw if isinstance(raw, dict) else {})}
    if _num(t["epochs"]) and t["epochs"] < 1 and t["steps"] is None:
        errors.append(f"train.epochs: expected >= 1, got {t['epochs']}")
    if _num(t["steps"]) and t["steps"] < 1:
        errors.append(f"train.steps: expected >= 1 or null, got {t['steps']}")
    if _num(t["batch_size"]) and t["batch_size"] < 1:
        errors.append(f"train.batch_size: expected >= 1, got {t['batch_size']}")
    if _num(t["lr"]) and t["lr"] <= 0:
        errors.append(f"train.lr: expected > 0, got {t['lr']}")
    for key in ("checkpoint_every", "checkpoint_minutes"):
        if _num(t[key]) and t[key] < 0:
            errors.append(f"train.{key}: expected >= 0 (0: off), got {t[key]}")
    if _num(t["log_every_steps"]) and t["log_every_steps"] < 1:
        errors.append(f"train.log_every_steps: expected steps >= 1, got {t['log_every_steps']}")
    if _num(t["threads"]) and t["threads"] < 1:
        errors.append(f"train.threads: expected >= 1 or null (torch's default), got {t['threads']}")
    if _num(t["select_every"]) and t["select_every"] < 0:
        errors.append(f"train.select_every: expected epochs >= 0 (0: keep the last model), got {t['select_every']}")
    dev = t["device"]
    if isinstance(dev, str) and not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        errors.append(f"train.device: expected auto, cpu, cuda or cuda:N, got {dev!r}")


# ------------------------------------------------------------------------------------------- loading

class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (the same safe tags), except that a key given twice in one mapping is an error
    instead of the second silently replacing the first. Keys merged in with ``<<`` may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(f"duplicate key {key!r} at lines {seen[key]} and {line}")
                seen[key] = line
            except TypeError:  # an unhashable key: the base class reports it
                continue
        return super().construct_mapping(node, deep)


def _read_yaml(path: str) -> Any:
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return copy.deepcopy(_parse_config_text(text))
    except _DuplicateKey as exc:
        raise ConfigError(f"config file {path!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from None


@functools.lru_cache(maxsize=64)
def _parse_config_text(text: str) -> Any:
    """A config file's text parsed, cached by the text (callers copy the result): a benchmark reads each
    method's config and the defaults once per cell, hundreds of times."""
    return yaml.load(text, Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader subclass


@functools.lru_cache(maxsize=1024)
def _parse_value(text: str) -> Any:
    """An override's value parsed as YAML (the text itself where it is not valid YAML); callers copy it."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _read_mapping(path: str) -> dict[str, Any]:
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path!r}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a raw config mapping (a copy). ``key=null``
    resets a key to its default (or sets null where null is a value, e.g. ``model.memory=null``). Switching
    ``data.name`` drops the other dataset's keys: only the ``data.*`` keys these overrides set are kept.
    Setting one of ``train.steps`` / ``train.epochs`` clears the other (the length is given once)."""
    raw = copy.deepcopy(raw)
    set_keys: dict[str, Any] = {}
    data_before = raw.get("data", {}).get("name") if isinstance(raw.get("data"), dict) else None
    data_set: set[str] = set()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
        key, text = item.split("=", 1)
        value = copy.deepcopy(_parse_value(text))
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key segment in {key!r}")
        node: Any = raw
        for i, part in enumerate(parts):
            if isinstance(node, list):   # a list's item by index: model.scorers.0.scale=set
                if not (part.isdigit() and int(part) < len(node)):
                    raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i])} is a list of {len(node)} item(s); "
                                      f"expected an index 0..{len(node) - 1}, got {part!r}")
                part = int(part)     # type: ignore[assignment]
            if i == len(parts) - 1:
                node[part] = value
                break
            child = node[part] if isinstance(node, list) else node.get(part)
            if isinstance(child, str) and i >= 1 and parts[0] == "model":  # component shorthand "memae"
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, (dict, list)):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is {child!r}, not a mapping")
            node[part] = child
            node = child
        if parts[0] == "data" and len(parts) > 1:
            data_set.add(parts[1])
        set_keys[".".join(parts)] = value
    _one_length(raw, set_keys)
    data = raw.get("data")
    if isinstance(data, dict) and "name" in data_set and data.get("name") != data_before:
        raw["data"] = {k: v for k, v in data.items() if k in data_set}
    return raw


_LENGTH = ("train.steps", "train.epochs")


def _one_length(raw: dict[str, Any], set_keys: dict[str, Any]) -> None:
    """An override of ``train.steps`` or ``train.epochs`` replaces the config's training length: the other
    key is removed. Overriding both leaves both, which validation reports."""
    given = [k for k in _LENGTH if set_keys.get(k) is not None]
    if len(given) == 1 and isinstance(raw.get("train"), dict):
        other = _LENGTH[1 - _LENGTH.index(given[0])].split(".")[1]
        raw["train"].pop(other, None)


def layer(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """A user's config over a base config (the default): each section the user gives replaces the base's
    section whole (a model or a dataset never mixes with another's keys), the others come from the base.
    The base's ``name`` is not inherited: a run is named by its own config."""
    return {**{k: v for k, v in base.items() if k != "name"}, **user}


def load_raw(path: str | None, overrides: list[str] = ()) -> dict[str, Any]:
    """The raw mapping of ``path`` (the default config when None) with ``overrides`` applied."""
    return apply_overrides(_read_mapping(path or default_config_path()), list(overrides))


def load_config(path: str | None = None, overrides: list[str] = (), registry: Registry | None = None) -> Config:
    """Load a config file layered over the default config (``layer``), override and validate it. A run is
    named by the config's ``name``, else its file name, else (the default config) ``<dataset>-<model>``."""
    default = _read_mapping(default_config_path())
    raw = apply_overrides(layer(default, _read_mapping(path)) if path else default, list(overrides))
    if "name" not in raw:
        raw["name"] = os.path.splitext(os.path.basename(path))[0] if path else _default_name(raw)
    return validate(raw, registry)


def _default_name(raw: dict[str, Any]) -> str:
    """``textures-memae``: the dataset and the model's memory (else its encoder)."""
    def name(v: Any) -> Any:
        return v.get("name") if isinstance(v, dict) else v

    data, model = raw.get("data"), raw.get("model")
    parts = [name(data), name(model.get("memory") or model.get("encoder")) if isinstance(model, dict) else None]
    return "-".join(str(p) for p in parts if p) or "reconad"


def to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as a plain mapping (what ``config.yaml`` in a run folder holds)."""
    def comp(c: ComponentConfig | None) -> Any:
        return None if c is None else {"name": c.name, **c.params}

    m = cfg.model
    return {
        "name": cfg.name,
        "seed": cfg.seed,
        "data": {**dataclasses.asdict(cfg.data), **cfg.data_options},
        "model": {"encoder": comp(m.encoder), "memory": comp(m.memory), "decoder": comp(m.decoder),
                  "masker": comp(m.masker), "scorers": [comp(s) for s in m.scorers],
                  "objective": comp(m.objective)},
        "train": {**dataclasses.asdict(cfg.train),   # the length in effect only: steps, or epochs
                  **({"epochs": None} if cfg.train.steps is not None else {})},
        # evaluators only when there are some: a config without them resolves as it did before they existed
        # (the same config.yaml, the same benchmark cache keys)
        "test": {**dataclasses.asdict(cfg.test),
                 **({"evaluators": [comp(e) for e in cfg.evaluators]} if cfg.evaluators else {})},
    }
