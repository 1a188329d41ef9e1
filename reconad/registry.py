"""The component registry: every registered component by kind, name and the plugin that provides it.

The same kind and name registered by two plugins: the later registration wins (plugins register in the
plugin manager's order: built-ins, entry points by name, explicit plugins) and one warning names both.
"""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ._schema import ParamSchema

__all__ = ["KINDS", "ComponentSpec", "Registry", "RegistryError"]

# kind -> the hook that registers it
KINDS: dict[str, str] = {
    "encoder": "reconad_register_encoders",
    "memory": "reconad_register_memories",
    "decoder": "reconad_register_decoders",
    "masker": "reconad_register_maskers",
    "scorer": "reconad_register_scorers",
    "objective": "reconad_register_objectives",
    "dataset": "reconad_register_datasets",
    "logger": "reconad_register_loggers",
    "evaluator": "reconad_register_evaluators",
}


class RegistryError(LookupError):
    """An invalid registration or an unknown component name."""


@dataclass(frozen=True)
class ComponentSpec:
    kind: str
    name: str
    factory: Callable[..., object]
    plugin: str
    description: str
    contract_model: Mapping[str, Any] | None = None  # test-only neighbours for tests/test_contract.py
    # the config keys the factory takes, from its signature: built once, here (a dataset's ``settings`` is
    # reconad's, not a config key)
    schema: ParamSchema = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.schema is None:
            skip = ("settings",) if self.kind == "dataset" else ()
            object.__setattr__(self, "schema", ParamSchema.of_factory(self.factory, skip))

    def build(self, **kwargs: object) -> object:
        return self.factory(**kwargs)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}
        self.overridden: list[tuple[ComponentSpec, ComponentSpec]] = []  # (loser, winner) of each clash

    def add(self, kind: str, name: str, factory: Callable[..., object], plugin: str,
            description: str | None = None, contract_model: Mapping[str, Any] | None = None) -> ComponentSpec:
        if kind not in self._specs:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        if not isinstance(name, str) or not name or not callable(factory):
            raise RegistryError(f"plugin {plugin!r} registered a {kind} with an invalid name or factory: "
                                f"register(name: str, factory: callable), got {name!r}, {factory!r}")
        if contract_model is not None and not (isinstance(contract_model, Mapping)
                                               and all(isinstance(k, str) for k in contract_model)):
            raise RegistryError(f"plugin {plugin!r} registered {kind} {name!r} with contract_model="
                                f"{contract_model!r}; expected a partial model: mapping such as "
                                f"{{'masker': 'oled'}}")
        spec = ComponentSpec(kind, name, factory, plugin, description or _first_line(factory.__doc__),
                             dict(contract_model) if contract_model is not None else None)
        have = self._specs[kind].get(name)
        if have is not None:
            if have.plugin == plugin:
                raise RegistryError(f"plugin {plugin!r} registers {kind} {name!r} twice; give each component "
                                    f"its own name")
            warnings.warn(f"reconad: {kind} {name!r} is registered by two plugins, {have.plugin!r} and "
                          f"{plugin!r}; the later one, {plugin!r}, is used (uninstall one or rename the "
                          f"component to keep both)", RuntimeWarning, stacklevel=3)
            self.overridden.append((have, spec))
        self._specs[kind][name] = spec
        return spec

    def get(self, kind: str, name: str) -> ComponentSpec:
        if kind not in self._specs:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        try:
            return self._specs[kind][name]
        except KeyError:
            raise RegistryError(self.unknown_message(kind, name)) from None

    def unknown_message(self, kind: str, name: object) -> str:
        names = sorted(self._specs[kind])
        msg = f"unknown {kind} {name!r}; available: {', '.join(names) or '(none registered)'}"
        close = difflib.get_close_matches(str(name), names, n=1)
        return msg + (f"; did you mean {close[0]!r}?" if close else "")

    def names(self, kind: str) -> list[str]:
        return sorted(self._specs[kind])

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._specs.get(kind, {})

    def __iter__(self) -> Iterator[ComponentSpec]:
        for kind in KINDS:
            yield from (self._specs[kind][n] for n in sorted(self._specs[kind]))
