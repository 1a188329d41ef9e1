"""MMAE's video variant on a tiny synthetic frame folder: a moving square; anomalous frames show a second object.
Trained through the engine (``reconad run configs/mmae/video.yaml``), scored with ``reconad video``."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from reconad.config import load_config, validate
from reconad.data.video import VideoCut, clip_starts
from reconad.engine import Trained, score_video
from reconad.engine.video import score_frames
from reconad.model import build_model
from reconad.plugins import get_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONFIG = os.path.join(ROOT, "configs", "mmae", "video.yaml")
SIZE = 16
TINY_MODEL = ["model.encoder.channels=8", "model.encoder.base_width=4", "model.encoder.max_width=8",
              "model.memory.slots=10", "model.decoder.base_width=4", "model.decoder.max_width=8"]


def _frames(n: int, anomalous: range | None = None) -> list[np.ndarray]:
    out = []
    for t in range(n):
        img = np.zeros((SIZE, SIZE), np.uint8)
        x = t % (SIZE - 4)
        img[6:10, x:x + 4] = 200                       # the square moves right, one pixel per frame
        if anomalous is not None and t in anomalous:
            img[1:5, 11:15] = 255                      # a second object appears
        out.append(img)
    return out


def _write(folder, frames) -> None:
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame{i}.png")  # natural order: frame2 before frame10


@pytest.fixture
def video_folders(tmp_path):
    _write(tmp_path / "train", _frames(40))
    anomalous = range(20, 30)
    _write(tmp_path / "test", _frames(40, anomalous))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{int(t in anomalous)}\n" for t in range(40)))
    return tmp_path


def _model(image_size: int, frames: int = 16):
    cfg = load_config(CONFIG, [f"data.image_size={image_size}", *TINY_MODEL])
    return cfg, build_model(cfg.model, get_registry(), frames, image_size)[0]


def test_clip_starts_cover_every_frame():
    assert clip_starts(20, 16, 3) == [0, 3, 4]
    assert clip_starts(16, 16, 1) == [0]
    with pytest.raises(ValueError, match="16 frames"):
        clip_starts(10, 16, 1)


def test_video_model_shapes():
    _, model = _model(32)
    assert model.encoder.resolutions == [32, 16, 8, 4]          # K = 4
    out = model(torch.rand(2, 16, 32, 32))                       # 16 grey frames stacked as channels
    assert out["recon"].shape == (2, 16, 32, 32) and out["scale_weights"].shape == (2, 4, 2, 4, 4)
    assert out["memory"].entropy.dim() == 0
    with pytest.raises(ValueError, match="clips"):
        model(torch.rand(2, 8, 32, 32))


def test_frame_level_auroc_matches_sklearn(video_folders, tmp_path):
    from reconad.engine import run

    cfg = load_config(CONFIG, [f"data.root={video_folders / 'train'}", f"data.image_size={SIZE}",
                               "data.clip_stride=4", "data.score_stride=2", "train.epochs=2", "train.lr=0.001",
                               "train.device=cpu", "train.progress=false", *TINY_MODEL])
    run(cfg, str(tmp_path / "run"), log=lambda s: None)
    res = score_video(str(tmp_path / "run"), str(video_folders / "test"), str(tmp_path / "out"),
                      labels=str(video_folders / "labels.txt"), device="cpu")
    assert res.primary.shape == (40,) and np.isfinite(res.primary).all()
    assert res.names[:3] == ["frame0.png", "frame1.png", "frame2.png"]
    assert res.metrics["frame_auroc"] == pytest.approx(roc_auc_score(res.labels, res.primary))
    metrics = json.loads((tmp_path / "out" / "video_metrics.json").read_text())
    assert metrics["frame_auroc"] == pytest.approx(res.metrics["frame_auroc"]) and metrics["n_anomalous"] == 10
    lines = (tmp_path / "out" / "frame_scores.csv").read_text().splitlines()
    assert lines[0] == "frame,name,score,label" and len(lines) == 41


def test_frame_scores_average_the_cubes_holding_a_frame():
    torch.manual_seed(0)
    cfg, model = _model(SIZE)
    model.eval()
    video = torch.rand(20, 1, SIZE, SIZE)
    trained = Trained(cfg, model, {}, {"channels": 16, "image_size": SIZE})
    scores = score_frames(trained, video, VideoCut(unit="clips", clip_frames=16, score_stride=4))["recon_error"]
    with torch.no_grad():                                          # cubes start at 0 and 4
        errs = [((model(video[s:s + 16, 0][None])["recon"] - video[s:s + 16, 0][None]) ** 2)
                .mean(dim=(2, 3))[0].double() for s in (0, 4)]
    expect = torch.zeros(20, dtype=torch.float64)
    count = torch.zeros(20, dtype=torch.float64)
    for s, e in zip((0, 4), errs):
        expect[s:s + 16] += e
        count[s:s + 16] += 1
    np.testing.assert_allclose(scores, (expect / count).numpy(), rtol=1e-5)


def test_video_command(video_folders, tmp_path, capsys):
    from reconad.cli import main

    run_dir = str(tmp_path / "run")
    assert main(["run", CONFIG, "--out", run_dir, "--set", f"data.root={video_folders / 'train'}",
                 "--set", f"data.image_size={SIZE}", "--set", "data.clip_stride=8", "--set", "data.score_stride=4",
                 "--set", "train.epochs=1", "--set", "train.progress=false", "--device", "cpu",
                 *[a for kv in TINY_MODEL for a in ("--set", kv)]]) == 0
    code = main(["video", run_dir, str(video_folders / "test"), "--labels", str(video_folders / "labels.txt")])
    assert code == 0 and "frame AUROC" in capsys.readouterr().out
