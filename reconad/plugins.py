"""The plugin manager: reconad's built-in plugin first, then every entry point in group ``reconad``."""
from __future__ import annotations

import functools
import importlib.metadata
import warnings
from typing import Iterable

import pluggy

from . import hookspecs
from .registry import KINDS, Registry

__all__ = ["build_registry", "get_plugin_manager", "get_registry", "make_plugin_manager"]

BUILTIN_PLUGIN_NAME = "reconad.builtin"


def make_plugin_manager(plugins: Iterable[object] = (), *, builtins: bool = True,
                        entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager: built-ins (registered like any plugin, so they can be overridden), then entry
    points, then ``plugins`` (objects or modules with ``@hookimpl`` functions; handy in tests)."""
    pm = pluggy.PluginManager("reconad")
    pm.add_hookspecs(hookspecs)
    if builtins:
        from . import builtin

        pm.register(builtin, name=BUILTIN_PLUGIN_NAME)
    if entry_points:
        _load_entry_points(pm)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Every entry point of group ``reconad``, one at a time: a plugin that fails to import is skipped with a
    warning naming it and the error, so one broken package does not take the whole command down."""
    names = sorted({ep.name for ep in importlib.metadata.entry_points(group="reconad")})
    for name in names:
        try:
            pm.load_setuptools_entrypoints("reconad", name=name)
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
    """Call every registration hook of every plugin, recording which plugin provided each component."""
    pm = pm or get_plugin_manager()
    registry = Registry()
    for kind, hook_name in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order (pluggy calls them in reverse)
            label = _plugin_label(pm, impl.plugin_name)

            def register(name, factory, *, description=None, _kind=kind, _label=label):
                registry.add(_kind, name, factory, _label, description)

            impl.function(register=register)
    return registry


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (built from ``get_plugin_manager()`` once)."""
    return build_registry(get_plugin_manager())
