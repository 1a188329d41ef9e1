"""``reconad oddobjects rank`` (ODDObjects §4.4, Figures 6-7) through ``reconad.cli.main`` on the tiny COCO set
of _oddobjects_coco_fixtures.py, with a 2-step model: every object ranked once, files written atomically,
re-ranking with --checkpoint reproduces the scores, and bad input ends in one clear error."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil

import pytest
from PIL import Image

pytest.importorskip("pycocotools", reason="the coco dataset needs the [coco] extra")

from _oddobjects_coco_fixtures import make_coco, make_dirty_coco  # noqa: E402 - needs pycocotools
from reconad.cli import main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore::UserWarning")
RANK_FILES = {"rank.csv", "top_anomalous.png", "top_normal.png", "rank.html"}


@pytest.fixture(scope="module", autouse=True)
def plugin_registered():
    """The installed plugin registers the command; without it (a bare checkout) register it here."""
    from reconad import plugins

    if ("dataset", "coco") in plugins.get_registry():
        yield
        return
    from reconad_oddobjects import plugin

    pm = plugins.make_plugin_manager([plugin])
    reg = plugins.build_registry(pm)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugins, "get_plugin_manager", lambda: pm)
        mp.setattr(plugins, "get_registry", lambda: reg)
        yield


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def tiny(cache) -> list[str]:
    return ["--set", "data.image_size=16", "--set", "train.steps=2", "--set", "train.batch_size=8",
            "--set", "train.progress=false", "--set", "data.min_area=20", "--set", f"data.cache_dir={cache}",
            "--device", "cpu", "--top", "3"]


def read_rank(folder) -> list[dict]:
    with open(os.path.join(folder, "rank.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    root = tmp_path_factory.mktemp("rank")
    coco = make_coco(root)
    out = root / "out"
    rc, stdout, stderr = cli("oddobjects", "rank", "--annotations", coco["annotations"], "--images",
                             coco["images"], "--out", str(out), *tiny(root / "cache"))
    assert rc == 0, stderr
    return coco, root, out, stdout


def test_rank_lists_every_object_once_most_anomalous_first(ranked):
    coco, _, out, stdout = ranked
    assert RANK_FILES | {"config.yaml", "checkpoint.pt"} <= set(os.listdir(out))
    assert not [f for f in os.listdir(out) if f.startswith(".")], "temp files left behind"
    assert f"ranked 20 objects; every score in {out / 'rank.csv'}" in stdout
    rows = read_rank(out)
    data = json.load(open(coco["annotations"]))
    left_out = {v for k, v in coco["special"].items() if k in ("crowd", "tiny", "degenerate", "outside")}
    expected = {a["id"]: a for a in data["annotations"] if a["id"] not in left_out}
    assert sorted(int(r["annotation_id"]) for r in rows) == sorted(expected)
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {im["id"]: im["file_name"] for im in data["images"]}
    for r in rows:
        a = expected[int(r["annotation_id"])]
        assert r["category"] == names[a["category_id"]] and int(r["image_id"]) == a["image_id"]
        assert r["file_name"] == files[a["image_id"]]
    assert [int(r["rank"]) for r in rows] == list(range(1, 21))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert list(rows[0])[:6] == ["rank", "score", "image_id", "annotation_id", "category", "file_name"]


def test_rank_pictures_and_page_show_the_top_objects(ranked):
    _, _, out, _ = ranked
    rows = read_rank(out)
    for name in ("top_anomalous.png", "top_normal.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100
    page = (out / "rank.html").read_text()
    assert 'href="rank.csv"' in page and 'src="top_anomalous.png"' in page and 'src="top_normal.png"' in page
    top = page.split("most anomalous objects</h2>", 1)[1].split("<h2>", 1)[0]
    bottom = page.split("most normal objects</h2>", 1)[1].split("<h2>", 1)[0]
    for r in rows[:3]:
        assert f"<td>{r['annotation_id']}</td>" in top
    for r in rows[-3:]:
        assert f"<td>{r['annotation_id']}</td>" in bottom
    assert "with degenerate polygons" in page and "without &#x27;area&#x27;" in page   # the data warnings


def test_rank_with_a_checkpoint_reproduces_the_scores_and_filters_categories(ranked):
    coco, root, out, _ = ranked
    again = root / "again"
    rc, _, stderr = cli("oddobjects", "rank", "--annotations", coco["annotations"], "--images", coco["images"],
                        "--checkpoint", str(out), "--out", str(again), "--set", f"data.cache_dir={root / 'cache'}",
                        "--device", "cpu", "--top", "3")
    assert rc == 0, stderr
    assert set(os.listdir(again)) == RANK_FILES          # scored only: no training, no checkpoint
    first = {r["annotation_id"]: float(r["score"]) for r in read_rank(out)}
    second = {r["annotation_id"]: float(r["score"]) for r in read_rank(again)}
    assert first.keys() == second.keys()
    for k in first:
        assert second[k] == pytest.approx(first[k], abs=1e-6), k
    discs = root / "discs"
    rc, _, stderr = cli("oddobjects", "rank", "--annotations", coco["annotations"], "--images", coco["images"],
                        "--checkpoint", str(out / "checkpoint.pt"), "--out", str(discs), "--categories", "disc",
                        "--set", f"data.cache_dir={root / 'cache'}", "--device", "cpu")
    assert rc == 0, stderr
    rows = read_rank(discs)
    assert len(rows) == 10 and {r["category"] for r in rows} == {"disc"}


def test_rank_bad_input_is_one_error_and_leaves_nothing(ranked, tmp_path):
    coco, root, _, _ = ranked
    out = tmp_path / "out"
    rc, _, err = cli("oddobjects", "rank", "--annotations", str(tmp_path / "none.json"), "--images",
                     coco["images"], "--out", str(out), *tiny(tmp_path / "cache"))
    assert rc == 2 and "reconad oddobjects: error: data.annotations: file" in err and "does not exist" in err
    assert not out.exists()
    notcoco = tmp_path / "x.json"
    notcoco.write_text(json.dumps({"licenses": []}))
    rc, _, err = cli("oddobjects", "rank", "--annotations", str(notcoco), "--images", coco["images"],
                     "--out", str(out), *tiny(tmp_path / "cache"))
    assert rc == 2 and "is not a COCO annotation file" in err and not out.exists()
    rc, _, err = cli("oddobjects", "rank", "--annotations", coco["annotations"], "--images", coco["images"],
                     "--out", str(out), "--top", "0")
    assert rc == 2 and "--top: expected a positive number of objects, got 0" in err and not out.exists()

    images = tmp_path / "images"
    shutil.copytree(coco["images"], images)
    os.unlink(images / "007.png")
    rc, _, err = cli("oddobjects", "rank", "--annotations", coco["annotations"], "--images", str(images),
                     "--out", str(out), *tiny(tmp_path / "cache"))
    assert rc == 2 and "missing:" in err and "007.png" in err and not out.exists()
    rc, stdout, err = cli("oddobjects", "rank", "--annotations", coco["annotations"], "--images", str(images),
                          "--out", str(out), "--skip-bad", *tiny(tmp_path / "cache"))
    assert rc == 0, err
    assert f"skipped 1 image(s):\n  {images / '007.png'}: missing" in stdout
    assert "007.png" in (out / "rank.html").read_text()
    assert "7" not in {r["image_id"] for r in read_rank(out)}


def test_rank_finds_the_labelling_errors(tmp_path):
    """§4.4 in miniature: trained on 24 'disc' objects, the blue square labelled disc ranks first and the
    segmentation merging two discs in the top third."""
    dirty = make_dirty_coco(tmp_path / "set")
    out = tmp_path / "out"
    rc, _, err = cli("oddobjects", "rank", "--annotations", dirty["annotations"], "--images", dirty["images"],
                     "--out", str(out), "--set", "data.image_size=16", "--set", "train.steps=150",
                     "--set", "train.batch_size=8", "--set", "train.progress=false", "--set", "data.augment=false",
                     "--set", f"data.cache_dir={tmp_path / 'cache'}", "--device", "cpu")
    assert rc == 0, err
    order = [int(r["annotation_id"]) for r in read_rank(out)]
    assert len(order) == 24 and order[0] == dirty["mislabelled"]
    assert order.index(dirty["merged"]) < 8, order
