"""Config schemas on pydantic v2: a mapping's keys and types (a component factory's signature, a config
section's dataclass) become a strict ``TypedDict`` validated by a ``TypeAdapter``, and pydantic's errors
become reconad's one-line errors (``model.memory.slots: expected int, got 'many'``).

A component's schema is built once, when it is registered (``registry.ComponentSpec.schema``); config
validation and model building both read it instead of inspecting signatures again.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable, Literal, Union

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Strict, TypeAdapter, ValidationError
from typing_extensions import NotRequired, Required, TypedDict

__all__ = ["CONTEXT_PARAMS", "ParamSchema", "type_name", "unknown_key"]

# Filled in by reconad when a factory declares them; never set from a config.
CONTEXT_PARAMS = frozenset({"in_channels", "out_channels", "image_size", "in_shape"})

# Strict: no silent "3" -> 3 or 1 -> true. extra="forbid": unknown keys are errors (unless a factory takes
# **kwargs). Arbitrary classes in hints are checked with isinstance.
_CONFIG = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)


def _float_text(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: accept it as the float it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# A config float: ints widen (strict mode allows that), YAML-1.1 number strings parse.
_Float = Annotated[float, BeforeValidator(_float_text)]


def _yaml_type(tp: Any) -> Any:
    """The pydantic type validating what YAML gives for a hint ``tp`` (floats as above, tuples from lists
    and back to lists, since configs are YAML and round-trip through ``yaml.safe_dump``)."""
    if tp is inspect.Parameter.empty:
        return Any
    if tp is float:
        return _Float
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return Union[tuple(_yaml_type(a) for a in args)]  # noqa: UP007 - built from a tuple
    if origin is list and args:
        return list[_yaml_type(args[0])]
    if origin is tuple or tp is tuple:
        inner = tuple[tuple(_yaml_type(a) if a is not Ellipsis else a for a in args)] if args else tuple
        return Annotated[inner, Strict(False), AfterValidator(list)]
    return tp


def _nullable(tp: Any) -> bool:
    if tp is Any or tp is None or tp is type(None):
        return True
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def type_name(tp: Any) -> str:
    """A type hint as a config reader says it: ``int | null``, ``list of float``, ``'a' | 'b'``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def unknown_key(key: str, known: Iterable[str], path: str) -> str:
    """``path: unknown key; did you mean 'x'? (known keys: ...)``: every valid key of the section, so a key of
    another section or dataset is found without reading the docs."""
    known = sorted(set(known))
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{path}: unknown key{hint} (known keys: {', '.join(known)})"


def _expected(tp: Any, value: Any, path: str) -> str:
    """The one-line error for ``value`` not matching ``tp`` at ``path``."""
    core = [a for a in typing.get_args(tp) if a is not type(None)] if _nullable(tp) and tp is not Any else [tp]
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{path}: expected one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}"
    if tp is bool:
        return f"{path}: expected true or false, got {value!r}"
    if tp is dict or typing.get_origin(tp) is dict or core == [dict]:
        return f"{path}: expected a mapping, got {value!r}"
    return f"{path}: expected {type_name(tp)}, got {value!r}"


@dataclass(frozen=True)
class ParamSchema:
    """The keys a config may set for one mapping: a component's parameters (without the context reconad
    fills in) or a config section's fields."""

    hints: dict[str, Any]                  # key -> its type hint, as declared (Any where none is given)
    required: frozenset[str]               # keys without a default
    context: frozenset[str] = frozenset()  # the CONTEXT_PARAMS a factory takes (filled in by reconad)
    var_kw: bool = False                   # a factory taking **kwargs accepts (unchecked) extra keys
    adapter: TypeAdapter | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.adapter is None:
            object.__setattr__(self, "adapter", _adapter(self.hints, self.required, self.var_kw))

    @classmethod
    def of_factory(cls, factory: Callable[..., object], skip: Iterable[str] = ()) -> ParamSchema:
        """The schema of a factory's keyword parameters; ``skip`` names parameters reconad passes itself
        (a dataset's ``settings``)."""
        try:
            sig = inspect.signature(factory)
        except (TypeError, ValueError):  # a builtin without a signature: accept anything
            return cls({}, frozenset(), var_kw=True)
        target = factory.__init__ if inspect.isclass(factory) else factory
        try:
            hints = typing.get_type_hints(target)
        except Exception:  # noqa: BLE001 - unresolvable hints: no type checking, keys still checked
            hints = {}
        params, required, context, var_kw = {}, set(), set(), False
        for name, p in sig.parameters.items():
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or name in skip:
                continue
            elif name in CONTEXT_PARAMS:
                context.add(name)
            else:
                params[name] = hints.get(name, Any)
                if p.default is p.empty:
                    required.add(name)
        return cls(params, frozenset(required), frozenset(context), var_kw)

    @classmethod
    def of_dataclass(cls, dc: type, extra: ParamSchema | None = None) -> ParamSchema:
        """The schema of a config section's dataclass, plus ``extra``'s keys (a dataset's own options)."""
        hints = typing.get_type_hints(dc)
        fields = dataclasses.fields(dc)
        required = {f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        own = {f.name: hints[f.name] for f in fields}
        if extra is None:
            return cls(own, frozenset(required))
        return cls({**own, **extra.hints}, frozenset(required | extra.required), extra.context, extra.var_kw)

    def validate(self, raw: Any, path: str, errors: list[str], *, also_known: Iterable[str] = (),
                 unknown_note: Callable[[str], str] | None = None) -> dict[str, Any]:
        """The keys of ``raw`` checked and converted (floats widened, tuples as lists); one line per problem
        is appended to ``errors``. A null for a key that takes no null means its default (``--set key=null``
        resets a key). ``also_known``: keys of the same mapping the caller handles (a component's ``name``),
        listed with the known keys; ``unknown_note(key)`` may add a sentence to an unknown key's line."""
        if not isinstance(raw, dict):
            errors.append(f"{path or '(top level)'}: expected a mapping, got {raw!r}")
            return {}
        raw = {k: v for k, v in raw.items()
               if not (v is None and k in self.hints and k not in self.required and not _nullable(self.hints[k]))}
        for key in [k for k in raw if k in CONTEXT_PARAMS and k not in self.hints]:
            errors.append(f"{_join(path, key)}: is filled in by reconad from the data and the other components; "
                          "remove it")
            raw.pop(key)
        try:
            return dict(self.adapter.validate_python(raw))
        except ValidationError as exc:
            errors.extend(self._lines(exc, raw, path, [*self.hints, *also_known], unknown_note))
            return {}

    def _lines(self, exc: ValidationError, raw: dict[str, Any], path: str, known: list[str],
               unknown_note: Callable[[str], str] | None) -> list[str]:
        """pydantic's errors as reconad's lines: one per YAML path, the type expected as the config says it."""
        lines: dict[str, str] = {}
        for err in exc.errors(include_url=False):
            loc = err["loc"]
            key = str(loc[0]) if loc else ""
            where = _join(path, key)
            if err["type"] == "extra_forbidden":
                note = unknown_note(key) if unknown_note else ""
                lines.setdefault(where, unknown_key(key, known, where) + (f"; {note}" if note else ""))
                continue
            if err["type"] == "missing" and len(loc) == 1:
                lines.setdefault(where, f"{where}: missing required key")
                continue
            tp, value = self.hints.get(key, Any), raw.get(key)
            for part in loc[1:]:  # descend into list items until a union (reported as a whole)
                inner = [a for a in typing.get_args(tp) if a is not type(None)] if _nullable(tp) else [tp]
                if not isinstance(part, int) or len(inner) != 1 or typing.get_origin(inner[0]) not in (list, tuple) \
                        or not isinstance(value, (list, tuple)) or part >= len(value):
                    break
                args = typing.get_args(inner[0])
                tp = args[0] if typing.get_origin(inner[0]) is list or (len(args) == 2 and args[1] is Ellipsis) \
                    else args[min(part, len(args) - 1)]
                value, where = value[part], f"{where}[{part}]"
            if where in lines:
                continue
            args = typing.get_args(tp)
            if typing.get_origin(tp) is tuple and args and args[-1] is not Ellipsis \
                    and isinstance(value, (list, tuple)) and len(value) != len(args):
                lines[where] = f"{where}: expected {len(args)} items, got {len(value)}"
            else:
                lines[where] = _expected(tp, value, where)
        return list(lines.values())


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else path or key


def _adapter(hints: dict[str, Any], required: frozenset[str], var_kw: bool) -> TypeAdapter:
    """A strict TypedDict adapter for these keys; a hint pydantic cannot check becomes Any (not checked)."""
    def build(types_: dict[str, Any]) -> TypeAdapter:
        td = TypedDict("Params", {k: (Required if k in required else NotRequired)[t] for k, t in types_.items()})
        td.__pydantic_config__ = {**_CONFIG, "extra": "allow" if var_kw else "forbid"}
        return TypeAdapter(td)

    types_ = {k: _yaml_type(t) for k, t in hints.items()}
    try:
        return build(types_)
    except Exception:  # noqa: BLE001 - find the hints pydantic cannot handle, check the others
        for k, t in types_.items():
            try:
                TypeAdapter(t, config=_CONFIG)
            except Exception:  # noqa: BLE001
                types_[k] = Any
        return build(types_)
