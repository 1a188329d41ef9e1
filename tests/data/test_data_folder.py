"""The ``folder`` dataset on small MVTec-layout folders written with Pillow."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from reconad.data import DataError, DataSettings, folder

SIZE = 16


def _save(path: Path, array: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    im.save(path, format=fmt)
    return path


def _rgb(rng: np.random.Generator, h: int = 20, w: int = 30) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _mask(rng: np.random.Generator, h: int = 20, w: int = 30) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
    m[y:y + rng.integers(2, 7), x:x + rng.integers(2, 7)] = 255
    return m


def _mvtec(root: Path, rng: np.random.Generator, n_train: int = 5, masks: bool = True) -> dict[str, np.ndarray]:
    """RGB MVTec layout; returns the arrays written, by path."""
    written = {}
    for i in range(n_train):
        written[str(_save(root / "train" / "good" / f"{i:03d}.png", _rgb(rng)))] = None
    written[str(_save(root / "test" / "good" / "000.png", _rgb(rng)))] = None
    written[str(_save(root / "test" / "good" / "001.jpg", _rgb(rng)))] = None
    for defect in ("crack", "hole"):
        for i in range(2):
            p = _save(root / "test" / defect / f"{i:03d}.png", _rgb(rng))
            m = _mask(rng)
            written[str(p)] = m
            if masks:
                _save(root / "ground_truth" / defect / f"{i:03d}_mask.png", m)
    # Files that are not images, or hidden, are ignored.
    (root / "train" / "good" / "README.txt").write_text("not an image")
    (root / "test" / "good" / ".DS_Store").write_bytes(b"\0\1\2")
    return written


def _nearest_reference(mask: np.ndarray, size: int) -> np.ndarray:
    """Pillow-style nearest neighbour: output pixel i samples input floor((i + 0.5) * in / out)."""
    h, w = mask.shape
    rows = np.floor((np.arange(size) + 0.5) * h / size).astype(int)
    cols = np.floor((np.arange(size) + 0.5) * w / size).astype(int)
    return (mask[rows][:, cols] > 0).astype(np.float32)


def _settings(root: Path, **kw) -> DataSettings:
    return DataSettings(name="folder", root=str(root), image_size=SIZE, **kw)


def test_rgb_with_ground_truth(tmp_path):
    rng = np.random.default_rng()
    written = _mvtec(tmp_path / "bottle", rng)
    s = folder(_settings(tmp_path, category="bottle"))
    assert s.channels == 3 and s.has_masks and s.skipped == [] and s.image_size == SIZE
    assert len(s.train) == 4 and len(s.holdout) == 1 and len(s.test) == 6
    train_paths = {s.train[i]["path"] for i in range(len(s.train))}
    hold_paths = {s.holdout[i]["path"] for i in range(len(s.holdout))}
    assert not train_paths & hold_paths
    assert train_paths | hold_paths == {p for p in written if "/train/" in p}
    for i in range(len(s.test)):
        item = s.test[i]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, SIZE, SIZE)
        assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, SIZE, SIZE)
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        defect = Path(item["path"]).parent.name
        assert item["defect"] == defect and item["label"] == int(defect != "good")
        if written[item["path"]] is None:
            assert item["mask"].sum() == 0
        else:
            np.testing.assert_array_equal(item["mask"][0].numpy(), _nearest_reference(written[item["path"]], SIZE))
        # Pillow's antialiased bilinear resize is the reference (it rounds to 8 bits).
        with Image.open(item["path"]) as im:
            ref = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) / 255
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), ref, atol=2.5 / 255)
    batch = next(iter(DataLoader(s.test, batch_size=4)))
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["mask"].shape == (4, 1, SIZE, SIZE)
    assert batch["label"].dtype == torch.int64 and len(batch["path"]) == 4 and len(batch["defect"]) == 4


def test_grayscale_without_ground_truth(tmp_path):
    rng = np.random.default_rng()
    grey = lambda: rng.integers(0, 256, size=(24, 24), dtype=np.uint8)  # noqa: E731
    _save(tmp_path / "train" / "good" / "a.png", grey())
    _save(tmp_path / "train" / "good" / "b.bmp", grey())
    _save(tmp_path / "train" / "good" / "c.png", np.stack([grey(), grey()], -1), mode="LA")
    wide = np.full((24, 24), 32768, dtype=np.uint16)                    # 16-bit grey: 0.5
    _save(tmp_path / "train" / "good" / "d.png", wide)
    _save(tmp_path / "test" / "good" / "a.tif", grey())
    _save(tmp_path / "test" / "dent" / "a.png", grey())
    s = folder(_settings(tmp_path))
    assert s.channels == 1 and not s.has_masks
    assert len(s.train) + len(s.holdout) == 4 and len(s.test) == 2
    items = [s.train[i] for i in range(len(s.train))] + [s.holdout[i] for i in range(len(s.holdout))]
    wide_item = next(it for it in items if it["path"].endswith("d.png"))
    np.testing.assert_allclose(wide_item["image"].numpy(), 32768 / 65535, atol=1e-6)
    anomalous = next(s.test[i] for i in range(2) if s.test[i]["label"] == 1)
    assert anomalous["defect"] == "dent" and anomalous["mask"].shape == (1, SIZE, SIZE)
    assert anomalous["mask"].sum() == 0                                 # no ground truth: all zeros

    # channels=3 repeats the grey channel.
    s3 = folder(_settings(tmp_path, channels=3))
    img = s3.test[0]["image"]
    assert s3.channels == 3 and img.shape == (3, SIZE, SIZE)
    torch.testing.assert_close(img[1], img[0])
    torch.testing.assert_close(img[2], img[0])


def test_palette_and_rgba_convert_to_rgb_and_to_grey(tmp_path):
    rng = np.random.default_rng()
    rgba = rng.integers(0, 256, size=(SIZE, SIZE, 4), dtype=np.uint8)
    _save(tmp_path / "train" / "good" / "a.png", rgba)
    _save(tmp_path / "train" / "good" / "b.gif", _rgb(rng, SIZE, SIZE), mode="P")
    _save(tmp_path / "test" / "good" / "a.png", rgba)
    _save(tmp_path / "test" / "bad" / "a.png", rgba)
    s = folder(_settings(tmp_path))
    assert s.channels == 3
    np.testing.assert_allclose(s.test[0]["image"].permute(1, 2, 0).numpy(), rgba[..., :3] / 255.0, atol=1e-6)
    s1 = folder(_settings(tmp_path, channels=1))
    ref = np.asarray(Image.fromarray(rgba).convert("L"), dtype=np.float32) / 255
    assert s1.channels == 1
    np.testing.assert_allclose(s1.test[0]["image"][0].numpy(), ref, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("kind", ["garbage", "truncated_png", "truncated_jpeg", "empty"])
def test_unreadable_image_fails_naming_it_and_skip_bad_skips_it(tmp_path, kind):
    rng = np.random.default_rng()
    _mvtec(tmp_path, rng)
    bad = tmp_path / "test" / "crack" / ("zz.jpg" if kind == "truncated_jpeg" else "zz.png")
    if kind == "garbage":
        bad.write_bytes(rng.integers(0, 256, size=500, dtype=np.uint8).tobytes())
    elif kind == "empty":
        bad.write_bytes(b"")
    else:
        _save(bad, _rgb(rng, 64, 64))
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    _save(tmp_path / "ground_truth" / "crack" / "zz_mask.png", _mask(rng))
    with pytest.raises(DataError, match=r"--skip-bad") as e:
        folder(_settings(tmp_path))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    s = folder(_settings(tmp_path, skip_bad=True))
    assert len(s.skipped) == 1 and s.skipped[0].startswith(f"{bad}: ")
    assert len(s.test) == 6 and all(s.test[i]["path"] != str(bad) for i in range(len(s.test)))


def test_unreadable_mask_fails_and_skip_bad_skips_its_image(tmp_path):
    _mvtec(tmp_path, np.random.default_rng())
    bad = tmp_path / "ground_truth" / "hole" / "001_mask.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="--skip-bad") as e:
        folder(_settings(tmp_path))
    assert str(bad) in str(e.value)
    s = folder(_settings(tmp_path, skip_bad=True))
    assert [x.split(":")[0] for x in s.skipped] == [str(bad)]
    assert str(tmp_path / "test" / "hole" / "001.png") not in {s.test[i]["path"] for i in range(len(s.test))}


def test_mask_of_another_size_names_both_files_and_sizes(tmp_path):
    rng = np.random.default_rng()
    _mvtec(tmp_path, rng)
    mask = _save(tmp_path / "ground_truth" / "hole" / "000_mask.png", _mask(rng, 21, 30))
    for skip_bad in (False, True):                        # a wrong mask is a labelling error, never skipped
        with pytest.raises(DataError) as e:
            folder(_settings(tmp_path, skip_bad=skip_bad))
        msg = str(e.value)
        assert str(mask) in msg and str(tmp_path / "test" / "hole" / "000.png") in msg
        assert "30x21" in msg and "30x20" in msg


def test_missing_mask_when_ground_truth_exists(tmp_path):
    _mvtec(tmp_path, np.random.default_rng())
    (tmp_path / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError, match="001_mask.png"):
        folder(_settings(tmp_path))


def test_mask_named_like_its_image_is_accepted(tmp_path):
    rng = np.random.default_rng()
    _mvtec(tmp_path, rng, masks=False)
    m = _mask(rng)
    _save(tmp_path / "ground_truth" / "crack" / "000.png", m)
    _save(tmp_path / "ground_truth" / "crack" / "001.png", m)
    _save(tmp_path / "ground_truth" / "hole" / "000.bmp", m)
    _save(tmp_path / "ground_truth" / "hole" / "001.png", m)
    s = folder(_settings(tmp_path))
    assert s.has_masks
    masks = [s.test[i]["mask"] for i in range(len(s.test)) if s.test[i]["label"] == 1]
    assert len(masks) == 4
    for mk in masks:
        np.testing.assert_array_equal(mk[0].numpy(), _nearest_reference(m, SIZE))


@pytest.mark.parametrize("case", ["missing_root", "no_root", "empty_root", "empty_train", "no_test",
                                  "empty_test"])
def test_missing_or_empty_folders_give_one_line_errors(tmp_path, case):
    root = tmp_path / "data"
    if case != "missing_root":
        root.mkdir()
    if case in ("empty_train", "no_test", "empty_test"):
        (root / "train" / "good").mkdir(parents=True)
        if case != "empty_train":
            _save(root / "train" / "good" / "a.png", _rgb(np.random.default_rng()))
        if case == "empty_test":
            (root / "test" / "good").mkdir(parents=True)
        elif case == "empty_train":
            _save(root / "test" / "good" / "a.png", _rgb(np.random.default_rng()))
    settings = DataSettings(name="folder", root=None if case == "no_root" else str(root))
    with pytest.raises(DataError) as e:
        folder(settings)
    msg = str(e.value)
    assert "\n" not in msg and "train/good" in msg and "MVTec" in msg
    if case != "no_root":
        assert str(root) in msg


def test_too_few_training_images(tmp_path):
    rng = np.random.default_rng()
    _save(tmp_path / "train" / "good" / "a.png", _rgb(rng))
    _save(tmp_path / "test" / "good" / "a.png", _rgb(rng))
    with pytest.raises(DataError, match="at least 2"):
        folder(_settings(tmp_path))


def test_holdout_is_seeded(tmp_path):
    rng = np.random.default_rng()
    for i in range(20):
        _save(tmp_path / "train" / "good" / f"{i:02d}.png", _rgb(rng, 4, 4))
    _save(tmp_path / "test" / "good" / "a.png", _rgb(rng, 4, 4))

    def held(seed: int, fraction: float = 0.25) -> list[str]:
        s = folder(_settings(tmp_path, seed=seed, holdout_fraction=fraction))
        assert len(s.train) + len(s.holdout) == 20
        return [s.holdout[i]["path"] for i in range(len(s.holdout))]

    assert held(0) == held(0) and len(held(0)) == 5 and len(held(0, 0.1)) == 2
    assert any(held(seed) != held(0) for seed in range(1, 6))
