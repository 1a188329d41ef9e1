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

from reconad import _hookdocs, hookspecs
from reconad.config import validate
from reconad import hookimpl
from reconad.plugins import PluginError, build_registry, make_plugin_manager
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


def test_the_hooks_part_of_docs_plugins_md_is_generated_from_the_hookspecs():
    doc = open(os.path.join(ROOT, "docs", "plugins.md"), encoding="utf-8").read()
    assert doc.count(_hookdocs.BEGIN) == 1 and doc.count(_hookdocs.END) == 1
    part = _hookdocs.BEGIN + doc.split(_hookdocs.BEGIN, 1)[1].split(_hookdocs.END, 1)[0] + _hookdocs.END + "\n"
    assert part == _hookdocs.markdown(), ("docs/plugins.md differs from reconad/hookspecs.py's docstrings: run "
                                          "python -m reconad._hookdocs --update docs/plugins.md")
    for hook in HOOKS:  # and so each hook's docstring, in Markdown, is on the page under its heading
        section = doc.split(f"### `{hook}`", 1)[1].split("\n### ", 1)[0]
        assert _hookdocs.hook_markdown(hook) in section, hook


def test_docstring_conventions_become_markdown():
    doc = """Register things.

        A ``thing`` is a ``(B, D)`` tensor. Example::

            @hookimpl
            def hook(register):

                register("x", X)  # ``kept``
        After the example.
        """
    assert _hookdocs._markdown(doc) == ("Register things.\n\nA `thing` is a `(B, D)` tensor. Example:\n\n"
                                        "```python\n@hookimpl\ndef hook(register):\n\n"
                                        "    register(\"x\", X)  # ``kept``\n```\n\nAfter the example.")


def test_hookimpl_is_importable_from_reconad():
    import reconad

    assert reconad.hookimpl is hookspecs.hookimpl and "hookimpl" in reconad.__all__


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
    assert spec.plugin == "TinyPlugin"  # explicit plugins are named by their class (or module)
    only = build_registry(make_plugin_manager([TinyPlugin()], builtins=False, entry_points=False))
    assert only.names("encoder") == ["tiny"] and only.names("decoder") == []


class Clash:
    @hookimpl
    def reconad_register_encoders(self, register):
        register("conv", Tiny)


def test_a_clash_is_one_warning_naming_both_plugins_and_the_later_one_wins():
    pm = make_plugin_manager(entry_points=False)
    pm.register(Clash(), name="clashing-plugin")
    with pytest.warns(RuntimeWarning) as caught:
        reg = build_registry(pm)
    clashes = [str(w.message) for w in caught if "registered by two plugins" in str(w.message)]
    assert clashes == ["reconad: encoder 'conv' is registered by two plugins, 'reconad.builtin' and "
                       "'clashing-plugin'; the later one, 'clashing-plugin', is used (uninstall one or rename "
                       "the component to keep both)"]
    spec = reg.get("encoder", "conv")
    assert spec.factory is Tiny and spec.plugin == "clashing-plugin"
    assert [(lo.plugin, win.plugin) for lo, win in reg.overridden] == [("reconad.builtin", "clashing-plugin")]
    assert reg.get("decoder", "conv").plugin == "reconad.builtin"  # only the clashing name changes hands


def test_of_two_explicit_plugins_the_later_registered_wins():
    class Other:
        @hookimpl
        def reconad_register_encoders(self, register):
            register("tiny", nn.Identity)

    for order, winner in (((TinyPlugin(), Other()), nn.Identity), ((Other(), TinyPlugin()), Tiny)):
        with pytest.warns(RuntimeWarning, match="encoder 'tiny' is registered by two plugins"):
            reg = build_registry(make_plugin_manager(order, builtins=False, entry_points=False))
        assert reg.get("encoder", "tiny").factory is winner


def test_one_plugin_registering_a_name_twice_is_an_error():
    class Twice:
        @hookimpl
        def reconad_register_encoders(self, register):
            register("tiny", Tiny)
            register("tiny", nn.Identity)

    pm = make_plugin_manager(builtins=False, entry_points=False)
    pm.register(Twice(), name="twice")
    with pytest.raises(RegistryError, match=r"plugin 'twice' registers encoder 'tiny' twice"):
        build_registry(pm)


def test_hooks_are_called_through_pluggy_once_per_plugin_in_registration_order():
    seen: list[str] = []

    class NoArguments:
        @hookimpl
        def reconad_register_encoders(self):  # declares no argument: pluggy passes it none
            seen.append("called")

    calls: list[tuple[str, list[str]]] = []
    pm = make_plugin_manager(entry_points=False)
    pm.register(TinyPlugin(), name="tiny-plugin")
    pm.register(NoArguments(), name="no-arguments")
    pm.add_hookcall_monitoring(lambda hook, impls, kwargs: calls.append((hook, [i.plugin_name for i in impls])),
                               lambda *args: None)
    reg = build_registry(pm)
    encoders = [impls for hook, impls in calls if hook == "reconad_register_encoders"]
    assert encoders == [["reconad.builtin"], ["tiny-plugin"], ["no-arguments"]]
    assert {hook for hook, _ in calls} == set(KINDS.values())
    assert seen == ["called"] and reg.names("encoder") == ["conv", "tiny"]


def test_a_misspelled_hook_is_an_error_naming_the_plugin():
    class Misspelled:
        @hookimpl
        def reconad_register_encoder(self, register):
            register("tiny", Tiny)

    with pytest.raises(PluginError, match=r"plugin 'Misspelled' implements the unknown hook 'reconad_register_encoder'; "
                                          r"did you mean 'reconad_register_encoders'\?"):
        make_plugin_manager([Misspelled()], entry_points=False)


def _fake_distribution(tmp_path, dist: str, entry: str, module: str, source: str | None) -> None:
    """An installed-looking distribution on ``tmp_path``: a dist-info with one ``reconad`` entry point."""
    info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[reconad]\n{entry} = {module}\n")
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)


TYPO_PLUGIN = '''from reconad import hookimpl


@hookimpl
def reconad_register_scorer(register):
    pass
'''

CLASH_PLUGIN = '''from torch import nn

from reconad import hookimpl


class Stride(nn.Module):
    """A replacement conv encoder."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, 2, 1)

    def forward(self, x):
        return self.conv(x)


@hookimpl
def reconad_register_encoders(register):
    register("conv", Stride)
'''


def test_an_installed_plugin_with_a_misspelled_hook_is_skipped_with_a_warning(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "reconad-typo-example", "typo_example", "reconad_typo_example_xyz", TYPO_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"plugin 'reconad-typo-example:typo_example' implements the unknown "
                                            r"hook 'reconad_register_scorer'; did you mean "
                                            r"'reconad_register_scorers'\?.*skipped"):
        pm = make_plugin_manager()
    assert pm.get_plugin("typo_example") is None
    assert ("encoder", "conv") in {(s.kind, s.name) for s in build_registry(pm)}


def test_reconad_plugins_lists_the_winner_of_a_clash_and_its_plugin(tmp_path):
    _fake_distribution(tmp_path, "reconad-clash-example", "clash_example", "reconad_clash_example_xyz",
                       CLASH_PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "reconad.cli", "plugins", "--json"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert ("encoder 'conv' is registered by two plugins, 'reconad.builtin' and "
            "'reconad-clash-example:clash_example'") in out.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)}
    conv = rows[("encoder", "conv")]
    assert conv["plugin"] == "reconad-clash-example:clash_example"
    assert conv["description"] == "A replacement conv encoder." and conv["overrides"] == ["reconad.builtin"]
    assert rows[("decoder", "conv")]["plugin"] == "reconad.builtin" and rows[("decoder", "conv")]["overrides"] == []
    text = subprocess.run([sys.executable, "-m", "reconad.cli", "plugins"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert text.returncode == 0, text.stderr
    line = next(ln for ln in text.stdout.splitlines() if ln.split()[:1] == ["conv"])  # encoders come first
    assert "reconad-clash-example:clash_example" in line and line.endswith("(overrides reconad.builtin)")


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
    _fake_distribution(tmp_path, "reconad-broken-example", "broken_example", "reconad_no_such_module_xyz.plugin",
                       None)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"plugin 'broken_example' .* failed to load .*ModuleNotFoundError"):
        pm = make_plugin_manager()
    reg = build_registry(pm)
    assert ("encoder", "conv") in {(s.kind, s.name) for s in reg}


def test_contract_model_is_given_at_registration_and_checked():
    class WithNeighbours:
        @hookimpl
        def reconad_register_encoders(self, register):
            register("tiny", Tiny, contract_model={"memory": None})

    reg = build_registry(make_plugin_manager([WithNeighbours()], builtins=False, entry_points=False))
    assert reg.get("encoder", "tiny").contract_model == {"memory": None}
    assert build_registry(make_plugin_manager(entry_points=False)).get("encoder", "conv").contract_model is None

    class Wrong:
        @hookimpl
        def reconad_register_encoders(self, register):
            register("tiny", Tiny, contract_model="oled")

    with pytest.raises(RegistryError, match=r"plugin 'Wrong' registered encoder 'tiny' with contract_model='oled'; "
                                            r"expected a partial model: mapping"):
        build_registry(make_plugin_manager([Wrong()], builtins=False, entry_points=False))


def test_reconad_plugins_keeps_its_columns_aligned_for_long_names():
    from reconad.cli import component_lines

    reg = build_registry(make_plugin_manager(entry_points=False))
    long_plugin = "reconad-a-rather-long-distribution-name:with_a_long_entry_point"
    reg.add("encoder", "an_encoder_with_a_very_long_component_name", nn.Identity, long_plugin, "Long one.")
    lines = component_lines(reg)
    assert sum(ln.startswith("  ") for ln in lines) == len(list(reg))
    plugin_cols, desc_cols, kind = set(), set(), None
    for ln in lines:
        if not ln.startswith("  "):
            kind = next(k for k in KINDS if ln in (f"{k}s:", "memories:") and (k == "memory") == (ln == "memories:"))
            continue
        name, plugin = ln.split()[:2]
        spec = reg.get(kind, name)
        assert spec.plugin == plugin, ln
        plugin_cols.add(ln.index(plugin, len(name) + 2))     # where the plugin column starts
        if spec.description:
            desc_cols.add(ln.index(spec.description, max(plugin_cols) + len(plugin)))
    assert len(plugin_cols) == 1 and len(desc_cols) == 1, (plugin_cols, desc_cols)
    assert min(plugin_cols) > len("an_encoder_with_a_very_long_component_name") + 2
