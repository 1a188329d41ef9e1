"""Config validation: one error naming every bad YAML path, before anything is built or trained."""
from __future__ import annotations

import dataclasses
import inspect
import os

import pytest
import yaml

from reconad._schema import CONTEXT_PARAMS, ParamSchema
from reconad import config as config_module  # its TestConfig imported here would be collected as a test class
from reconad.config import (ConfigError, TrainConfig, apply_overrides, default_config_path, load_config, load_raw,
                            to_dict, validate)
from reconad.data import DataSettings
from reconad.model import build_model

BASE = {
    "data": {"name": "textures", "category": "brick", "image_size": 32},
    "model": {"encoder": {"name": "conv", "channels": [8, 16]}, "memory": {"name": "memae", "slots": 10},
              "decoder": "conv"},
    "train": {"epochs": 1},
}


def _error(raw) -> str:
    with pytest.raises(ConfigError) as info:
        validate(raw)
    return str(info.value)


def test_valid_config_resolves_defaults_and_shorthands():
    cfg = validate(BASE)
    assert cfg.model.decoder.name == "conv" and cfg.model.decoder.params == {}
    assert cfg.model.memory.params == {"slots": 10}
    assert [s.name for s in cfg.model.scorers] == ["l2"]
    assert cfg.model.objective.name == "reconstruction"
    assert cfg.train.epochs == 1 and cfg.train.device == "auto"
    # the resolved config round-trips through YAML to the same config
    again = validate(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert to_dict(again) == to_dict(cfg)


def test_wrong_type_names_the_yaml_path():
    raw = apply_overrides(BASE, ["model.memory.slots=many"])
    assert "model.memory.slots: expected int, got 'many'" in _error(raw)


def test_unknown_keys_suggest_the_closest():
    msg = _error(apply_overrides(BASE, ["train.epoch=3", "model.memroy=null"]))
    assert "train.epoch: unknown key; did you mean 'epochs'?" in msg
    assert "model.memroy: unknown key; did you mean 'memory'?" in msg


def test_unknown_component_lists_names_and_suggests():
    msg = _error(apply_overrides(BASE, ["model.encoder.name=cnov"]))
    assert "model.encoder.name: unknown encoder 'cnov'; available: conv" in msg
    assert "did you mean 'conv'?" in msg


def test_missing_fields_and_every_problem_in_one_error():
    raw = {"model": {"encoder": "conv"}, "train": {"lr": "fast", "device": "gpu"}}
    msg = _error(raw)
    for expected in ("data: missing required key", "model.decoder: missing required key",
                     "train.lr: expected float, got 'fast'", "train.device: expected auto, cpu, cuda or cuda:N"):
        assert expected in msg


def test_dataset_options_are_validated_from_the_factory_signature():
    cfg = validate(apply_overrides(BASE, ["data.anomaly_fraction=0.25"]))
    assert cfg.data_options == {"anomaly_fraction": 0.25}
    assert "data.anomaly_fracton: unknown key; did you mean 'anomaly_fraction'?" in _error(
        apply_overrides(BASE, ["data.anomaly_fracton=0.25"]))


def test_context_parameters_cannot_be_set():
    assert "model.decoder.out_channels: is filled in by reconad" in _error(
        apply_overrides(BASE, ["model.decoder.out_channels=3"]))


def test_literal_choices_and_floats_written_as_strings():
    assert "model.memory.similarity: expected one of 'cosine', 'dot', got 'cosin'; did you mean 'cosine'?" in _error(
        apply_overrides(BASE, ["model.memory.similarity=cosin"]))
    assert validate(apply_overrides(BASE, ["train.lr=1e-3"])).train.lr == pytest.approx(1e-3)


def test_overrides_parse_yaml_values_and_reject_malformed_items():
    raw = apply_overrides(BASE, ["train.epochs=7", "model.masker=random_block", "seed=3"])
    cfg = validate(raw)
    assert (cfg.train.epochs, cfg.model.masker.name, cfg.seed, cfg.data.seed) == (7, "random_block", 3, 3)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(BASE, ["train.epochs"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides(BASE, ["train.epochs.x=1"])


def test_overrides_reach_list_items_by_index():
    base = {**BASE, "model": {**BASE["model"], "scorers": [{"name": "l2"}, {"name": "ssim", "window": 7}]}}
    raw = apply_overrides(base, ["model.scorers.1.window=11", "model.scorers.0=ssim"])
    assert raw["model"]["scorers"] == ["ssim", {"name": "ssim", "window": 11}]
    assert base["model"]["scorers"][1]["window"] == 7          # the input is left alone
    for bad in ("model.scorers.2.window=3", "model.scorers.first=l2"):
        with pytest.raises(ConfigError, match=r"model\.scorers is a list of 2 item\(s\); expected an index 0\.\.1"):
            apply_overrides(base, [bad])


def test_files_are_read_with_safe_load_only(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("data: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_default_config_is_valid_and_named_after_its_file(tmp_path):
    cfg = load_config(None)
    assert cfg.data.name == "textures"
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(BASE))
    assert load_config(str(p)).name == "mine"


def test_errors_name_list_items_unions_and_top_level_keys():
    msg = _error(apply_overrides(BASE, ["train.betas=[0.9, fast]", "train.steps=many", "train.amp=3",
                                        "train.epochs=2.5", "model.encoder.channels=5", "seed=x", "trian=1"]))
    for expected in ("train.betas[1]: expected float, got 'fast'", "train.steps: expected int | null, got 'many'",
                     "train.amp: expected true or false, got 3", "train.epochs: expected int, got 2.5",
                     "model.encoder.channels: expected list of int, got 5", "seed: expected int, got 'x'",
                     "trian: unknown key; did you mean 'train'?"):
        assert expected in msg
    assert len(msg.splitlines()) == 1 + 7  # the heading, then one line per problem
    # strict: a bool is not an int, a number is not a string
    assert "train.batch_size: expected int, got True" in _error(apply_overrides(BASE, ["train.batch_size=true"]))
    assert "name: expected str, got 3" in _error(apply_overrides(BASE, ["name=3"]))


def test_dataset_unknown_key_lists_every_key_of_the_section():
    raw = {**BASE, "data": {"name": "folder", "root": "/nowhere", "patch_size": 8}}
    line = next(x for x in _error(raw).splitlines() if "data.patch_size" in x)
    assert line.strip().startswith("data.patch_size: unknown key")
    for key in (f.name for f in dataclasses.fields(DataSettings)):   # folder has no options of its own
        assert key in line.split("known keys:")[1]
    assert "'patch_size' is an option of dataset 'textures'" in line
    # a dataset's own options are listed beside the core keys
    line = _error(apply_overrides(BASE, ["data.patch_sise=8"])).splitlines()[1]
    assert "did you mean 'patch_size'?" in line and "anomaly_fraction" in line and "image_size" in line


def test_null_resets_a_key_to_its_default_where_null_is_not_a_value():
    cfg = validate(apply_overrides(BASE, ["train.epochs=null", "model.memory.slots=null", "data.category=null",
                                          "test.batch_size=null"]))
    assert cfg.train.epochs == TrainConfig().epochs and cfg.test.batch_size == config_module.TestConfig().batch_size
    assert cfg.model.memory.params == {} and cfg.data.category is None
    assert validate(apply_overrides(BASE, ["model.memory=null"])).model.memory is None
    # where null is a value (int | None), it is kept, not replaced by the default

    def factory(width: int | None = 5, depth: int = 3) -> None:
        pass

    errors: list[str] = []
    assert ParamSchema.of_factory(factory).validate({"width": None, "depth": None}, "p", errors) == {"width": None}
    assert errors == []


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_duplicate_yaml_keys_are_an_error_naming_the_key_and_both_lines(tmp_path):
    path = _write(tmp_path, "dup.yaml", "train:\n  epochs: 1\ndata: {name: textures}\ntrain:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml'?: duplicate key 'train' at lines 1 and 4"):
        load_config(path)
    nested = _write(tmp_path, "nested.yaml", "data:\n  name: textures\n  category: brick\n  category: grass\n")
    with pytest.raises(ConfigError, match="duplicate key 'category' at lines 3 and 4"):
        load_raw(nested)
    # YAML merge keys may still be overridden: that is not a duplicate
    merged = _write(tmp_path, "merge.yaml", "x: &t {epochs: 1, lr: 0.5}\ntrain:\n  <<: *t\n  epochs: 2\n")
    assert load_raw(merged)["train"] == {"epochs": 2, "lr": 0.5}


def test_a_file_parsed_once_is_read_again_when_it_changes_and_copies_do_not_leak(tmp_path):
    path = _write(tmp_path, "c.yaml", "train:\n  epochs: 1\n  betas: [0.5, 0.9]\ndata: {name: textures}\n")
    first = config_module._read_mapping(path)          # what load_config layers, uncopied by overrides
    first["train"]["betas"].append(0.1)                 # a caller changing what it got
    assert config_module._read_mapping(path)["train"] == {"epochs": 1, "betas": [0.5, 0.9]}
    _write(tmp_path, "c.yaml", "train:\n  epochs: 2\n  betas: [0.5, 0.9]\ndata: {name: textures}\n")   # same size
    assert load_raw(path)["train"]["epochs"] == 2
    raw = apply_overrides(BASE, ["train.betas=[0.1, 0.2]"])
    raw["train"]["betas"].append(0.3)
    assert apply_overrides(BASE, ["train.betas=[0.1, 0.2]"])["train"]["betas"] == [0.1, 0.2]


def test_a_user_config_layers_over_the_default_without_mixing_datasets_or_models(tmp_path):
    with open(default_config_path(), encoding="utf-8") as fh:
        default = yaml.safe_load(fh)
    path = _write(tmp_path, "mine.yaml", "data: {name: folder, root: /data/bottle}\n")
    cfg = load_config(path)
    assert (cfg.data.name, cfg.data.root, cfg.data.category, cfg.data_options) == ("folder", "/data/bottle",
                                                                                    None, {})
    assert cfg.model.memory.name == default["model"]["memory"]["name"]
    assert cfg.train.epochs == default["train"]["epochs"] and cfg.name == "mine"
    # a model section replaces the default's whole: no default memory leaks into a model without one
    path = _write(tmp_path, "plain.yaml", "model: {encoder: conv, decoder: conv}\n")
    cfg = load_config(path)
    assert cfg.model.memory is None and cfg.data.name == default["data"]["name"] and cfg.name == "plain"


@pytest.mark.parametrize("order", [["data.name=folder", "data.root=/x"], ["data.root=/x", "data.name=folder"]])
def test_switching_dataset_by_override_keeps_no_keys_of_the_other(order):
    cfg = load_config(None, order)
    assert (cfg.data.name, cfg.data.root, cfg.data.category, cfg.data_options) == ("folder", "/x", None, {})
    assert cfg.name == "folder-memae"
    same = load_config(None, ["data.category=grass"])   # the same dataset: the default's keys stay
    assert (same.data.category, same.name) == ("grass", "textures-memae")


def test_component_schemas_are_built_at_registration_from_the_signature(monkeypatch):
    from reconad.plugins import get_registry

    registry = get_registry()
    for spec in registry:
        params = inspect.signature(spec.factory).parameters
        plain = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        assert spec.schema.context == plain & CONTEXT_PARAMS, spec.name
        assert set(spec.schema.hints) == plain - CONTEXT_PARAMS - ({"settings"} if spec.kind == "dataset" else set())
    # validating and building read the stored schemas: no signature is inspected again
    monkeypatch.setattr(ParamSchema, "of_factory", classmethod(lambda *a, **k: pytest.fail("schema rebuilt")))
    cfg = validate(BASE, registry)
    build_model(cfg.model, registry, 1, 32)


def test_tuple_parameters_take_yaml_lists_of_the_right_length():
    def factory(size: tuple[int, int] = (1, 2), weights: tuple[float, ...] = ()) -> None:
        pass

    schema, errors = ParamSchema.of_factory(factory), []
    out = schema.validate({"size": [3, 4], "weights": [1, "2e-3"]}, "model.x", errors)
    assert out == {"size": [3, 4], "weights": [1.0, 0.002]} and isinstance(out["size"], list) and errors == []
    schema.validate({"size": [3]}, "model.x", errors)
    schema.validate({"size": [3, "a"]}, "model.y", errors)
    assert errors == ["model.x.size: expected 2 items, got 1", "model.y.size[1]: expected int, got 'a'"]


def test_overriding_the_training_length_clears_the_other_key():
    raw = apply_overrides(BASE, ["train.steps=7"])            # BASE trains by epochs
    assert "epochs" not in raw["train"] and validate(raw).train.steps == 7
    raw = apply_overrides({**BASE, "train": {"steps": 5000}}, ["train.epochs=2"])
    cfg = validate(raw)
    assert cfg.train.steps is None and cfg.train.epochs == 2
    # a config file that trains by steps (coco_memcae.yaml: 5000) trained by epochs from the command line
    path = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "oddobjects", "coco_memcae.yaml")
    assert load_raw(path)["train"]["steps"] is not None
    assert "steps" not in load_raw(path, ["train.epochs=2"])["train"]
    # null removes a key: back to epochs with the default count
    assert validate(apply_overrides({**BASE, "train": {"steps": 5}}, ["train.steps=null"])).train.steps is None


def test_setting_both_training_lengths_is_one_error(tmp_path):
    for raw in (apply_overrides(BASE, ["train.steps=7", "train.epochs=3"]),
                {**BASE, "train": {"steps": 7, "epochs": 3}}):
        assert "train: sets both steps (7) and epochs (3); set one of them" in _error(raw)
    path = _write(tmp_path, "both.yaml", "train: {steps: 7, epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"train: sets both steps \(7\) and epochs \(3\)"):
        load_config(path)


def test_oddobjects_rank_epochs_replace_its_default_steps():
    rank = pytest.importorskip("reconad_oddobjects.rank")
    assert rank.DEFAULT_CONFIG["train"]["steps"] is not None
    raw = rank._rank_config(rank.DEFAULT_CONFIG, "ann.json", "images", None, False, ["train.epochs=2"])
    assert "steps" not in raw["train"] and raw["train"]["epochs"] == 2
    assert "steps" in rank.DEFAULT_CONFIG["train"]    # the default itself is untouched


def test_a_resolved_config_holds_only_the_length_in_effect():
    from reconad.config import validate_resolved

    cfg = validate(apply_overrides(BASE, ["train.steps=7"]))
    resolved = to_dict(cfg)
    assert resolved["train"]["steps"] == 7 and resolved["train"]["epochs"] is None
    assert to_dict(validate(resolved)) == resolved
    # a config.yaml written before the length was given once holds both (steps was the length): it still loads
    legacy = {**resolved, "train": {**resolved["train"], "epochs": 20}}
    assert "sets both steps (7) and epochs (20)" in _error(legacy)
    assert validate_resolved(legacy).train.steps == 7
