"""Nothing lost, nothing misleading: interrupted runs resume to the weights of an uninterrupted one, run
folders are never mixed, a run folder that contradicts itself is one clear error, predictions come at the
input's resolution, and degenerate data or few held-out images are warned about."""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from reconad.config import apply_overrides, validate
from reconad.engine import RunError, run
from reconad.engine.checkpoint import load_checkpoint


def _run(raw, out, **kw):
    return run(validate(raw), str(out), log=lambda s: None, **kw)


def _same_weights(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _start_train(raw, tmp_path, out):
    """``reconad train`` on ``raw`` in a subprocess with this process's thread count (same floating-point
    reductions as the in-process runs it is compared with)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "reconad.cli", "train", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _long_raw(tiny_raw, *extra):
    # long enough that a signal sent once training has started lands before the end
    return apply_overrides(tiny_raw, ["train.steps=150", "train.batch_size=8", "test.report_images=2",
                                      "model.masker=random_block", *extra])


def test_sigterm_writes_a_checkpoint_and_prints_the_resume_command(tiny_raw, tmp_path):
    raw = _long_raw(tiny_raw, "train.checkpoint_minutes=0")
    out = tmp_path / "run"
    proc = _start_train(raw, tmp_path, out)
    for line in proc.stdout:   # the loop has started: its handlers are in place
        if line.startswith("training steps"):
            break
    assert "on Ctrl-C / SIGTERM" in line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    state = load_checkpoint(str(out))
    assert not state["finished"] and 0 < state["step"] < 150
    assert f"interrupted by SIGTERM at step {state['step']}/150" in err
    assert f"resume with: reconad train {tmp_path / 'cfg.yaml'} --out {out} --resume" in err
    resumed = _run(raw, out, resume=True, test=False)
    full = _run(raw, tmp_path / "full", test=False)
    assert resumed.train.step == 150
    _same_weights(full.train.model, resumed.train.model)


def test_sigkill_after_a_periodic_checkpoint_resumes_to_the_same_weights(tiny_raw, tmp_path):
    raw = _long_raw(tiny_raw, "train.checkpoint_minutes=0.0005")   # every 30 ms
    out = tmp_path / "run"
    proc = _start_train(raw, tmp_path, out)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=60)
    state = load_checkpoint(str(out))
    assert not state["finished"], "the run ended before it was killed: make it longer"
    resumed = _run(raw, out, resume=True, test=False)
    full = _run(raw, tmp_path / "full", test=False)
    _same_weights(full.train.model, resumed.train.model)


def test_resume_without_a_checkpoint_names_the_settings(tiny_raw, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(RunError, match=r"no checkpoint to resume from .*train\.checkpoint_minutes \(now 5\.0\)"):
        _run(tiny_raw, tmp_path / "run", resume=True)


def test_negative_checkpoint_period_is_a_config_error(tiny_raw):
    from reconad.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.checkpoint_minutes: expected >= 0 \(0: off\), got -1"):
        validate(apply_overrides(tiny_raw, ["train.checkpoint_minutes=-1"]))


def test_an_existing_run_is_refused_unless_resume_or_overwrite(tiny_raw, tmp_path):
    raw = apply_overrides(tiny_raw, ["train.steps=2", "test.report_images=2"])
    out = tmp_path / "run"
    _run(raw, out)
    before = {f: (out / f).stat().st_mtime_ns for f in os.listdir(out)}
    with pytest.raises(RunError, match=r"already holds a finished run; pass --resume to continue it, "
                                       r"--overwrite to replace it"):
        _run(apply_overrides(raw, ["model.memory.slots=30"]), out)
    assert {f: (out / f).stat().st_mtime_ns for f in os.listdir(out)} == before, "the old run was touched"
    # a failing resume with another model leaves the old config.yaml as it was
    with pytest.raises(Exception, match="another model config"):
        _run(apply_overrides(raw, ["model.memory.slots=30"]), out, resume=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["memory"]["slots"] == 20
    # --overwrite: the new run alone, none of the old run's files
    (out / "old-note.txt").write_text("from the old run")
    _run(apply_overrides(raw, ["model.memory.slots=30"]), out, test=False, overwrite=True)
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "config.yaml", "history.csv"]
    assert load_checkpoint(str(out))["config"]["model"]["memory"]["slots"] == 30
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], "the replaced run was left behind"


def test_a_folder_with_other_files_is_refused_even_with_overwrite(tiny_raw, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(RunError, match=r"is not empty and holds no reconad run \(notes.txt\)"):
            _run(tiny_raw, out, **kw)
    assert os.listdir(out) == ["notes.txt"]


def test_cli_overwrite_and_unwritable_out(tiny_raw, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(apply_overrides(tiny_raw, ["train.steps=1"])))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    res = subprocess.run([sys.executable, "-m", "reconad.cli", "train", str(cfg), "--out", str(blocker / "x")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"reconad train: error: cannot create the output folder {str(blocker / 'x')!r}: Not a directory; "
        "pass a writable --out"]


def test_twostage_pretraining_longer_than_the_run_is_one_line_before_training(tmp_path, capsys):
    pytest.importorskip("reconad_twostage")
    from reconad.cli import main

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sets = ["data.image_size=16", "data.anomalies_per_class=3", "train.batch_size=16", "train.steps=3",
            "train.progress=false", "model.encoder.width=4", "model.decoder.width=4",
            "model.objective.pretrain_steps=3"]
    out = tmp_path / "run"
    args = ["train", os.path.join(root, "configs", "twostage", "twostage.yaml"), "--out", str(out)]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reconad train: error: model.objective: twostage objective: stage 1 "
                                               "takes 3 steps"), err
    assert "training has 3 steps in all, leaving none for stage 2" in err[0]
    assert not out.exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_base):
    out = tmp_path_factory.mktemp("fin") / "run"
    raw = apply_overrides(tiny_base, ["train.steps=2", "test.report_images=2"])
    return out, run(validate(raw), str(out), log=lambda s: None)


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_test_on_a_config_yaml_that_contradicts_the_checkpoint(finished, tmp_path, capsys):
    from reconad.cli import main

    out = _copy_run(finished[0], tmp_path / "edited")
    raw = yaml.safe_load((out / "config.yaml").read_text())
    raw["model"]["memory"]["slots"] = 30
    (out / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["test", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "size mismatch" not in err
    assert f"{str(out / 'config.yaml')!r} contradicts checkpoint {str(out)!r}" in err
    assert "model.memory.slots: checkpoint has 20, config has 30" in err


def test_test_on_a_checkpoint_whose_config_contradicts_its_weights(finished, tmp_path, capsys):
    from reconad.cli import main
    from reconad.engine.checkpoint import save_checkpoint

    out = _copy_run(finished[0], tmp_path / "mixed")
    state = load_checkpoint(str(out))
    state["config"]["model"]["memory"]["slots"] = 30
    state["signature"]["model"]["memory"]["slots"] = 30
    save_checkpoint(str(out / "checkpoint.pt"), {k: v for k, v in state.items() if k != "format"})
    (out / "config.yaml").unlink()
    assert main(["test", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "size mismatch" not in err
    assert "its weights do not fit the model its embedded config builds" in err
    assert "memory.memory: checkpoint has shape [20, 16], the config's model has [30, 16]" in err, err


def _folder_dataset(root, n_train=8, value=None, size=16):
    """train/good, test/good and test/scratch, each test folder holding a ``006.png``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    for sub in ("train/good", "test/good", "test/scratch"):
        (root / sub).mkdir(parents=True)
    def img():
        return (np.full((size, size), value, np.uint8) if value is not None
                else rng.integers(0, 255, (size, size), dtype=np.uint8))
    for i in range(n_train):
        Image.fromarray(img()).save(root / "train/good" / f"{i:03d}.png")
    for sub in ("test/good", "test/scratch"):
        for i in (5, 6):
            Image.fromarray(img()).save(root / sub / f"{i:03d}.png")
    return root


def test_scores_name_images_by_their_path_in_the_dataset(tiny_raw, tmp_path):
    import csv

    root = _folder_dataset(tmp_path / "data")
    raw = dict(apply_overrides(tiny_raw, ["train.steps=1", "test.report_images=2"]),
               data={"name": "folder", "root": str(root), "image_size": 16, "holdout_fraction": 0.25})
    _run(raw, tmp_path / "run")
    rows = list(csv.DictReader(open(tmp_path / "run" / "scores.csv")))
    assert sorted(r["path"] for r in rows) == sorted(os.path.join(s, f"00{i}.png") for s in ("test/good", "test/scratch")
                                                     for i in (5, 6))


def test_predict_heatmaps_at_each_images_own_size_and_notes_said_once(finished, tmp_path):
    import csv

    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from reconad.data.base import resize_images
    from reconad.data.folder import read_image
    from reconad.engine import load_trained, predict
    from reconad.engine.report import heat_overlay

    out, _ = finished
    imgs = tmp_path / "imgs"
    for sub in ("good", "scratch"):
        (imgs / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(imgs / "good" / "006.png")
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(imgs / "scratch" / "006.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(imgs / "scratch" / "007.png")
    notes = []
    res = predict(str(out), [str(imgs)], str(tmp_path / "p"), device="cpu", log=notes.append)
    rows = list(csv.DictReader(open(res.files["scores"])))
    assert [r["path"] for r in rows] == ["good/006.png", "scratch/006.png", "scratch/007.png"]
    assert len(notes) == 2, notes
    assert notes[0] == ("predict: the model takes grey images; 2 of 3 image(s) were converted to grey "
                        "(scratch/006.png, scratch/007.png)")
    assert notes[1].startswith("predict: warning: 1 of 3 image(s) are not square (good/006.png (30x40)); the model "
                               "sees each squeezed to 16x16, which distorts its aspect ratio")
    trained = load_trained(str(out), "cpu")
    vmax = trained.calibration.get("pixel_threshold") or 1.0
    heatmaps = sorted(str(p.relative_to(res.files["heatmaps"])) for p in Path(res.files["heatmaps"]).rglob("*.png"))
    assert heatmaps == ["good/006.png", "scratch/006.png", "scratch/007.png"]   # the inputs' own names
    for name, src in zip(heatmaps, heatmaps):
        png = np.asarray(Image.open(os.path.join(res.files["heatmaps"], name)))
        original = read_image(imgs / src, 1)
        assert png.shape == (*original.shape[-2:], 3), name          # the input's own size
        # the reference: the model's map on the squeezed image, bilinear up to the original size
        x = resize_images(original.unsqueeze(0), 16)
        with torch.no_grad():
            heat = next(s.pixel for s in trained.model.score(trained.model(x)).values() if s.pixel is not None)
        up = F.interpolate(heat[:, None].float(), size=tuple(original.shape[-2:]), mode="bilinear",
                           align_corners=False)[0, 0].numpy()
        want = (np.clip(heat_overlay(original.numpy(), up, vmax), 0, 1) * 255).astype(np.uint8)
        assert np.abs(png.astype(int) - want.astype(int)).max() <= 1, name


def test_degenerate_data_and_few_held_out_images_are_warned_about(tiny_raw, tmp_path, capsys):
    import json

    import numpy as np

    from reconad.cli import main

    root = _folder_dataset(tmp_path / "data", n_train=12, value=0)    # all-black images
    raw = dict(apply_overrides(tiny_raw, ["train.steps=2", "test.report_images=2"]),
               data={"name": "folder", "root": str(root), "image_size": 16, "holdout_fraction": 0.25})
    cfg = tmp_path / "black.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scores = [float(r.split(",")[1]) for r in (out / "scores.csv").read_text().splitlines()[1:]]
    assert np.ptp(scores) <= 1e-5 * max(abs(s) for s in scores)    # the premise: nothing tells images apart
    warnings = metrics["warnings"]
    n = load_checkpoint(str(out))["calibration"]["n_holdout"]
    assert n == 3
    assert any(w.startswith("the thresholds come from only 3 held-out normal image(s) (fewer than 20)")
               for w in warnings), warnings
    assert any(w.startswith("every test image has the same l2 score") for w in warnings), warnings
    assert any(w.startswith("every held-out normal image has the same l2 score") for w in warnings), warnings
    err = capsys.readouterr().err
    for w in warnings:
        assert f"warning: {w}" in err


def test_varied_data_with_enough_held_out_images_has_no_warnings(tiny_raw, tmp_path):
    from reconad.engine.evaluate import MIN_HOLDOUT

    res = _run(apply_overrides(tiny_raw, ["train.steps=2", "test.report_images=2"]), tmp_path / "run")
    assert res.train.calibration["n_holdout"] >= MIN_HOLDOUT, "the premise: enough held-out images"
    assert res.metrics["warnings"] == []


def test_predict_tiles_stitch_the_maps_and_score_the_worst_tile(finished, tmp_path):
    import csv

    import numpy as np
    from PIL import Image

    from reconad.data.folder import read_image
    from reconad.engine import load_trained, predict
    from reconad.engine.report import heat_overlay

    out, _ = finished
    (tmp_path / "imgs").mkdir()
    path = tmp_path / "imgs" / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 24), dtype=np.uint8)).save(path)
    notes = []
    res = predict(str(out), [str(path)], str(tmp_path / "p"), device="cpu", tile=16, overlap=0.25,
                  log=notes.append)
    assert notes == [], "square tiles keep the aspect ratio"
    trained = load_trained(str(out), "cpu")
    image = read_image(path, 1)
    # the reference, by loops: 16-pixel tiles every 12 pixels, the last flush with the edge (rows 0, 12, 24;
    # columns 0, 8), each scored as the model's own 16x16 input
    total, count, tile_scores = np.zeros((40, 24)), np.zeros((40, 24)), []
    for y in (0, 12, 24):
        for x in (0, 8):
            with torch.no_grad():
                s = trained.model.score(trained.model(image[None, :, y:y + 16, x:x + 16]))
            first = next(iter(s.values()))
            tile_scores.append(float(first.image[0]))
            total[y:y + 16, x:x + 16] += first.pixel[0].numpy()
            count[y:y + 16, x:x + 16] += 1
    row = next(csv.DictReader(open(res.files["scores"])))
    assert row["path"] == str(path)
    assert float(row["score"]) == pytest.approx(max(tile_scores), rel=1e-6)
    vmax = trained.calibration.get("pixel_threshold") or 1.0
    want = (np.clip(heat_overlay(image.numpy(), total / count, vmax), 0, 1) * 255).astype(np.uint8)
    assert os.listdir(res.files["heatmaps"]) == [f"{Path(path).stem}.png"]   # a file given outside any folder
    png = np.asarray(Image.open(os.path.join(res.files["heatmaps"], os.listdir(res.files["heatmaps"])[0])))
    assert png.shape == (40, 24, 3) and np.abs(png.astype(int) - want.astype(int)).max() <= 1


def test_heatmap_names_mirror_the_inputs_and_never_leave_the_folder(tmp_path):
    from reconad._imagefiles import heatmap_path as _heatmap_path

    used: set[str] = set()
    got = [os.path.relpath(_heatmap_path(str(tmp_path), n, used), tmp_path)
           for n in ("good/006.png", "scratch/006.png", "a.jpg", "a.png", "../up/b.png", "/abs/c.tif", "b.bmp")]
    assert got == ["good/006.png", "scratch/006.png", "a.png", "a_2.png", "b.png", "c.png", "b_2.png"]
