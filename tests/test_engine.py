"""The engine end to end on tiny data: run folder contents checked against independent computations,
exact resume, and every kind of bad input ending in one clear error with nothing half-written."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from sklearn.metrics import roc_auc_score

from reconad.config import apply_overrides, validate
from reconad.engine import CheckpointError, RunError, evaluate_checkpoint, predict, run
from reconad.engine.checkpoint import load_checkpoint, save_checkpoint


def _run(raw, out, **kw):
    return run(validate(raw), str(out), log=lambda s: None, **kw)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "reconad.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base):
    out = tmp_path_factory.mktemp("run") / "out"
    res = run(validate(tiny_base), str(out), log=lambda s: None)
    return out, res


def test_run_folder_holds_every_file_and_consistent_metrics(trained):
    out, res = trained
    for name in ("config.yaml", "checkpoint.pt", "metrics.json", "scores.csv", "grid.png", "roc.png", "pro.png",
                 "report.html"):
        assert (out / name).is_file(), name
    assert not [f for f in os.listdir(out) if f.startswith(".")], "temp files left behind"
    metrics = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == metrics["n_test"] == len(res.train.splits.test)
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    assert metrics["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    for key in ("pixel_auroc", "aupro"):
        assert 0.0 <= metrics[key] <= 1.0
    # the threshold comes from held-out normal images only: the 0.99 quantile of their scores
    state = load_checkpoint(str(out / "checkpoint.pt"))
    assert state["finished"] and state["calibration"]["threshold"] == pytest.approx(metrics["threshold"])
    pred = np.array([int(r["predicted"]) for r in rows])
    assert (pred == (scores > metrics["threshold"])).all()
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["memory"]["slots"] == 20
    assert os.stat(out / "metrics.json").st_mode & 0o044, "report files must be readable like any other file"


def test_test_command_reproduces_the_run_metrics(trained, tmp_path):
    out, res = trained
    again = evaluate_checkpoint(str(out), str(tmp_path / "retest"), device="cpu")
    assert again.metrics["image_auroc"] == pytest.approx(res.metrics["image_auroc"], abs=1e-9)


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_raw, tmp_path):
    raw = apply_overrides(tiny_raw, ["train.steps=9", "train.checkpoint_every=4", "train.batch_size=16",
                                     "model.masker=random_block", "test.report_images=2"])
    full = _run(raw, tmp_path / "full")
    part = _run(raw, tmp_path / "part", stop_after_steps=5)
    assert part.train.step == 5 and part.metrics is None
    assert not load_checkpoint(str(tmp_path / "part"))["finished"]
    resumed = _run(raw, tmp_path / "part", resume=True)
    assert resumed.train.step == 9
    a, b = full.train.model.state_dict(), resumed.train.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.metrics["image_auroc"] == full.metrics["image_auroc"]


def test_resume_with_another_model_config_is_refused(tiny_raw, tmp_path):
    raw = apply_overrides(tiny_raw, ["train.steps=2"])
    _run(raw, tmp_path / "a", test=False)
    other = apply_overrides(raw, ["model.memory.slots=30"])
    with pytest.raises(CheckpointError, match=r"another model config:\n  model.memory.slots: checkpoint has 20, "
                                              r"config has 30"):
        _run(other, tmp_path / "a", resume=True)


class NotAWeight:
    pass


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "reconad-checkpoint/1", "payload": NotAWeight()}, path)
    with pytest.raises(CheckpointError, match="contains pickled Python objects.*weights_only=True"):
        load_checkpoint(str(path))
    res = _cli("test", str(path))
    assert res.returncode == 2 and "refusing to load it" in res.stderr
    save_checkpoint(str(tmp_path / "fine.pt"), {"x": torch.ones(2)})
    assert torch.equal(load_checkpoint(str(tmp_path / "fine.pt"))["x"], torch.ones(2))


def test_predict_scores_a_folder_and_skips_bad_files(trained, tmp_path):
    out, res = trained
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(imgs / f"a{i}.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(imgs / "sub" / "rgb.jpg")
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(Exception, match="broken.png"):
        predict(str(out), [str(imgs)], str(tmp_path / "p1"), device="cpu")
    assert not (tmp_path / "p1").exists(), "a failed predict must not leave a folder"
    res = predict(str(out), [str(imgs)], str(tmp_path / "p2"), device="cpu", skip_bad=True)
    rows = list(csv.DictReader(open(res.files["scores"])))
    assert len(rows) == 4 and {r["label"] for r in rows} == {""}
    heat = sorted(str(p.relative_to(res.files["heatmaps"])) for p in Path(res.files["heatmaps"]).rglob("*.png"))
    assert heat == ["a0.png", "a1.png", "a2.png", "sub/rgb.png"]
    assert "broken.png" in (tmp_path / "p2" / "skipped.txt").read_text()


def test_nan_pixels_name_the_file(tmp_path, tiny_raw):
    root = tmp_path / "data"
    for sub in ("train/good", "test/good", "test/crack"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.random((16, 16), dtype=np.float32)).save(root / "train/good" / f"{i}.tiff")
    bad = rng.random((16, 16), dtype=np.float32)
    bad[3, 4] = np.nan
    Image.fromarray(bad).save(root / "train/good" / "nan.tiff")
    for sub in ("test/good", "test/crack"):
        Image.fromarray(rng.random((16, 16), dtype=np.float32)).save(root / sub / "t.tiff")
    raw = dict(tiny_raw, data={"name": "folder", "root": str(root), "image_size": 16, "holdout_fraction": 0.2})
    with pytest.raises(RunError, match=r"NaN or inf pixel values: .*nan\.tiff"):
        _run(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line_and_leave_no_folder(tmp_path):
    cases = [
        (["--set", "data.name=folder", "--set", f"data.root={tmp_path / 'nowhere'}"], "nowhere"),
        (["--set", "model.memory.slots=many"], "model.memory.slots: expected int, got 'many'"),
        (["--set", "model.encoder.name=cnov"], "did you mean 'conv'"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA GPU is visible"))
    for args, expected in cases:
        out = tmp_path / "out"
        res = _cli("run", *args, "--out", str(out))
        assert res.returncode == 2, (args, res.stderr)
        assert expected in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
        assert not out.exists(), args


def test_cli_help_and_info(capsys):
    from reconad.cli import main

    for cmd in ("run", "train", "test", "report", "predict", "video", "export", "benchmark", "plugins", "info"):
        with pytest.raises(SystemExit) as exit_:
            main([cmd, "--help"])
        assert exit_.value.code == 0 and "usage: reconad" in capsys.readouterr().out, cmd
    info = json.loads(_cli("info", "--json").stdout)   # in a process of its own
    assert info["ops"]["memory_address"]["cpu"]["backend"] in ("cpp", "fallback")
    assert all(v["reason"] for per in info["ops"].values() for v in per.values())
    from reconad.ops.flush_denormal import every_thread
    assert info["flush_denormal"] == ("every intra-op thread" if every_thread() else "the calling thread")
    table = _cli("info").stdout
    assert "memory_address" in table and "torch" in table


def test_mixed_precision_trains_on_the_cpu(tiny_raw, tmp_path):
    raw = apply_overrides(tiny_raw, ["train.steps=3", "train.amp=true", "train.batch_size=8"])
    res = _run(raw, tmp_path / "amp", test=False)
    assert res.train.step == 3
    assert all(torch.isfinite(p).all() for p in res.train.model.parameters())


def test_load_trained_gives_the_runs_model_and_calibration(trained):
    from reconad.engine import load_trained

    out, res = trained
    loaded = load_trained(str(out), "cpu")
    assert not loaded.model.training and loaded.signature["image_size"] == 16
    assert loaded.calibration["threshold"] == pytest.approx(res.metrics["threshold"])
    for (name, a), b in zip(loaded.model.state_dict().items(), res.train.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu()), name


def test_run_command_helper_loads_the_run_and_names_a_folder_that_is_not_one(trained, tmp_path, capsys):
    import argparse

    from reconad.cli import main
    from reconad.commands import add_run_arguments, load_run, out_folder

    out, res = trained
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    args = parser.parse_args([str(out / "checkpoint.pt")])
    assert args.device == "auto" and args.out is None
    assert os.path.samefile(out_folder(args), out)            # default: the run folder
    loaded = load_run(parser.parse_args([str(out), "--device", "cpu"]))
    assert loaded.calibration["threshold"] == pytest.approx(res.metrics["threshold"])

    empty = tmp_path / "not_a_run"
    empty.mkdir()
    for argv in (["test", str(empty)], ["predict", str(empty), str(empty), "--out", str(tmp_path / "p")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"reconad {argv[0]}: error: {str(empty)!r} is not a reconad run folder: it has no "
                       "checkpoint.pt (pass the --out folder of `reconad run` / `reconad train`, or its "
                       "checkpoint.pt)"]


def test_video_command_names_a_run_that_is_not_a_video_run(trained, tmp_path, capsys):
    from PIL import Image

    from reconad.cli import main

    out, _ = trained
    (tmp_path / "frames").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "frames" / "f0.png")
    assert main(["video", str(out), str(tmp_path / "frames"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"reconad video: error: {str(out)!r} is not a video run: it was "
                                               "trained on data.name 'textures'")
    assert not (tmp_path / "frames" / "frame_scores.csv").exists()


def test_flush_denormals_flushes_on_the_cpu_only_and_restores_the_mode_found():
    from reconad.engine.runtime import flush_denormals, flushing_denormals
    tiny = np.float32(1e-30) * np.float32(1e-10)            # a float32 subnormal, computed unflushed
    assert tiny != 0 and abs(tiny) < np.finfo(np.float32).tiny and not flushing_denormals()
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode torch can set")
    product = lambda: (torch.tensor([1e-30], dtype=torch.float32) * 1e-10).item()  # noqa: E731
    assert product() == pytest.approx(float(tiny), rel=1e-3)
    with flush_denormals(torch.device("cuda", 0)):           # a GPU run leaves the CPU's mode alone
        assert product() != 0
    with flush_denormals(torch.device("cpu")):
        assert product() == 0 and flushing_denormals()
        with flush_denormals(torch.device("cpu")):
            pass
        assert flushing_denormals()                        # an inner block restores the outer block's mode
    assert product() != 0 and not flushing_denormals()


def test_training_and_scoring_flush_denormals_on_the_cpu(tiny_raw, tmp_path, monkeypatch):
    from reconad.engine import trainer
    from reconad.engine.runtime import flushing_denormals
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode torch can set")
    seen: dict[str, set[bool]] = {"train": set(), "score": set()}
    build = trainer.build_model

    def recording(*a, **kw):
        model, objective = build(*a, **kw)
        step = objective.training_step
        objective.training_step = lambda ctx, batch: (seen["train"].add(flushing_denormals()), step(ctx, batch))[1]
        model.register_forward_hook(lambda m, i, o: None if m.training else seen["score"].add(flushing_denormals()))
        return model, objective

    monkeypatch.setattr(trainer, "build_model", recording)
    _run(apply_overrides(tiny_raw, ["train.steps=2", "train.batch_size=8"]), tmp_path / "run")
    assert seen == {"train": {True}, "score": {True}}
    assert not flushing_denormals()                        # the caller's mode, as it was
