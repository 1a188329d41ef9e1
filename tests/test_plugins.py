"""The plugin system: hooks documented, built-ins registered like any plugin, helpful registry errors,
and a third-party package installed with pip and found through its entry point."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
from torch import nn

from reconad import hookspecs
from reconad.config import validate
from reconad.hookspecs import hookimpl
from reconad.plugins import build_registry, make_plugin_manager
from reconad.registry import KINDS, RegistryError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKS = sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("reconad_"))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    doc = open(os.path.join(ROOT, "docs", "plugins.md"), encoding="utf-8").read()
    assert f"### `{hook}`" in doc, f"docs/plugins.md lacks a section for hook {hook}"
    section = doc.split(f"### `{hook}`", 1)[1].split("\n### ", 1)[0]
    assert "```python" in section, f"docs/plugins.md: hook {hook} needs an example"
    assert getattr(hookspecs, hook).__doc__, f"hook {hook} needs a docstring"


def test_every_registration_hook_is_a_kind():
    assert sorted(KINDS.values()) == sorted(h for h in HOOKS if h != "reconad_register_commands")


class Tiny(nn.Module):
    """A tiny encoder for tests."""

    def __init__(self, in_channels: int, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class TinyPlugin:
    @hookimpl
    def reconad_register_encoders(self, register):
        register("tiny", Tiny)


def test_builtins_are_a_plugin_and_a_fresh_manager_takes_objects():
    reg = build_registry(make_plugin_manager([TinyPlugin()], entry_points=False))
    assert reg.get("encoder", "conv").plugin == "reconad.builtin"
    spec = reg.get("encoder", "tiny")
    assert spec.description == "A tiny encoder for tests."
    assert spec.plugin != "reconad.builtin"
    only = build_registry(make_plugin_manager([TinyPlugin()], builtins=False, entry_points=False))
    assert only.names("encoder") == ["tiny"] and only.names("decoder") == []


def test_duplicate_names_name_both_plugins():
    class Clash:
        @hookimpl
        def reconad_register_encoders(self, register):
            register("conv", Tiny)

    pm = make_plugin_manager(entry_points=False)
    pm.register(Clash(), name="clashing-plugin")
    with pytest.raises(RegistryError, match=r"encoder 'conv' is registered by two plugins: 'reconad.builtin' and "
                                            r"'clashing-plugin'"):
        build_registry(pm)


def test_unknown_names_list_available_and_suggest():
    reg = build_registry(make_plugin_manager(entry_points=False))
    with pytest.raises(RegistryError, match=r"unknown memory 'mamae'; available: memae; did you mean 'memae'\?"):
        reg.get("memory", "mamae")


def test_component_params_are_validated_from_signatures():
    reg = build_registry(make_plugin_manager([TinyPlugin()], entry_points=False))
    raw = {"data": {"name": "textures", "category": "brick"},
           "model": {"encoder": {"name": "tiny", "width": "wide"}, "decoder": "conv"}}
    with pytest.raises(ValueError, match="model.encoder.width: expected int, got 'wide'"):
        validate(raw, reg)


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """pip-install tests/thirdparty_plugin (its own pyproject.toml and entry point), uninstall afterwards."""
    pkg = os.path.join(ROOT, "tests", "thirdparty_plugin")
    work = tmp_path_factory.mktemp("pkg")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", pkg]
    subprocess.run(pip, check=True, cwd=work)
    yield
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", "reconad-thirdparty-example"],
                   check=True)


def _reconad(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "reconad.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_pip_installed_plugin_is_listed_and_usable(third_party, tmp_path):
    out = _reconad("plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)}
    assert ("scorer", "max_abs_error") in rows
    assert "reconad-thirdparty-example" in rows[("scorer", "max_abs_error")]["plugin"]
    listing = _reconad("plugins").stdout
    assert "max_abs_error" in listing
    cfg = tmp_path / "third.yaml"
    cfg.write_text(
        "data: {name: textures, category: brick, image_size: 16, patch_size: 32, patch_stride: 64}\n"
        "model:\n  encoder: {name: conv, channels: [4, 8]}\n  decoder: conv\n"
        "  scorers: [{name: max_abs_error}, l2]\n"
        "train: {epochs: 1, batch_size: 16, progress: false, device: cpu}\n")
    run = _reconad("run", str(cfg), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["scorers"]) == {"max_abs_error", "l2"}
    header = (tmp_path / "out" / "scores.csv").read_text().splitlines()[0]
    assert header.startswith("path,score,label") and "score_l2" in header


def test_a_plugin_that_fails_to_import_is_skipped_with_a_warning(tmp_path, monkeypatch):
    info = tmp_path / "reconad_broken_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: reconad-broken-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[reconad]\nbroken_example = reconad_no_such_module_xyz.plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"plugin 'broken_example' .* failed to load .*ModuleNotFoundError"):
        pm = make_plugin_manager()
    reg = build_registry(pm)
    assert ("encoder", "conv") in {(s.kind, s.name) for s in reg}
