"""Configs: YAML (``yaml.safe_load`` only) -> validated dataclasses, with one error naming every YAML path
that is wrong (``model.memory.slots: expected int, got 'many'``) before anything is trained.

Core sections are the dataclasses below; a component's keys (``model.encoder.*`` ...) and a dataset's own
keys (``data.*`` beyond ``DataSettings``) are validated from the registered factory's signature.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import yaml

from .data.base import DataSettings
from .registry import Registry, RegistryError

__all__ = [
    "CONTEXT_PARAMS", "ComponentConfig", "Config", "ConfigError", "ModelConfig", "TestConfig", "TrainConfig",
    "apply_overrides", "component_params", "default_config_path", "load_config", "to_dict", "validate",
]

# Filled in by reconad when a factory declares them; never set from a config.
CONTEXT_PARAMS = frozenset({"in_channels", "out_channels", "image_size", "in_shape"})


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
    epochs: int = 20                     # passes over the training set (ignored when steps is set)
    steps: int | None = None             # total optimiser steps, instead of epochs
    batch_size: int = 32                 # global batch (split across processes under torchrun)
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9                # sgd only
    amp: bool = False                    # mixed precision (fp16 on CUDA, bf16 on CPU)
    grad_clip: float | None = None
    checkpoint_every: int = 0            # steps between checkpoints (0: only at the end)
    select_every: int = 0                # epochs between model-selection scorings of the dataset's labelled
    #                                      validation split; the best image AUROC is kept (0: the last model)
    num_workers: int = 0
    progress: bool = True


@dataclass
class TestConfig:
    batch_size: int = 64
    threshold_quantile: float = 0.99     # threshold = this quantile of held-out normal scores
    fpr_limit: float = 0.3               # AUPRO integration limit
    report_images: int = 6               # most / least anomalous test images in the report grid


@dataclass
class Config:
    data: DataSettings
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    seed: int = 0
    name: str = "reconad"
    data_options: dict[str, Any] = field(default_factory=dict)   # the dataset's own keys under data:


def default_config_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.yaml")


# ---------------------------------------------------------------------------------------------- values

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str, errors: list[str]) -> Any:
    """Check ``value`` against the type hint ``tp``; return it (ints widened to float, tuples to lists)."""
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(value, arg, path, trial)
            if not trial:
                return out
        errors.append(f"{path}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(f"{path}: expected one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            errors.append(f"{path}: expected {_type_name(tp)}, got {value!r}")
            return value
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                errors.append(f"{path}: expected {len(args)} items, got {len(value)}")
                return list(value)
            return [_convert(v, a, f"{path}[{i}]", errors) for i, (v, a) in enumerate(zip(value, args))]
        item = args[0] if args else Any
        return [_convert(v, item, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            errors.append(f"{path}: expected float, got {value!r}")
            return value
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        errors.append(f"{path}: expected float, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected str, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        errors.append(f"{path}: expected {_type_name(tp)}, got {value!r}")
    return value


def _unknown(key: str, known: list[str], path: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return f"{path}: unknown key{hint}"


def _dataclass(cls: type, raw: Any, path: str, errors: list[str], *, allow_extra: bool = False
               ) -> tuple[Any, dict[str, Any]]:
    """Build dataclass ``cls`` from the mapping ``raw``; returns (instance or None, extra keys)."""
    if not isinstance(raw, dict):
        errors.append(f"{path or '(top level)'}: expected a mapping, got {raw!r}")
        return None, {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs, extra = {}, {}
    for key, value in raw.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in fields:
            if allow_extra:
                extra[key] = value
            else:
                errors.append(_unknown(str(key), list(fields), sub))
            continue
        kwargs[key] = _convert(value, hints[key], sub, errors)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{path + '.' if path else ''}{name}: missing required key")
    try:
        return cls(**kwargs), extra
    except TypeError:
        return None, extra


# ------------------------------------------------------------------------------------------ components

def component_params(factory: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """(config parameters, their type hints, accepts **kwargs) of a component factory."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable hints: fall back to no type checking
        hints = {}
    params = {}
    var_kw = False
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in CONTEXT_PARAMS:
            params[name] = p
    return params, hints, var_kw


def _check_params(factory: Any, params: dict[str, Any], path: str, errors: list[str],
                  skip: tuple[str, ...] = ()) -> dict[str, Any]:
    allowed, hints, var_kw = component_params(factory)
    out = {}
    for key, value in params.items():
        sub = f"{path}.{key}"
        if key in CONTEXT_PARAMS:
            errors.append(f"{sub}: is filled in by reconad from the data and the other components; remove it")
        elif key in allowed:
            out[key] = _convert(value, hints.get(key, Any), sub, errors)
        elif var_kw:
            out[key] = value
        else:
            errors.append(_unknown(key, [k for k in allowed if k not in skip] + ["name"], sub))
    for name, p in allowed.items():
        if name in skip:
            continue
        if p.default is inspect.Parameter.empty and name not in out:
            errors.append(f"{path}.{name}: missing required key")
    return out


def _component(raw: Any, kind: str, path: str, registry: Registry, errors: list[str]) -> ComponentConfig | None:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        errors.append(f"{path}: expected a component name or a mapping with 'name', got {raw!r}")
        return None
    name, params = raw["name"], {k: v for k, v in raw.items() if k != "name"}
    try:
        spec = registry.get(kind, name)
    except RegistryError as exc:
        errors.append(f"{path}.name: {exc}")
        return None
    return ComponentConfig(name, _check_params(spec.factory, params, path, errors))


def _model(raw: Any, registry: Registry, errors: list[str]) -> ModelConfig | None:
    if not isinstance(raw, dict):
        errors.append(f"model: expected a mapping, got {raw!r}")
        return None
    known = [f.name for f in dataclasses.fields(ModelConfig)]
    for key in raw:
        if key not in known:
            errors.append(_unknown(str(key), known, f"model.{key}"))
    parts: dict[str, Any] = {}
    for key in ("encoder", "decoder"):
        if raw.get(key) is None:
            errors.append(f"model.{key}: missing required key")
        else:
            parts[key] = _component(raw[key], key, f"model.{key}", registry, errors)
    for key in ("memory", "masker"):
        parts[key] = None if raw.get(key) is None else _component(raw[key], key, f"model.{key}", registry, errors)
    scorers = raw.get("scorers", ["l2"])
    if isinstance(scorers, (str, dict)):
        scorers = [scorers]
    if not isinstance(scorers, list) or not scorers:
        errors.append(f"model.scorers: expected a non-empty list of scorers, got {scorers!r}")
        scorers = []
    parts["scorers"] = [_component(s, "scorer", f"model.scorers[{i}]", registry, errors)
                        for i, s in enumerate(scorers)]
    parts["objective"] = _component(raw.get("objective", "reconstruction"), "objective", "model.objective",
                                    registry, errors)
    if errors:
        return None
    return ModelConfig(**parts)


def validate(raw: Any, registry: Registry | None = None) -> Config:
    """Validate a raw (YAML-loaded) mapping into a ``Config``; raises ``ConfigError`` listing every problem."""
    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(f"(top level): expected a mapping of sections, got {raw!r}")
    known = [f.name for f in dataclasses.fields(Config) if f.name != "data_options"]
    for key in raw:
        if key not in known:
            errors.append(_unknown(str(key), known, str(key)))
    data, data_options = None, {}
    if "data" not in raw:
        errors.append("data: missing required key")
    else:
        data, extra = _dataclass(DataSettings, raw["data"], "data", errors, allow_extra=True)
        if data is not None:
            try:
                spec = registry.get("dataset", data.name)
                data_options = _check_params(spec.factory, extra, "data", errors, skip=("settings",))
            except RegistryError as exc:
                errors.append(f"data.name: {exc}")
    model = _model(raw.get("model"), registry, errors) if "model" in raw else None
    if "model" not in raw:
        errors.append("model: missing required key")
    train, _ = _dataclass(TrainConfig, raw.get("train", {}) or {}, "train", errors)
    if train is not None:
        _check_train(train, errors)
    before = len(errors)
    test, _ = _dataclass(TestConfig, raw.get("test", {}) or {}, "test", errors)
    if test is not None and len(errors) == before and not 0.0 < test.threshold_quantile <= 1.0:
        errors.append(f"test.threshold_quantile: expected a value in (0, 1], got {test.threshold_quantile}")
    seed = _convert(raw.get("seed", 0), int, "seed", errors)
    name = _convert(raw.get("name", "reconad"), str, "name", errors)
    if data is not None and "seed" not in raw["data"]:
        data.seed = seed  # one seed for the whole run unless the data section sets its own
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return Config(data=data, model=model, train=train, test=test, seed=seed, name=name, data_options=data_options)


def _check_train(train: TrainConfig, errors: list[str]) -> None:
    """Ranges of the train section (fields whose type is already wrong were reported and are skipped)."""
    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if num(train.epochs) and train.epochs < 1 and train.steps is None:
        errors.append(f"train.epochs: expected >= 1, got {train.epochs}")
    if num(train.steps) and train.steps < 1:
        errors.append(f"train.steps: expected >= 1 or null, got {train.steps}")
    if num(train.batch_size) and train.batch_size < 1:
        errors.append(f"train.batch_size: expected >= 1, got {train.batch_size}")
    if num(train.lr) and train.lr <= 0:
        errors.append(f"train.lr: expected > 0, got {train.lr}")
    if num(train.select_every) and train.select_every < 0:
        errors.append(f"train.select_every: expected epochs >= 0 (0: keep the last model), got {train.select_every}")
    dev = train.device
    if isinstance(dev, str) and not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        errors.append(f"train.device: expected auto, cpu, cuda or cuda:N, got {dev!r}")


# ------------------------------------------------------------------------------------------- loading

def _read_yaml(path: str) -> Any:
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a raw config mapping (a copy)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key segment in {key!r}")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i >= 1 and parts[0] == "model":  # component shorthand "memae"
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is {child!r}, not a mapping")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def load_raw(path: str | None, overrides: list[str] = ()) -> dict[str, Any]:
    """The raw mapping of ``path`` (the default config when None) with ``overrides`` applied."""
    raw = _read_yaml(path or default_config_path())
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path!r}: expected a mapping of sections, got {type(raw).__name__}")
    return apply_overrides(raw, list(overrides))


def load_config(path: str | None = None, overrides: list[str] = (), registry: Registry | None = None) -> Config:
    """Load, override and validate a config file (the default config when ``path`` is None)."""
    raw = load_raw(path, overrides)
    if path and "name" not in raw:
        raw["name"] = os.path.splitext(os.path.basename(path))[0]  # runs are named after their config file
    return validate(raw, registry)


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
        "train": dataclasses.asdict(cfg.train),
        "test": dataclasses.asdict(cfg.test),
    }
