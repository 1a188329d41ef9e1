"""MMAE's video variant on a tiny synthetic frame folder: a moving square; anomalous frames show a second object."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from reconad_mmae.video import VideoMMAE, cube_starts, frame_scores, run_video

SIZE = 16
TINY_MODEL = {"channels": 8, "base_width": 4, "max_width": 8, "slots": 10}


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


def test_cube_starts_cover_every_frame():
    assert cube_starts(20, 16, 3) == [0, 3, 4]
    assert cube_starts(16, 16, 1) == [0]
    with pytest.raises(ValueError, match="16 frames"):
        cube_starts(10, 16, 1)


def test_video_model_shapes():
    model = VideoMMAE(image_size=32, **TINY_MODEL)
    assert model.encoder.resolutions == [32, 16, 8, 4]          # K = 4
    out = model(torch.rand(2, 1, 16, 32, 32))
    assert out["recon"].shape == (2, 1, 16, 32, 32) and out["scale_weights"].shape == (2, 4, 2, 4, 4)
    assert out["memory"].entropy.dim() == 0
    with pytest.raises(ValueError, match="cubes"):
        model(torch.rand(2, 1, 8, 32, 32))


def test_frame_level_auroc_matches_sklearn(video_folders, tmp_path):
    res = run_video(str(video_folders / "train"), str(video_folders / "test"), str(video_folders / "labels.txt"),
                    out=str(tmp_path / "out"), size=SIZE, epochs=2, batch_size=8, lr=1e-3, train_stride=4,
                    test_stride=2, model_options=TINY_MODEL, log=lambda s: None)
    assert res.scores.shape == (40,) and np.isfinite(res.scores).all()
    assert res.names[:3] == ["frame0.png", "frame1.png", "frame2.png"]
    assert res.auroc == pytest.approx(roc_auc_score(res.labels, res.scores))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["frame_auroc"] == pytest.approx(res.auroc) and metrics["n_anomalous"] == 10
    lines = (tmp_path / "out" / "frame_scores.csv").read_text().splitlines()
    assert lines[0] == "frame,score,label" and len(lines) == 41


def test_frame_scores_average_the_cubes_holding_a_frame():
    torch.manual_seed(0)
    model = VideoMMAE(image_size=SIZE, **TINY_MODEL).eval()
    video = torch.rand(20, 1, SIZE, SIZE)
    scores = frame_scores(model, video, stride=4)                 # cubes start at 0 and 4
    with torch.no_grad():
        errs = [((model(video[s:s + 16].transpose(0, 1)[None])["recon"] - video[s:s + 16].transpose(0, 1)[None])
                 ** 2).mean(dim=(1, 3, 4))[0].double() for s in (0, 4)]
    expect = torch.zeros(20, dtype=torch.float64)
    count = torch.zeros(20, dtype=torch.float64)
    for s, e in zip((0, 4), errs):
        expect[s:s + 16] += e
        count[s:s + 16] += 1
    np.testing.assert_allclose(scores, (expect / count).numpy(), rtol=1e-5)


def test_video_command(video_folders, capsys):
    from reconad.cli import main

    code = main(["mmae", "video", "--train", str(video_folders / "train"), "--frames", str(video_folders / "test"),
                 "--labels", str(video_folders / "labels.txt"), "--size", str(SIZE), "--epochs", "1",
                 "--slots", "10", "--train-stride", "8", "--test-stride", "4"])
    assert code == 0 and "frame-level AUROC" in capsys.readouterr().out
