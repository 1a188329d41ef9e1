"""End to end: ``reconad run configs/oled/*.yaml`` (tiny overrides) writes all four OLED scores; the
``reconad oled video`` / ``segment`` commands on the trained run; video frame scores against sklearn."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from reconad.cli import main
from reconad_oled.evaluate import frame_scores, patchify, video_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = ["--set", "data.image_size=16", "--set", "data.anomalies_per_class=4", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "train.progress=false", "--set", "train.device=cpu",
        "--set", "model.encoder.channels=[8,16]", "--set", "model.encoder.latent_dim=8",
        "--set", "model.decoder.channels=[16,8]", "--set", "test.report_images=2"]


@pytest.fixture(scope="module")
def oled_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("oled") / "run")
    assert main(["run", os.path.join(ROOT, "configs", "oled", "oled.yaml"), "--out", out,
                 "--set", "model.masker.channels=[4,8]", *TINY]) == 0
    return out


def _write_frames(folder, labels: list[int], seed: int = 0):
    """32x48 grey frames (2x3 patches of 16x16); anomalous ones get a bright square."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i, lab in enumerate(labels):
        f = (rng.random((32, 48)) * 0.2).astype(np.float32)
        if lab:
            f[4:12, 20:28] = 1.0
        Image.fromarray((f * 255).astype(np.uint8)).save(folder / f"frame{i}.png")
    return folder


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_four_scores(out: str) -> None:
    rows = _rows(os.path.join(out, "scores.csv"))
    assert {"score", "score_oled_mask", "score_oled_cont", "score_oled_rec"} <= set(rows[0])
    cols = {c: np.array([float(r[c]) for r in rows]) for c in
            ("score", "score_oled_mask", "score_oled_cont", "score_oled_rec")}
    for c in ("score_oled_mask", "score_oled_cont", "score_oled_rec"):  # min-max over the test set
        assert cols[c].min() == pytest.approx(0.0) and cols[c].max() == pytest.approx(1.0)
    np.testing.assert_allclose(cols["score"], (cols["score_oled_mask"] + cols["score_oled_cont"]
                                               + cols["score_oled_rec"]) / 3, atol=1e-6)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert {"oled", "oled_mask", "oled_cont", "oled_rec"} <= set(metrics["scorers"])
    labels = np.array([int(r["label"]) for r in rows])
    for name, col in (("oled", "score"), ("oled_mask", "score_oled_mask")):
        assert metrics["scorers"][name]["image_auroc"] == pytest.approx(roc_auc_score(labels, cols[col]), abs=1e-6)


def test_run_oled_config_writes_all_four_scores(oled_run):
    _check_four_scores(oled_run)


def test_run_random_mask_cae_config(tmp_path):
    out = str(tmp_path / "cae")
    assert main(["run", os.path.join(ROOT, "configs", "oled", "cae_random_mask.yaml"), "--out", out,
                 "--set", "model.masker.block=6", *TINY]) == 0
    _check_four_scores(out)


def test_segment_and_video_commands(oled_run, tmp_path, capsys):
    assert main(["oled", "segment", oled_run, "--out", str(tmp_path)]) == 0
    seg = json.load(open(tmp_path / "segmentation.json"))
    assert set(seg) == {"inlier", "outlier"} and all(0.0 <= v <= 1.0 for v in seg.values())

    labels = [0, 0, 1, 0, 1, 1]
    frames_dir = _write_frames(tmp_path / "frames", labels)
    (tmp_path / "labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    assert main(["oled", "video", oled_run, str(frames_dir), "--labels",
                 str(tmp_path / "labels.txt"), "--patch", "16", "--out", str(tmp_path)]) == 0
    rows = _rows(str(tmp_path / "frame_scores.csv"))
    assert [r["frame"] for r in rows] == [f"frame{i}.png" for i in range(6)]
    metrics = json.load(open(tmp_path / "video_metrics.json"))
    for k in ("avg", "mask", "cont", "rec"):
        s = np.array([float(r[f"s_{k}"]) for r in rows])
        assert metrics[k]["auroc"] == pytest.approx(roc_auc_score(labels, s))


def test_patchify_and_frame_score_is_the_max_over_patches():
    frames = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    p = patchify(frames, patch=2)
    assert p.shape == (2, 6, 1, 2, 2)
    torch.testing.assert_close(p[1, 4], frames[1, :, 2:4, 2:4])  # row-major patch order
    assert patchify(frames, patch=3, stride=1).shape == (2, 2 * 4, 1, 3, 3)
    with pytest.raises(ValueError, match="does not fit"):
        patchify(frames, patch=5)
    s = np.random.default_rng(0).random((5, 7))
    np.testing.assert_array_equal(frame_scores(s), s.max(1))


def test_video_auroc_and_eer_match_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    patch = rng.random((200, 12)) + labels[:, None] * rng.random((200, 1))
    frame = frame_scores(patch)
    m = video_metrics({"avg": frame}, labels)["avg"]
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, frame))
    fpr, tpr, _ = roc_curve(labels, frame)
    fnr = 1 - tpr
    k = int(np.argmax(fpr - fnr >= 0))  # the ROC points bracketing FPR = FNR, linearly interpolated
    t = (fnr[k - 1] - fpr[k - 1]) / ((fpr[k] - fpr[k - 1]) - (fnr[k] - fnr[k - 1]))
    assert m["eer"] == pytest.approx(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))
    assert abs(m["eer"] - fnr[np.argmin(np.abs(fnr - fpr))]) < 0.02
    with pytest.raises(ValueError, match="normal and anomalous"):
        video_metrics({"avg": frame}, np.zeros(200, np.int64))


def test_video_patches_dataset(tmp_path):
    from reconad.data import DataSettings
    from reconad.data.base import DataError
    from reconad_oled.data import video_patches

    train_dir = _write_frames(tmp_path / "train", [0, 0, 0, 0])
    test_dir = _write_frames(tmp_path / "test", [0, 1, 1], seed=1)
    (tmp_path / "labels.txt").write_text("0\n1\n1\n")
    settings = DataSettings(name="oled_video_patches", root=str(train_dir), image_size=16, holdout_fraction=0.25)
    splits = video_patches(settings, test_frames=str(test_dir), test_labels=str(tmp_path / "labels.txt"),
                           patch=16)
    assert len(splits.train) + len(splits.holdout) == 4 * 6 and len(splits.holdout) == 6
    assert len(splits.test) == 3 * 6
    assert [splits.test[i]["label"] for i in range(18)] == [0] * 6 + [1] * 12
    assert splits.test[7]["path"] == "frame1.png#p1" and splits.train[0]["image"].shape == (1, 16, 16)
    with pytest.raises(DataError, match="data.root"):
        video_patches(DataSettings(name="oled_video_patches", image_size=16))
