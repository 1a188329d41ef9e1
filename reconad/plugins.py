"""The plugin manager: reconad's built-in plugin first, then every entry point in group ``reconad`` (by name),
then explicit plugins; hooks are called through pluggy in that order (see reconad/hookspecs.py)."""
from __future__ import annotations

import difflib
import functools
import importlib.metadata
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .registry import KINDS, Registry, RegistryError

__all__ = ["PluginError", "build_registry", "get_plugin_manager", "get_registry", "make_plugin_manager"]

BUILTIN_PLUGIN_NAME = "reconad.builtin"


class PluginError(RegistryError):
    """A plugin that implements a hook reconad does not have (a misspelled hook name)."""


def make_plugin_manager(plugins: Iterable[object] = (), *, builtins: bool = True,
                        entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager: built-ins (registered like any plugin, so they can be overridden), then entry
    points, then ``plugins`` (objects or modules with ``@hookimpl`` functions; handy in tests).

    Every plugin's hooks are checked against the specs (``pm.check_pending()``): an explicit plugin with an
    unknown hook raises ``PluginError``; an entry point with one is skipped with a warning, as one that fails
    to import is. Both name the plugin, the hook and the closest known hook."""
    pm = pluggy.PluginManager("reconad")
    pm.add_hookspecs(hookspecs)
    if builtins:
        from . import builtin

        pm.register(builtin, name=BUILTIN_PLUGIN_NAME)
    if entry_points:
        _load_entry_points(pm)
    for plugin in plugins:  # named by module or class, so messages can say which (pluggy's default is an id)
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register(plugin, name=None if pm.has_plugin(name) else name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(_unknown_hook_message(pm, exc)) from None
    return pm


def _unknown_hook_message(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> str:
    """pluggy's message names the plugin by its repr and not the hook it was meant to be: say both."""
    name = pm.get_name(exc.plugin) or repr(exc.plugin)
    known = [h for h in dir(hookspecs) if h.startswith("reconad_")]
    unknown = [h for h in dir(exc.plugin) if h.startswith("reconad_") and h not in known
               and pm.parse_hookimpl_opts(exc.plugin, h) is not None]
    hook = unknown[0] if unknown else "?"
    close = difflib.get_close_matches(hook, known, n=1)
    return (f"plugin {_plugin_label(pm, name)!r} implements the unknown hook {hook!r}"
            f"{f'; did you mean {close[0]!r}?' if close else ''} (hooks are listed in reconad/hookspecs.py)")


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Every entry point of group ``reconad``, one at a time: a plugin that fails to import, or implements an
    unknown hook, is skipped with a warning naming it and the error, so one broken package does not take the
    whole command down."""
    names = sorted({ep.name for ep in importlib.metadata.entry_points(group="reconad")})
    for name in names:
        try:
            pm.load_setuptools_entrypoints("reconad", name=name)
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            message = _unknown_hook_message(pm, exc)
            pm.unregister(exc.plugin)
            warnings.warn(f"reconad: {message}; the plugin is skipped", RuntimeWarning, stacklevel=3)
        except Exception as exc:  # noqa: BLE001 - whatever the plugin's import raised
            warnings.warn(f"reconad: plugin {name!r} (entry point group 'reconad') failed to load and is "
                          f"skipped: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager (built-ins and installed entry points)."""
    return make_plugin_manager()


def _plugin_label(pm: pluggy.PluginManager, plugin_name: str) -> str:
    for name, dist in pm.list_plugin_distinfo():
        if pm.get_name(name) == plugin_name:
            return f"{dist.project_name}:{plugin_name}" if dist.project_name != plugin_name else plugin_name
    return plugin_name


def build_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Call every registration hook through pluggy, one plugin at a time in registration order (built-ins,
    entry points by name, explicit plugins), so each component is recorded with the plugin that registered
    it and a later plugin's component of the same kind and name overrides an earlier one's."""
    pm = pm or get_plugin_manager()
    registry = Registry()
    plugins = [(name, plugin) for name, plugin in pm.list_name_plugin() if plugin is not None]
    for kind, hook_name in KINDS.items():
        for name, plugin in plugins:
            # pluggy's own way to call a hook on some plugins only; it passes each implementation just the
            # arguments it declares, as a full pm.hook call does
            caller = pm.subset_hook_caller(hook_name, remove_plugins=[p for _, p in plugins if p is not plugin])
            if not caller.get_hookimpls():
                continue
            label = _plugin_label(pm, name)

            def register(name: str, factory: Callable[..., object], *, description: str | None = None,
                         contract_model: Mapping[str, Any] | None = None, _kind: str = kind,
                         _label: str = label) -> None:
                registry.add(_kind, name, factory, _label, description, contract_model)

            caller(register=register)
    return registry


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (built from ``get_plugin_manager()`` once)."""
    return build_registry(get_plugin_manager())
