"""Config validation: one error naming every bad YAML path, before anything is built or trained."""
from __future__ import annotations

import pytest
import yaml

from reconad.config import ConfigError, apply_overrides, load_config, to_dict, validate

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
