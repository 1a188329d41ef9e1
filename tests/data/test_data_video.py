"""reconad.data.video: frames from a folder or a video file, and per-frame labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reconad.data.base import DataError
from reconad.data.video import natural_key, read_frame_labels, read_frames


def _frames(n: int, h: int = 12, w: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)


def test_folder_frames_in_natural_order(tmp_path):
    arr = _frames(11)
    for i, a in enumerate(arr):
        Image.fromarray(a).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    frames, names = read_frames(tmp_path)
    assert names == [f"frame{i}.png" for i in range(11)]  # frame10 after frame9, not after frame1
    assert frames.shape == (11, 1, 12, 20) and frames.dtype == torch.float32
    np.testing.assert_allclose(frames[:, 0].numpy(), arr / 255.0, atol=1e-6)
    rgb, _ = read_frames(tmp_path, channels=3, size=(6, 10))
    assert rgb.shape == (11, 3, 6, 10) and 0.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0


def test_video_file_matches_its_frames(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    arr = _frames(5)
    path = tmp_path / "clip.gif"
    iio.imwrite(path, arr, loop=0)
    frames, names = read_frames(path, size=8)
    assert frames.shape == (5, 1, 8, 8) and names[0] == "clip.gif#0"
    full, _ = read_frames(path)
    np.testing.assert_allclose(full[:, 0].numpy(), arr / 255.0, atol=1e-6)


def test_frame_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="neither a folder"):
        read_frames(tmp_path / "missing")
    with pytest.raises(DataError, match="no frame images"):
        read_frames(tmp_path)
    Image.fromarray(_frames(1)[0]).save(tmp_path / "a1.png")
    Image.fromarray(_frames(1, 7, 7)[0]).save(tmp_path / "a2.png")
    with pytest.raises(DataError, match=r"a2.png .*\(7, 7\).*\(12, 20\)"):
        read_frames(tmp_path)
    (tmp_path / "a3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a3.png"):
        read_frames(tmp_path, size=8)


def test_labels_from_text_csv_and_npy(tmp_path):
    want = np.array([0, 0, 1, 1, 0])
    (tmp_path / "l.txt").write_text("\n".join(map(str, want)) + "\n")
    (tmp_path / "l.csv").write_text("frame,label\n" + "".join(f"f{i}.png,{v}\n" for i, v in enumerate(want)))
    np.save(tmp_path / "l.npy", want.astype(np.float32))
    for name in ("l.txt", "l.csv", "l.npy"):
        got = read_frame_labels(tmp_path / name, 5)
        assert got.dtype == np.int64 and (got == want).all(), name
    with pytest.raises(DataError, match="has 5 label.*6 frames"):
        read_frame_labels(tmp_path / "l.txt", 6)
    (tmp_path / "bad.txt").write_text("0\n2\n")
    with pytest.raises(DataError, match=r"bad.txt label 1 .* expected 0 or 1"):
        read_frame_labels(tmp_path / "bad.txt", 2)
    (tmp_path / "bad2.txt").write_text("0\n1\nx\n")
    with pytest.raises(DataError, match=r"line 3 ends in 'x'"):
        read_frame_labels(tmp_path / "bad2.txt", 3)


def test_natural_key():
    assert sorted(["f10", "f2", "F1"], key=natural_key) == ["F1", "f2", "f10"]
