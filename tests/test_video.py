"""``reconad video RUN FRAMES``: a run trained on the ``video`` dataset (patches or clips) scores any video;
frame scores checked against hand-cut units scored one by one, metrics against scikit-learn."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from reconad.cli import main
from reconad.engine import load_trained

H, W = 16, 24
ANOMALOUS = range(12, 18)


def _write_frames(folder, n: int, anomalous=range(0)) -> str:
    """Grey frames with a square moving right; anomalous frames get a bright second square."""
    folder.mkdir()
    for t in range(n):
        img = np.full((H, W), 30, np.uint8)
        x = t % (W - 4)
        img[6:10, x:x + 4] = 160
        if t in anomalous:
            img[1:6, 17:22] = 255
        Image.fromarray(img).save(folder / f"f{t}.png")
    return str(folder)


def _config(tmp_path, data: dict) -> str:
    import yaml

    raw = {"name": "tiny-video", "seed": 0,
           "data": {"name": "video", "root": _write_frames(tmp_path / "train", 24), "image_size": 8, **data},
           "model": {"encoder": {"name": "conv", "channels": [8, 16]}, "decoder": {"name": "conv"},
                     "scorers": ["l2"]},
           "train": {"steps": 2, "batch_size": 8, "device": "cpu", "progress": False}}
    path = tmp_path / "video.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def test_video(tmp_path):
    frames = _write_frames(tmp_path / "test", 30, ANOMALOUS)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{int(t in ANOMALOUS)}\n" for t in range(30)))
    return frames, str(labels), np.array([int(t in ANOMALOUS) for t in range(30)])


def _frames(folder: str) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(Image.open(f"{folder}/f{t}.png"), np.float32) / 255.0)[None]
                        for t in range(30)])


def _score_video(tmp_path, data: dict, test_video, capsys) -> tuple[str, list[dict], dict]:
    run_dir, out = str(tmp_path / "run"), str(tmp_path / "scored")
    assert main(["run", _config(tmp_path, data), "--out", run_dir]) == 0
    capsys.readouterr()
    frames, labels, _ = test_video
    assert main(["video", run_dir, frames, "--labels", labels, "--out", out, "--device", "cpu"]) == 0
    assert "frame AUROC" in capsys.readouterr().out
    with open(f"{out}/frame_scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert open(f"{out}/scores.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    return run_dir, rows, json.loads(open(f"{out}/video_metrics.json").read())


def _check_metrics(rows: list[dict], metrics: dict, y: np.ndarray) -> np.ndarray:
    assert [r["frame"] for r in rows] == [str(t) for t in range(30)]
    assert [r["name"] for r in rows] == [f"f{t}.png" for t in range(30)]
    assert [int(r["label"]) for r in rows] == y.tolist()
    s = np.array([float(r["score"]) for r in rows])
    assert metrics["n_frames"] == 30 and metrics["n_anomalous"] == len(ANOMALOUS)
    assert metrics["frame_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1 - tpr
    k = int(np.argmax(fpr - fnr >= 0))  # the ROC points bracketing FPR = FNR, linearly interpolated
    t = (fnr[k - 1] - fpr[k - 1]) / ((fpr[k] - fpr[k - 1]) - (fnr[k] - fnr[k - 1]))
    assert metrics["eer"] == pytest.approx(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]), abs=1e-6)
    return s


def test_patches_run_scores_a_frame_as_the_max_over_its_patches(tmp_path, test_video, capsys):
    run_dir, rows, metrics = _score_video(tmp_path, {"unit": "patches", "patch": 8}, test_video, capsys)
    s = _check_metrics(rows, metrics, test_video[2])
    model = load_trained(run_dir, "cpu").model
    video = _frames(test_video[0])
    expect = []
    with torch.no_grad():
        for frame in video:                       # 2 x 3 patches of 8 x 8, cut by hand, row-major
            patches = torch.stack([frame[:, r:r + 8, c:c + 8] for r in (0, 8) for c in (0, 8, 16)])
            expect.append(model.score(model(patches))["l2"].image.max().item())
    np.testing.assert_allclose(s, expect, rtol=1e-5)


def test_clips_run_averages_a_frames_error_over_the_clips_holding_it(tmp_path, test_video, capsys):
    data = {"unit": "clips", "clip_frames": 4, "clip_stride": 2, "score_stride": 3}
    run_dir, rows, metrics = _score_video(tmp_path, data, test_video, capsys)
    s = _check_metrics(rows, metrics, test_video[2])
    model = load_trained(run_dir, "cpu").model
    video = torch.nn.functional.interpolate(_frames(test_video[0]), size=(8, 8), mode="bilinear", antialias=True,
                                            align_corners=False).clamp(0, 1)
    total, count = np.zeros(30), np.zeros(30)
    with torch.no_grad():
        for start in [0, 3, 6, 9, 12, 15, 18, 21, 24, 26]:        # every 3 frames, the last ending at frame 29
            clip = video[start:start + 4, 0][None]                  # (1, 4, 8, 8): frames as channels
            err = ((model(clip)["recon"] - clip) ** 2)[0].mean(dim=(1, 2)).double().numpy()
            total[start:start + 4] += err
            count[start:start + 4] += 1
    np.testing.assert_allclose(s, total / count, rtol=1e-5)


def test_a_video_shorter_than_a_clip_names_both_counts(tmp_path, capsys):
    cfg = _config(tmp_path, {"unit": "clips", "clip_frames": 30})
    assert main(["run", cfg, "--out", str(tmp_path / "run")]) == 2
    assert "data.clip_frames: a clip needs 30 frames, the video has 24" in capsys.readouterr().err
