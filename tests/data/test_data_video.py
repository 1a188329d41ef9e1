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


def test_opencv_reads_a_video_imageio_cannot(tmp_path, monkeypatch):
    import importlib

    V = importlib.import_module("reconad.data.video")   # the module (reconad.data.video is also the dataset)

    arr = _frames(3)
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded here")

    def no_backend(p):
        raise OSError("no backend for .mp4 (ffmpeg missing)")

    monkeypatch.setattr(V, "_imageio_frames", no_backend)
    monkeypatch.setattr(V, "_opencv_frames", lambda p: [np.stack([a] * 3, -1) for a in arr])   # RGB frames
    frames, names = read_frames(path)
    assert names == ["clip.mp4#0", "clip.mp4#1", "clip.mp4#2"]
    np.testing.assert_allclose(frames[:, 0].numpy(), arr / 255.0, atol=1e-5)      # grey of equal RGB

    def missing(p):
        raise ImportError("no cv2")

    monkeypatch.setattr(V, "_opencv_frames", missing)
    with pytest.raises(DataError, match=r"clip.mp4 \(imageio: no backend .*ffmpeg missing\); OpenCV is not "
                                        r"installed\).*opencv-python-headless"):
        read_frames(path)


# ---------------------------------------------------------------------------------------- the video protocol

def _write_frames(folder, labels: list[int]):
    """32x48 frames (2x3 patches of 16x16), one per label."""
    folder.mkdir()
    for i, a in enumerate(_frames(len(labels), 32, 48)):
        Image.fromarray(a).save(folder / f"frame{i}.png")
    return folder


def test_patchify_and_frame_score_is_the_max_over_patches():
    from reconad.data.video import patchify
    from reconad.engine.video import frame_scores

    frames = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    p = patchify(frames, patch=2)
    assert p.shape == (2, 6, 1, 2, 2)
    torch.testing.assert_close(p[1, 4], frames[1, :, 2:4, 2:4])  # row-major patch order
    assert patchify(frames, patch=3, stride=1).shape == (2, 2 * 4, 1, 3, 3)
    with pytest.raises(ValueError, match="does not fit"):
        patchify(frames, patch=5)
    s = np.random.default_rng(0).random((5, 7))
    shows = [[t] for t in range(5) for _ in range(7)]
    np.testing.assert_array_equal(frame_scores(s.reshape(-1), shows, 5, "patches"), s.max(1))


def test_clip_frame_score_is_the_mean_over_the_clips_holding_it():
    from reconad.engine.video import frame_scores

    errors = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])     # clips [0, 3) and [2, 5)
    np.testing.assert_allclose(frame_scores(errors, [[0, 1, 2], [2, 3, 4]], 5, "clips"),
                               [1.0, 2.0, (3.0 + 10.0) / 2, 20.0, 30.0])


def test_video_auroc_and_eer_match_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    from reconad.engine.video import frame_scores, video_metrics

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    patch = rng.random((200, 12)) + labels[:, None] * rng.random((200, 1))
    frame = frame_scores(patch.reshape(-1), [[t] for t in range(200) for _ in range(12)], 200, "patches")
    m = video_metrics({"avg": frame}, labels)["scores"]["avg"]
    assert m["frame_auroc"] == pytest.approx(roc_auc_score(labels, frame))
    fpr, tpr, _ = roc_curve(labels, frame)
    fnr = 1 - tpr
    k = int(np.argmax(fpr - fnr >= 0))  # the ROC points bracketing FPR = FNR, linearly interpolated
    t = (fnr[k - 1] - fpr[k - 1]) / ((fpr[k] - fpr[k - 1]) - (fnr[k] - fnr[k - 1]))
    assert m["eer"] == pytest.approx(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))
    assert abs(m["eer"] - fnr[np.argmin(np.abs(fnr - fpr))]) < 0.02
    with pytest.raises(ValueError, match="normal and anomalous"):
        video_metrics({"avg": frame}, np.zeros(200, np.int64))


def test_video_dataset_cuts_patches(tmp_path):
    from reconad.data import DataSettings
    from reconad.data.video import video

    train_dir = _write_frames(tmp_path / "train", [0, 0, 0, 0])
    test_dir = _write_frames(tmp_path / "test", [0, 1, 1])
    (tmp_path / "labels.txt").write_text("0\n1\n1\n")
    settings = DataSettings(name="video", root=str(train_dir), image_size=16, holdout_fraction=0.25)
    splits = video(settings, test_frames=str(test_dir), test_labels=str(tmp_path / "labels.txt"), patch=16)
    assert len(splits.train) + len(splits.holdout) == 4 * 6 and len(splits.holdout) == 6
    assert len(splits.test) == 3 * 6
    assert [splits.test[i]["label"] for i in range(18)] == [0] * 6 + [1] * 12
    assert splits.test[7]["path"] == "frame1.png#p1" and splits.train[0]["image"].shape == (1, 16, 16)
    with pytest.raises(DataError, match="data.root"):
        video(DataSettings(name="video", image_size=16))


def test_video_dataset_cuts_clips_labelled_by_their_frames(tmp_path):
    from reconad.data import DataSettings
    from reconad.data.video import video

    train_dir = _write_frames(tmp_path / "train", [0] * 10)
    test_dir = _write_frames(tmp_path / "test", [0, 0, 0, 0, 0, 1, 0, 0])
    (tmp_path / "labels.txt").write_text("0\n0\n0\n0\n0\n1\n0\n0\n")
    settings = DataSettings(name="video", root=str(train_dir), image_size=8, holdout_fraction=0.25)
    splits = video(settings, unit="clips", clip_frames=4, clip_stride=3, score_stride=2,
                   test_frames=str(test_dir), test_labels=str(tmp_path / "labels.txt"))
    assert len(splits.train) + len(splits.holdout) == 3 and splits.channels == 4   # clips at 0, 3, 6
    assert [splits.test[i]["path"] for i in range(3)] == ["frame0.png+4", "frame2.png+4", "frame4.png+4"]
    assert [splits.test[i]["label"] for i in range(3)] == [0, 1, 1]                 # frame 5 is anomalous
    frames, _ = read_frames(test_dir, size=8)
    torch.testing.assert_close(splits.test[1]["image"], frames[2:6, 0])             # frames as channels
    with pytest.raises(DataError, match="data.unit: expected 'patches' or 'clips', got 'cubes'"):
        video(settings, unit="cubes")
    with pytest.raises(DataError, match="data.clip_stride: expected a positive number of frames, got 0"):
        video(settings, unit="clips", clip_stride=0)
