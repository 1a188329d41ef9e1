"""report.html and the files beside it, checked against scores.csv / metrics.json computed independently, and
the page itself opened in a real headless browser (Debian's chromium; skipped with the reason without one)."""
from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from reconad.config import validate
from reconad.engine import run
from reconad.engine.evaluate import ScoreSet
from reconad.engine.report import _html, _picks, _proxy_note, threshold_sentence

DEFECTS = {"scratch": 6, "spot": 5}


def _write_folder(root):
    """A tiny MVTec-layout folder: grey noise as normal, bright lines ("scratch") and faint dots ("spot") as
    defects, and one unreadable file in train/good (skipped with data.skip_bad)."""
    rng = np.random.default_rng(0)

    def save(path, arr):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(arr.astype(np.uint8)).save(path)

    def normal():
        return 100 + rng.integers(0, 30, (16, 16))

    for i in range(30):
        save(f"{root}/train/good/{i:03d}.png", normal())
    for i in range(6):
        save(f"{root}/test/good/{i:03d}.png", normal())
    for i in range(DEFECTS["scratch"]):
        a = normal()
        a[4 + i, :] = 255
        save(f"{root}/test/scratch/{i:03d}.png", a)
    for i in range(DEFECTS["spot"]):
        a = normal()
        a[8, 8] = 140
        save(f"{root}/test/spot/{i:03d}.png", a)
    with open(f"{root}/train/good/broken.png", "wb") as fh:
        fh.write(b"not a png")


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    _write_folder(str(base / "data"))
    raw = {"name": "report", "seed": 0,
           "data": {"name": "folder", "root": str(base / "data"), "image_size": 16, "skip_bad": True,
                    "holdout_fraction": 0.3},
           "model": {"encoder": {"name": "conv", "channels": [8, 16]}, "decoder": {"name": "conv"},
                     "scorers": [{"name": "l2"}]},
           "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "progress": False},
           "test": {"report_images": 2}}
    out = base / "out"
    res = run(validate(raw), str(out), log=lambda s: None)
    return out, res


def _scores(out):
    return list(csv.DictReader(open(out / "scores.csv")))


def test_every_file_in_a_run_folder_has_the_same_permissions(report_run):
    out, _ = report_run
    modes = {f: os.stat(out / f).st_mode & 0o777 for f in os.listdir(out)}
    assert {"config.yaml", "checkpoint.pt", "metrics.json", "scores.csv", "roc.png", "hist.png", "grid.png",
            "report.html"} <= set(modes)
    umask = os.umask(0)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_plots_get_the_permissions_of_every_other_file(tmp_path):
    from reconad.io import write_text
    from reconad.metrics.plots import plot_pro, plot_roc, plot_score_hist

    write_text(str(tmp_path / "a.txt"), "x")
    plot_roc([0, 0.5, 1], [0, 0.8, 1], tmp_path / "roc.png", point=(0.5, 0.8))
    plot_pro([0, 0.1, 0.5], [0, 0.5, 1], tmp_path / "pro.png")
    plot_score_hist([0.1, 0.2], [0.5, 0.9], tmp_path / "hist.png", threshold=0.3)
    modes = {f: os.stat(tmp_path / f).st_mode & 0o777 for f in os.listdir(tmp_path)}
    assert len(modes) == 4 and len(set(modes.values())) == 1, modes


def test_per_defect_table_and_confusion_match_scores_csv(report_run):
    out, _ = report_run
    rows = _scores(out)
    page = (out / "report.html").read_text()
    counts, flagged, sums = Counter(), Counter(), Counter()
    for r in rows:
        counts[r["defect"]] += 1
        flagged[r["defect"]] += int(r["predicted"])
        sums[r["defect"]] += float(r["score"])
    assert counts == Counter({"good": 6, **DEFECTS})
    table = page.split("<h3>Per defect type</h3>")[1].split("</table>")[0]
    for defect in counts:
        m = re.search(rf"<tr><th>{defect}</th><td class='num'>(\d+)</td><td class='num'>(\d+)</td>"
                      rf"<td class='num'>([\d.]+)[^<]*</td><td class='num'>([^<]+)</td>", table)
        assert m, defect
        assert (int(m[1]), int(m[2])) == (counts[defect], flagged[defect])
        assert float(m[3]) == pytest.approx(100 * flagged[defect] / counts[defect], abs=0.05)
        assert float(m[4]) == pytest.approx(sums[defect] / counts[defect], rel=1e-3)
    tp = sum(int(r["predicted"]) for r in rows if r["label"] == "1")
    fp = sum(int(r["predicted"]) for r in rows if r["label"] == "0")
    assert f"{tp} (caught)" in page and f"{fp} (false alarm)" in page
    n_flagged = sum(int(r["predicted"]) for r in rows)
    assert f"Flagged images ({n_flagged} of {len(rows)})" in page
    body = page.split('<table class="sortable" id="flagged">')[1].split("</table>")[0]
    assert body.count("<tr>") == n_flagged + 1      # the header row and one row per flagged image


def test_threshold_metrics_facts_and_skipped_files_are_in_the_page(report_run):
    out, res = report_run
    page = (out / "report.html").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    n_hold = len(res.train.splits.holdout)
    assert f"the 0.99 quantile of the scores of {n_hold} held-out normal images" in page
    assert f"<b>{metrics['threshold']:.4g}</b>" in page
    assert "0.5 = coin toss" in page                                  # each metric with its meaning
    import reconad

    assert f"<th>reconad</th><td>{reconad.__version__}</td>" in page and "<th>training time</th>" in page
    # the unreadable training file: in the console result, the report and metrics.json
    assert len(res.train.splits.skipped) == 1 and "broken.png" in res.train.splits.skipped[0]
    assert metrics["skipped"] == res.train.splits.skipped
    assert f"<li>{html.escape(res.train.splits.skipped[0])}</li>" in page
    for name in ("hist.png", "roc.png", "grid.png"):
        assert f'src="{name}"' in page
    # fewer than 20 held-out images: metrics.json's warning is on the page too, by the metrics
    assert any(f"only {n_hold} held-out normal image" in w for w in metrics["warnings"])
    assert "Read these metrics with care" in page
    assert all(f"<li>{html.escape(w)}</li>" in page for w in metrics["warnings"])


def _set(primary, labels):
    n = len(primary)
    return ScoreSet(["s"], {"s": np.asarray(primary, np.float64)}, None, np.asarray(labels, np.int64), None,
                    [f"img{i}" for i in range(n)], ["good" if y == 0 else "bad" for y in labels])


def test_picks_are_the_mistakes_nearest_the_threshold():
    rng = np.random.default_rng(1)
    s = rng.random(40)
    y = (rng.random(40) < 0.5).astype(np.int64)
    t = 0.5
    groups = _picks(_set(s, y), s > t, t, 3)
    fp = sorted((v, i) for i, v in enumerate(s) if v > t and y[i] == 0)          # flagged normals, lowest first
    fn = sorted(((-v, i) for i, v in enumerate(s) if v <= t and y[i] == 1))      # missed anomalies, highest first
    assert groups["false positive, nearest the threshold"] == [i for _, i in fp[:3]]
    assert groups["false negative, nearest the threshold"] == [i for _, i in fn[:3]]
    assert groups["most anomalous"] == list(np.argsort(-s)[:3])
    assert groups["least anomalous"] == list(np.argsort(s)[:3])


def test_threshold_sentence_names_the_rule():
    held = {"threshold": 0.25, "quantile": 0.95, "n_holdout": 12, "thresholds": {"s": 0.25}}
    text = threshold_sentence(held, "s")
    assert "0.95 quantile of the scores of 12 held-out normal images" in text and "5% to be flagged" in text
    fixed = {**held, "threshold": 0.9, "fixed": ["s"]}
    text = threshold_sentence(fixed, "s")
    assert "fixed by the scorer itself" in text and "quantile" not in text
    conformal = {"threshold": 0.3, "alpha": 0.05, "n_holdout": 40, "thresholds": {"s": 0.3}, "pixel_threshold": 0.2}
    text = threshold_sentence(conformal, "s")
    assert "split-conformal threshold on the scores of 40 held-out normal images" in text and "at most 5%" in text
    assert "above <b>0.2</b>" in text
    assert "No threshold" in threshold_sentence({}, "s")


def test_video_runs_mark_image_metrics_as_a_proxy():
    assert _proxy_note({"data": {"name": "folder"}}) is None
    note = _proxy_note({"data": {"name": "video", "unit": "clips"}})
    assert "proxy" in note and "clips" in note and "reconad video" in note
    scores = _set([0.1, 0.9], [0, 1])
    metrics = {"n_test": 2, "image_auroc": 1.0, "image_f1": 1.0, "aupro": 0.5, "aupro_fpr_limit": 0.05}
    page = _html(metrics, {"threshold": 0.5, "quantile": 0.99, "n_holdout": 3}, {"name": "v", "data": {"name": "video"}},
                 {}, scores=scores, flagged=np.array([False, True]), skipped=[], facts={}, groups={})
    row = page.split("<th>image_auroc</th>")[1].split("</tr>")[0]
    assert "proxy: measured over the patches" in row
    assert "proxy" not in page.split("<th>n_test</th>")[1].split("</tr>")[0]
    row = page.split("<th>aupro</th>")[1].split("</tr>")[0]        # AUPRO in plain words, with its limit
    assert "small defect counts as much as a large one" in row and "at most 5% of normal pixels" in row


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


# Injected at the top of <head>: records script errors and failed loads, then after the load event writes
# what it saw (images, broken ones, errors, the score column after one click on its header) into the DOM.
_PROBE = """<script>window.__errors=[];window.addEventListener("error",function(e){window.__errors.push(
String(e.message||(e.target&&(e.target.src||e.target.href))))},true);
window.addEventListener("load",function(){var imgs=Array.from(document.images);
var broken=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).map(function(i){return i.getAttribute("src")});
var th=document.querySelectorAll("#flagged thead th");if(th.length)th[th.length-1].click();
var col=Array.from(document.querySelectorAll("#flagged tbody tr")).map(function(r){return parseFloat(r.cells[r.cells.length-1].dataset.v)});
var m=document.createElement("pre");m.id="reconad-check";m.textContent=JSON.stringify({images:imgs.length,broken:broken,
errors:window.__errors,table:!!document.querySelector("table#flagged"),sorted:col});document.body.appendChild(m);});</script>"""


def _open_in_browser(folder, page: str, tmp_path) -> tuple[dict, str]:
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium); the browser check needs one")
    check = folder / "_check.html"
    check.write_text(page.replace("<head>", "<head>" + _PROBE, 1))
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                           check.as_uri()], capture_output=True, text=True, timeout=120, env=env)
    m = re.search(r'<pre id="reconad-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the page did not finish loading in chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(m[1])), proc.stderr


def test_report_loads_in_a_headless_browser(report_run, tmp_path):
    out, _ = report_run
    folder = tmp_path / "run"
    shutil.copytree(out, folder)
    seen, stderr = _open_in_browser(folder, (folder / "report.html").read_text(), tmp_path)
    assert seen["errors"] == [] and "Uncaught" not in stderr, (seen["errors"], stderr[-2000:])
    assert seen["images"] >= 3 and seen["broken"] == [], seen
    assert seen["table"]
    assert seen["sorted"] == sorted(seen["sorted"]) and len(seen["sorted"]) > 1   # the header click sorts


def test_the_browser_check_sees_a_broken_page(report_run, tmp_path):
    """The check above can fail: a missing image and a script error are both caught."""
    out, _ = report_run
    folder = tmp_path / "run"
    shutil.copytree(out, folder)
    page = (folder / "report.html").read_text().replace(
        "</body>", '<img src="missing.png"><script>notDefined()</script></body>')
    seen, stderr = _open_in_browser(folder, page, tmp_path)
    assert seen["broken"] == ["missing.png"]
    assert any("notDefined" in e for e in seen["errors"]) and "Uncaught" in stderr


def test_a_threshold_that_does_not_carry_is_called_out():
    """Per-set min-max scores (OLED's s_avg): a threshold taken on held-out normals flags almost nothing of a
    test set full of anomalies; the page says the threshold, not the ranking, fails. A fitting one is quiet."""
    from reconad import metrics as M
    from reconad.engine.report import threshold_check

    rng = np.random.default_rng(0)
    raw = np.r_[rng.normal(1, 0.1, 10), rng.normal(2, 0.1, 90)]
    y = np.r_[np.zeros(10), np.ones(90)].astype(np.int64)
    scaled = (raw - raw.min()) / (raw.max() - raw.min())
    for s, t, warned in ((scaled, 0.97, True), (raw, 1.3, False)):
        metrics = {"image_auroc": M.auroc(s, y), "image_f1": M.f1_score(s, y, t)}
        text = threshold_check(_set(s, y), metrics)
        assert ("does not suit this test set" in text) == warned, (metrics, text)
        if warned:
            assert f"{M.f1_max(s, y):.3f}" in text and f"{metrics['image_f1']:.3f}" in text
