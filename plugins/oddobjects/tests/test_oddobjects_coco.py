"""The ``coco`` dataset (ODDObjects §3.3, §4.3) on a tiny COCO set drawn in _oddobjects_coco_fixtures.py:
extraction checked against a numpy oracle, polygon = RLE, the messy cases, the cache, the protocols,
the augmentations, and bad input."""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

mask_utils = pytest.importorskip("pycocotools.mask", reason="the coco dataset needs the [coco] extra")

from _oddobjects_coco_fixtures import COLOURS, H, W, make_coco  # noqa: E402 - needs pycocotools
from reconad.config import ConfigError, validate  # noqa: E402
from reconad.data import DataError, DataSettings  # noqa: E402
from reconad_oddobjects import _coco_extract  # noqa: E402
from reconad_oddobjects.augment import ObjectAugment  # noqa: E402
from reconad_oddobjects.data import coco_dataset  # noqa: E402


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco"))


# pycocotools' Cython decode trips a numpy 2 deprecation warning (the oracle below calls it directly)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def build(coco, cache, **kw):
    return build_warned(coco, cache, **kw)[0]


def build_warned(coco, cache, *, image_size=32, seed=0, skip_bad=False, holdout_fraction=0.1, channels=None, **kw):
    """(splits, the warning messages the factory gave)."""
    settings = DataSettings(name="coco", image_size=image_size, seed=seed, skip_bad=skip_bad,
                            holdout_fraction=holdout_fraction, channels=channels)
    kw.setdefault("annotations", coco["annotations"])
    kw.setdefault("images", coco["images"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = coco_dataset(settings, cache_dir=str(cache), **kw)
    return splits, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def by_ann(ds) -> dict[int, int]:
    return {o.annotation_id: i for i, o in enumerate(ds.objects)}


def ann_id(item) -> int:
    return int(item["path"].split("/")[-1])


def test_objects_are_centred_cropped_masked_like_a_numpy_oracle(coco, tmp_path):
    # the square of image 1 (annotation 102) is 12x12: at image_size 12 no resizing happens, so the crop must
    # equal the image's pixels inside the square (times the decoded mask), exactly
    splits = build(coco, tmp_path, image_size=12, protocol="rank", min_area=20)
    item = splits.test[by_ann(splits.test)[102]]
    data = json.load(open(coco["annotations"]))
    ann = next(a for a in data["annotations"] if a["id"] == 102)
    rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], H, W))
    x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
    img = np.asarray(Image.open(os.path.join(coco["images"], "001.png")).convert("RGB"), np.float32) / 255
    oracle = (img * mask_utils.decode(rle)[..., None])[y:y + h, x:x + w].transpose(2, 0, 1)
    assert item["image"].shape == (3, 12, 12)
    np.testing.assert_allclose(item["image"].numpy(), oracle, atol=1e-6)
    assert item["label"] == 0 and item["mask"].shape == (1, 12, 12) and not item["mask"].any()
    assert item["path"] == "coco/1/102"


def test_every_object_is_centred_and_its_background_removed(coco, tmp_path):
    splits = build(coco, tmp_path, protocol="rank", min_area=20)
    for i in range(len(splits.test)):
        item, info = splits.test[i], splits.test.objects[i]
        img = item["image"]
        fg = img.amax(0) > 0.02
        rows, cols = torch.nonzero(fg.any(1)).flatten(), torch.nonzero(fg.any(0)).flatten()
        # the longer side fills the frame; the shorter one is centred
        spans = (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
        assert max(spans) >= 31, (info, spans)
        for idx in (rows, cols):
            assert abs(int(idx[0]) - (31 - int(idx[-1]))) <= 2, (info, idx)
        assert float(img[:, 0, 0].abs().sum()) == 0.0 or info.category == "square"   # corners are background
        r, g, b = img[:, 15:17, 15:17].mean((1, 2)).tolist()
        colour = np.array(COLOURS[{"disc": 1, "square": 2, "triangle": 3}[info.category]]) / 255
        if info.image_id != 3:      # image 3 is grayscale
            assert np.allclose([r, g, b], colour, atol=0.08), (info, (r, g, b))


def test_polygon_and_rle_segmentations_give_the_same_objects(coco, tmp_path):
    data = json.load(open(coco["annotations"]))
    for a in data["annotations"]:
        if a["id"] in (101, 102):
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], H, W))
            if a["id"] == 101:      # compressed
                a["segmentation"] = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
            else:                    # uncompressed, column-major run lengths
                flat = mask_utils.decode(rle).flatten(order="F")
                change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
                a["segmentation"] = {"size": [H, W], "counts": np.diff(np.r_[0, change]).tolist()}
    path = tmp_path / "rle.json"
    path.write_text(json.dumps(data))
    a = build(coco, tmp_path / "c1", protocol="rank", min_area=20)
    b = build(coco, tmp_path / "c2", protocol="rank", min_area=20, annotations=str(path))
    for k in (101, 102):
        assert torch.equal(a.test[by_ann(a.test)[k]]["image"], b.test[by_ann(b.test)[k]]["image"]), k


def test_crowd_tiny_degenerate_and_missing_area_are_skipped_or_repaired_with_counts(coco, tmp_path):
    sp = coco["special"]
    splits, caught = build_warned(coco, tmp_path, protocol="rank", min_area=20)
    ids = set(by_ann(splits.test))
    assert sp["crowd"] not in ids and sp["tiny"] not in ids
    assert sp["degenerate"] not in ids and sp["outside"] not in ids
    assert sp["no_area"] in ids and sp["rle"] in ids and sp["border"] in ids
    text = "\n".join(caught)
    assert f"skipped 1 annotation(s) with degenerate polygons (fewer than 3 points, or not numbers): ids " \
           f"{sp['degenerate']}" in text
    assert f"skipped 1 annotation(s) with zero area (degenerate, or outside the image): ids {sp['outside']}" in text
    assert f"repaired 1 annotation(s) without 'area' (computed from the segmentation): ids {sp['no_area']}" in text
    assert "left out 1 object(s) smaller than data.min_area=20 pixels" in text
    assert "left out 1 crowd annotation(s)" in text
    assert splits.test.notes == caught
    more = build(coco, tmp_path, protocol="rank", min_area=0, include_crowd=True)
    assert {sp["crowd"], sp["tiny"]} <= set(by_ann(more.test))
    crowd = more.test[by_ann(more.test)[sp["crowd"]]]["image"]
    assert crowd.amax(0).gt(0).float().mean() > 0.3       # the 8x18 crowd rectangle, centred and widened


def test_grayscale_and_rgba_images_give_rgb_objects_and_channels_converts(coco, tmp_path):
    splits = build(coco, tmp_path, protocol="rank", min_area=20)
    objs = splits.test.objects
    grey = [i for i, o in enumerate(objs) if o.image_id == 3]
    rgba = [i for i, o in enumerate(objs) if o.image_id == 4]
    assert grey and rgba
    for i in grey:
        img = splits.test[i]["image"]
        assert img.shape[0] == 3 and torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    disc = next(i for i in rgba if objs[i].category == "disc")
    r, g, b = splits.test[disc]["image"][:, 14:18, 14:18].mean((1, 2)).tolist()
    assert r > 0.75 and g < 0.25 and b < 0.25
    one = build(coco, tmp_path, protocol="rank", min_area=20, channels=1)
    assert one.channels == 1 and one.test[0]["image"].shape == (1, 32, 32)
    assert one.train[0]["image"].shape == (1, 32, 32)


def test_border_objects_are_padded_not_shifted(coco, tmp_path):
    splits = build(coco, tmp_path, image_size=32, protocol="rank", min_area=20)
    info = splits.test.objects[by_ann(splits.test)[coco["special"]["border"]]]
    assert info.bbox[0] == 0            # cut by the left border
    img = splits.test[by_ann(splits.test)[coco["special"]["border"]]]["image"]
    cols = torch.nonzero(img.amax(0).gt(0.02).any(0)).flatten()
    # zero padding on both sides (up to one original pixel of rounding, 32/14 here)
    assert int(cols[0]) > 0 and abs(int(cols[0]) - (31 - int(cols[-1]))) <= 3


def test_the_cache_is_reused_keyed_by_settings_and_written_atomically(coco, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = build(coco, cache, protocol="rank", min_area=20)
    files = sorted(os.listdir(cache))
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")
    assert not [f for f in files if f.startswith(".")]

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the objects are cached")

    monkeypatch.setattr(_coco_extract, "_read_rgb", no_decoding)
    second = build(coco, cache, protocol="rank", min_area=20)
    assert len(second.test) == len(first.test)
    for i in range(len(first.test)):
        assert torch.equal(first.test[i]["image"], second.test[i]["image"])
    with pytest.raises(DataError, match="cannot read image .*decoded"):    # other settings: another key
        build(coco, cache, protocol="rank", min_area=20, margin=0.1)
    assert sorted(os.listdir(cache)) == files                             # nothing half-written


def test_cache_location_follows_reconad_cache(coco, tmp_path, monkeypatch):
    monkeypatch.setenv("RECONAD_CACHE", str(tmp_path / "env"))
    settings = DataSettings(name="coco", image_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco_dataset(settings, annotations=coco["annotations"], images=coco["images"], protocol="rank")
    assert len(os.listdir(tmp_path / "env" / "coco")) == 2
    assert _coco_extract.cache_root(None) == tmp_path / "env" / "coco"


def test_single_class_protocol_splits_by_image(coco, tmp_path):
    s = build(coco, tmp_path, normal_categories="disc", train_fraction=0.5, holdout_fraction=0.25)
    train_imgs = {o.image_id for o in s.train.objects} | {o.image_id for o in s.holdout.objects}
    test_imgs = {o.image_id for o in s.test.objects}
    assert not train_imgs & test_imgs and len(test_imgs) == 5
    for ds in (s.train, s.holdout):
        assert {o.category for o in ds.objects} == {"disc"} and set(ds.labels) == {0}
    assert not {o.annotation_id for o in s.train.objects} & {o.annotation_id for o in s.holdout.objects}
    for i, o in enumerate(s.test.objects):
        item = s.test[i]
        assert item["label"] == int(o.category != "disc")
        assert item["defect"] == ("good" if o.category == "disc" else o.category)
    assert s.channels == 3 and s.image_size == 32 and not s.has_masks and s.skipped == []
    again = build(coco, tmp_path, normal_categories="disc", train_fraction=0.5, holdout_fraction=0.25)
    assert [o.annotation_id for o in again.test.objects] == [o.annotation_id for o in s.test.objects]
    other = build(coco, tmp_path, normal_categories="disc", train_fraction=0.5, holdout_fraction=0.25, seed=3)
    assert {o.image_id for o in other.test.objects} != test_imgs


def test_multi_class_protocol_and_options(coco, tmp_path):
    m = build(coco, tmp_path, normal_categories=["disc", "Square"], train_fraction=0.5)
    assert {o.category for o in m.train.objects} == {"disc", "square"}
    assert {m.test.defects[i] for i in range(len(m.test)) if m.test.labels[i]} == {"triangle"}
    ids = build(coco, tmp_path, normal_categories=[1, 2], train_fraction=0.5, protocol="multi")
    assert [o.annotation_id for o in ids.test.objects] == [o.annotation_id for o in m.test.objects]
    capped = build(coco, tmp_path, normal_categories="disc", train_fraction=0.5, max_anomalies=1)
    assert sum(capped.test.labels) == 1
    only = build(coco, tmp_path, normal_categories="disc", categories="triangle", train_fraction=0.5)
    assert {o.category for o in only.test.objects} == {"disc", "triangle"}
    with pytest.raises(DataError, match="data.protocol: single needs exactly one normal category, got 2"):
        build(coco, tmp_path, normal_categories="disc,square", protocol="single")
    with pytest.raises(DataError, match="data.normal_categories: the single- and multi-class protocols need"):
        build(coco, tmp_path)
    with pytest.raises(DataError, match=r"no category 'dsic'.*did you mean 'disc'\?"):
        build(coco, tmp_path, normal_categories="dsic")
    with pytest.raises(DataError, match=r"data.train_fraction: expected a number in \(0, 1\)"):
        build(coco, tmp_path, normal_categories="disc", train_fraction=1.0)


def test_rank_protocol_trains_on_and_scores_every_object(coco, tmp_path):
    r = build(coco, tmp_path, protocol="rank", min_area=20)
    paths = [o.path for o in r.test.objects]
    assert [o.path for o in r.train.objects] == paths and len(paths) == 20
    assert set(o.path for o in r.holdout.objects) <= set(paths) and len(r.holdout) >= 1
    assert set(r.test.labels) == {0}
    discs = build(coco, tmp_path, protocol="rank", normal_categories="disc")
    assert {o.category for o in discs.test.objects} == {"disc"} and len(discs.test) == 10


def test_augmentations_only_touch_training_objects_and_follow_the_torch_seed(coco, tmp_path):
    s = build(coco, tmp_path, protocol="rank", min_area=20)
    assert isinstance(s.train.augment, ObjectAugment)
    assert s.holdout.augment is None and s.test.augment is None
    torch.manual_seed(0)
    a = s.train[0]["image"]
    torch.manual_seed(0)
    assert torch.equal(a, s.train[0]["image"])
    assert not torch.equal(a, s.train[0]["image"])
    assert not torch.equal(a, s.test[0]["image"])
    assert torch.equal(s.test[0]["image"], s.test[0]["image"])
    plain = build(coco, tmp_path, protocol="rank", min_area=20, augment=False)
    assert plain.train.augment is None and torch.equal(plain.train[0]["image"], plain.test[0]["image"])


def test_augment_is_the_papers_transform():
    torch.manual_seed(1)
    x = torch.zeros(4, 3, 32, 32)
    x[:, :, 8:24, 4:20] = torch.rand(4, 3, 16, 16) * 0.5 + 0.25
    ident = ObjectAugment(rotation=0, shift=0, zoom=(1, 1), brightness=0, hflip=0)
    torch.testing.assert_close(ident(x), x, atol=1e-6, rtol=0)
    flip = ObjectAugment(rotation=0, shift=0, zoom=(1, 1), brightness=0, hflip=1)
    torch.testing.assert_close(flip(x), x.flip(-1), atol=1e-6, rtol=0)
    bright = ObjectAugment(rotation=0, shift=0, zoom=(1, 1), brightness=0.1, hflip=0)
    ratio = bright(x)[x > 0] / x[x > 0]
    assert ratio.min() >= 0.9 - 1e-6 and ratio.max() <= 1.1 + 1e-6
    out = ObjectAugment(rotation=0, shift=0, zoom=(1.25, 1.25), brightness=0, hflip=0)(x)
    mass = out.sum((1, 2, 3)) / x.sum((1, 2, 3))
    torch.testing.assert_close(mass, torch.full((4,), 1 / 1.25 ** 2), rtol=0.03, atol=0)   # zoomed out: shrinks
    theta, b = ObjectAugment().theta(2000, torch.Generator().manual_seed(0))
    det = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]
    zoom = det.abs().sqrt()
    assert zoom.min() >= 1.0 - 1e-9 and zoom.max() <= 1.25 + 1e-9
    angle = torch.atan2(theta[:, 1, 0], theta[:, 1, 1]).abs()
    assert angle.max() <= math.radians(5) + 1e-9 and angle.max() > math.radians(4.5)
    assert theta[:, :, 2].abs().max() <= 0.02 + 1e-9          # 1 % of the side = 0.02 in [-1, 1] coordinates
    assert 0.4 < (det < 0).double().mean() < 0.6               # half of them flipped
    assert b.min() >= 0.9 and b.max() <= 1.1
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    aug = ObjectAugment()
    assert torch.equal(aug(x, g1), aug(x, g2)) and aug(x[0]).shape == x[0].shape


def test_bad_input_is_one_clear_error(coco, tmp_path):
    with pytest.raises(DataError, match="data.annotations: file .*nope.json does not exist"):
        build(coco, tmp_path, annotations=str(tmp_path / "nope.json"), protocol="rank")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(DataError, match=r"bad.json is not valid JSON \(line 1, column 13"):
        build(coco, tmp_path, annotations=str(bad), protocol="rank")
    bad.write_text('{"images": [], "annotations": {}}')
    with pytest.raises(DataError, match="not a COCO annotation file: 'annotations', 'categories' missing or not a"):
        build(coco, tmp_path, annotations=str(bad), protocol="rank")
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="holds a JSON list, not an object"):
        build(coco, tmp_path, annotations=str(bad), protocol="rank")
    with pytest.raises(DataError, match="data.images: folder .*missing_dir does not exist"):
        build(coco, tmp_path, images=str(tmp_path / "missing_dir"), protocol="rank")


def test_missing_image_is_named_or_skipped_and_listed(coco, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(coco["images"], images)
    os.unlink(images / "004.png")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"1 referenced image\(s\) missing: .*004.png; .*--skip-bad"):
        build(coco, cache, images=str(images), protocol="rank")
    assert not cache.exists() or not os.listdir(cache)
    s = build(coco, cache, images=str(images), protocol="rank", skip_bad=True)
    assert s.skipped == [f"{images / '004.png'}: missing"]
    assert 4 not in {o.image_id for o in s.test.objects} and len(s.test) > 0
    shutil.copy(os.path.join(coco["images"], "004.png"), images / "004.png")
    (images / "006.png").write_bytes(b"not a png")                    # a corrupt image
    with pytest.raises(DataError, match=r"cannot read image .*006.png \(image id 6\): .*--skip-bad"):
        build(coco, tmp_path / "c2", images=str(images), protocol="rank")
    assert not (tmp_path / "c2").exists() or not os.listdir(tmp_path / "c2")
    s = build(coco, tmp_path / "c3", images=str(images), protocol="rank", skip_bad=True)
    assert len(s.skipped) == 1 and s.skipped[0].startswith(f"{images / '006.png'}: ")
    assert 6 not in {o.image_id for o in s.test.objects} and 4 in {o.image_id for o in s.test.objects}


def test_messy_files_never_crash(coco, tmp_path):
    data = json.load(open(coco["annotations"]))
    data["annotations"] += [
        {"id": 900, "image_id": 1, "category_id": 1, "segmentation": [], "bbox": [2, 2, 10, 10]},   # bbox only
        {"id": 901, "image_id": 1, "category_id": 1},                                                # nothing
        {"id": 902, "image_id": 77, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},         # no image
        {"id": 903, "image_id": 1, "category_id": 42, "segmentation": [[1, 1, 9, 1, 9, 9]]},         # no category
        {"id": 904, "image_id": 1, "category_id": 1, "segmentation": {"size": [3, 3], "counts": [9]}},
        {"id": 905, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": "@@@"}},
        {"id": 906, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 20, 1, 20, 20], [3, 3]]},
        {"id": 101, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},          # duplicate
        {"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},                      # no id
    ]
    data["images"].append({"id": 11, "file_name": "001.png"})          # no width / height: read from the file
    path = tmp_path / "messy.json"
    path.write_text(json.dumps(data))
    s, caught = build_warned(coco, tmp_path, annotations=str(path), protocol="rank", min_area=0)
    text = "\n".join(caught)
    for needle in ("without a segmentation, their bbox used as the outline: ids 900",
                   "without a segmentation or bbox: ids 901", "whose image_id is not in 'images': ids 902",
                   "whose category_id is not in 'categories': ids 903",
                   "with an RLE whose size is not the image's height and width: ids 904",
                   "with a corrupt RLE segmentation: ids 905", "with some degenerate polygon parts (dropped): ids 906",
                   "with a duplicate id (the first is kept): ids 101", "without an integer id (shown by position)",
                   "repaired 1 image(s) without width/height (read from the file): ids 11"):
        assert needle in text, needle
    ids = set(by_ann(s.test))
    assert {900, 906} <= ids and not {901, 902, 903, 904, 905} & ids


def test_config_keys_are_validated(coco):
    from reconad.plugins import get_registry

    reg = get_registry()
    if ("dataset", "coco") not in reg:
        from reconad.plugins import build_registry, make_plugin_manager
        from reconad_oddobjects import plugin

        reg = build_registry(make_plugin_manager([plugin], entry_points=False))
    raw = {"data": {"name": "coco", "annotations": coco["annotations"], "images": coco["images"],
                    "normal_categories": ["disc"], "train_fraction": "most", "min_aera": 3},
           "model": {"encoder": "conv", "decoder": "conv"}}
    with pytest.raises(ConfigError) as err:
        validate(raw, reg)
    assert "data.train_fraction: expected float, got 'most'" in str(err.value)
    assert "data.min_aera: unknown key; did you mean 'min_area'?" in str(err.value)
    raw["data"].update(train_fraction=0.5)
    del raw["data"]["min_aera"]
    cfg = validate(raw, reg)
    assert cfg.data_options["normal_categories"] == ["disc"]


def test_without_pycocotools_the_error_names_the_extra(coco, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)     # makes the import fail
    with pytest.raises(DataError, match=r"needs pycocotools .*pip install 'reconad\[coco\]'"):
        build(coco, tmp_path, protocol="rank")
