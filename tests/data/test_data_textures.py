"""The ``textures`` dataset: scikit-image photos cut into patches, synthetic defects with exact masks."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import skimage.data
import torch
from torch.utils.data import DataLoader

from reconad.data import DataError, DataSettings, textures
from reconad.data.base import check_settings, to_channels


def _items(ds) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


def _where(path: str) -> tuple[int, int]:
    y, x = re.search(r"y(\d+)_x(\d+)$", path).groups()
    return int(y), int(x)


@pytest.mark.parametrize("category", ["brick", "grass", "gravel"])
def test_masks_are_exactly_the_changed_pixels(category):
    seed = int(np.random.default_rng().integers(1 << 30))
    settings = DataSettings(name="textures", category=category, image_size=64, seed=seed)
    s = textures(settings)
    clean = textures(settings, anomaly_fraction=0.0)             # the same patches, no defects
    assert s.has_masks and s.channels == 1 and s.skipped == []
    assert (len(s.train), len(s.holdout), len(s.test)) == (435, 87, 145)
    photo = skimage.data.__dict__[category]().astype(np.float32) / 255
    kinds = Counter()
    for item, ref in zip(_items(s.test), _items(clean.test)):
        assert item["path"] == ref["path"] and ref["label"] == 0 and ref["mask"].sum() == 0
        y, x = _where(item["path"])
        np.testing.assert_array_equal(ref["image"][0].numpy(), photo[y:y + 64, x:x + 64])
        changed = item["image"] != ref["image"]
        torch.testing.assert_close(item["mask"], changed.float(), rtol=0, atol=0)
        assert item["label"] == int(changed.any())
        if item["label"]:
            kinds[item["defect"]] += 1
            # Visible: a clear change, on a defect of reasonable size.
            # (a pasted piece can match the surroundings' brightness; its structure still differs)
            assert (item["image"] - ref["image"]).abs()[changed].mean() > (0.05 if item["defect"] == "paste" else 0.12)
            assert 64 * 64 // 400 <= changed.sum() <= 64 * 64 // 2
        else:
            assert item["defect"] == "good"
    assert kinds == {"scratch": 24, "stain": 24, "paste": 24}


def test_bands_share_no_pixel_and_training_is_normal():
    s = textures(DataSettings(name="textures", category="gravel", image_size=32), patch_size=48, patch_stride=24)
    rows = {}
    for split in ("train", "holdout", "test"):
        items = _items(getattr(s, split))
        ys = [_where(it["path"])[0] for it in items]
        rows[split] = (min(ys), max(ys) + 48)
        for it in items:
            assert it["image"].shape == (1, 32, 32) and it["mask"].shape == (1, 32, 32)
            assert set(it["mask"].unique().tolist()) <= {0.0, 1.0}
    assert all(it["label"] == 0 and it["mask"].sum() == 0 for it in _items(s.train) + _items(s.holdout))
    assert rows["train"][1] <= rows["holdout"][0] and rows["holdout"][1] <= rows["test"][0]
    assert len({it["path"] for it in _items(s.train)}) == len(s.train)


def test_seeded_reproducibility():
    def make(seed: int):
        return textures(DataSettings(name="textures", category="brick", image_size=32, seed=seed))

    a, b, c = make(5), make(5), make(6)
    torch.testing.assert_close(a.test.images, b.test.images, rtol=0, atol=0)
    torch.testing.assert_close(a.test.masks, b.test.masks, rtol=0, atol=0)
    assert a.test.defects == b.test.defects
    assert not torch.equal(a.test.masks, c.test.masks)
    torch.testing.assert_close(a.train.images, c.train.images)     # training patches do not depend on the seed


def test_resized_patches_three_channels_and_one_kind():
    settings = DataSettings(name="textures", category="grass", image_size=32, channels=3, seed=11)
    s = textures(settings, patch_size=96, anomaly_fraction=1.0, defects="stain")
    clean = textures(settings, patch_size=96, anomaly_fraction=0.0)
    assert s.channels == 3
    for item, ref in zip(_items(s.test), _items(clean.test)):
        assert item["label"] == 1 and item["defect"] == "stain"
        img = item["image"]
        assert img.shape == (3, 32, 32)
        torch.testing.assert_close(img[1], img[0])
        torch.testing.assert_close(img[2], img[0])
        torch.testing.assert_close(item["mask"][0], (img[0] != ref["image"][0]).float())
    batch = next(iter(DataLoader(s.test, batch_size=8, shuffle=True)))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["mask"].shape == (8, 1, 32, 32)


@pytest.mark.parametrize("kw, match", [
    ({"category": None}, r"data.category: .*brick, grass, gravel"),
    ({"category": "brik"}, r"did you mean 'brick'"),
    ({"category": "brick", "holdout_fraction": 0.0}, r"data.holdout_fraction"),
    ({"category": "brick", "image_size": 2}, r"data.image_size"),
    ({"category": "brick", "channels": 2}, r"data.channels"),
])
def test_bad_settings(kw, match):
    with pytest.raises(DataError, match=match):
        textures(DataSettings(name="textures", **kw))


@pytest.mark.parametrize("kw, match", [
    ({"defects": "scratch,dent"}, r"data.defects"),
    ({"anomaly_fraction": 1.5}, r"data.anomaly_fraction"),
    ({"patch_size": 600}, r"data.patch_size"),
    ({"patch_size": 256, "patch_stride": 64}, r"data.patch_size"),
    ({"patch_stride": 0}, r"data.patch_stride"),
])
def test_bad_options(kw, match):
    with pytest.raises(DataError, match=match):
        textures(DataSettings(name="textures", category="brick"), **kw)


def test_to_channels_matches_luma():
    rgb = torch.rand(2, 3, 5, 5)
    grey = to_channels(rgb, 1)
    ref = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    torch.testing.assert_close(grey[:, 0], ref)
    check_settings(DataSettings(name="x"))                                   # the defaults are valid
