"""reconad.deploy.OnnxInferencer against a torch reference: small torch modules exported with
``torch.onnx.export(dynamo=True)`` and given the reconad-onnx/1 metadata, scored here the way the PyTorch path
scores (reconad.data.base.resize_images, bilinear maps back to the input size); numpy resizing against
``F.interpolate``; every bad input; and the inferencer and ``reconad predict --onnx`` where torch cannot be
imported."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from reconad._imagefiles import DataError, read_array  # noqa: E402
from reconad.cli import main  # noqa: E402
from reconad.data.base import resize_images  # noqa: E402
from reconad.deploy.inferencer import FORMAT, OnnxInferencer, OnnxModelError, resize_bilinear, \
    resize_images_array  # noqa: E402

SIZE = 16
THRESHOLD = 0.2


class _Core(torch.nn.Module):
    """(N, C, SIZE, SIZE) -> score (N,), map (N, SIZE, SIZE): a tiny reconstruction model."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = ((torch.sigmoid(self.conv(x)) - x) ** 2).mean(1)
        return m.flatten(1).mean(1) + m.flatten(1).amax(1), m


class _Graph(torch.nn.Module):
    """The contract with ``resize: graph``: any (H, W) in, resized in the graph, maps back at (H, W)."""

    def __init__(self, core: _Core, threshold: float) -> None:
        super().__init__()
        self.core, self.threshold = core, threshold

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = image.shape[-2:]
        x = F.interpolate(image, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        score, m = self.core(x)
        up = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return score, up, score > self.threshold


class _Caller(torch.nn.Module):
    """The contract with ``resize: caller``: (N, C, SIZE, SIZE) in, maps at SIZE."""

    def __init__(self, core: _Core, threshold: float) -> None:
        super().__init__()
        self.core, self.threshold = core, threshold

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        score, m = self.core(image)
        return score, m, score > self.threshold


def _metadata(channels: int, resize: str, threshold: float | None) -> dict[str, str]:
    return {"reconad_version": "0.1.0", "method": "tiny", "config": json.dumps({"name": "tiny"}),
            "threshold": "" if threshold is None else repr(threshold), "image_size": str(SIZE),
            "channels": str(channels), "resize": resize, "plugins": "{}", "format": FORMAT,
            "pixel_threshold": "0.05"}


def _set_metadata(path: str, meta: dict[str, str]) -> None:
    model = onnx.load(path)
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


def _export(module: torch.nn.Module, path: str, channels: int, dynamic: dict[int, str] | None, batch: int = 2) -> None:
    x = torch.rand(batch, channels, SIZE + 4 if dynamic and 2 in dynamic else SIZE, SIZE)
    shapes = None if dynamic is None else {"image": {k: torch.export.Dim(v, min=2 if k else 1)
                                                     for k, v in dynamic.items()}}
    with torch.no_grad():
        prog = torch.onnx.export(module.eval(), (x,), dynamo=True, input_names=["image"], opset_version=18,
                                 output_names=["score", "anomaly_map", "is_anomaly"], dynamic_shapes=shapes,
                                 verbose=False)
    prog.save(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (path, core): RGB with the resize in the graph, grey with the caller resizing, and the grey
    one with a fixed batch of 2."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, channels, wrap, dynamic, resize in (
            ("graph", 3, _Graph, {0: "N", 2: "H", 3: "W"}, "graph"),
            ("caller", 1, _Caller, {0: "N"}, "caller"),
            ("fixed", 1, _Caller, None, "caller")):
        core = _Core(channels).eval()
        path = str(folder / f"{name}.onnx")
        _export(wrap(core, THRESHOLD), path, channels, dynamic)
        _set_metadata(path, _metadata(channels, resize, THRESHOLD))
        out[name] = (path, core)
    return out


@torch.no_grad()
def _reference(core: _Core, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The PyTorch path: each (C, H, W) image resized as training did, scored, its map bilinear to (H, W)."""
    scores, maps = [], []
    for im in images:
        x = resize_images(torch.from_numpy(im)[None].float(), SIZE)
        s, m = core(x)
        up = F.interpolate(m[:, None], size=im.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        scores.append(float(s[0]))
        maps.append(up.numpy())
    return np.array(scores), maps


def _write_images(root, rng) -> list[str]:
    """A folder with sub-folders, grey and RGB files of two sizes, a non-image file and a hidden image."""
    paths = []
    for rel, shape, mode in (("b/z.png", (20, 24, 3), "RGB"), ("a.png", (16, 16), "L"), ("b/a.jpg", (12, 12, 3), "RGB"),
                             ("c/d/e.png", (20, 24), "L"), ("f.bmp", (12, 12, 3), "RGB")):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(p)
        paths.append(str(p))
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / ".hidden.png")
    return sorted(paths)


def test_numpy_resizing_matches_torch():
    rng = np.random.default_rng(0)
    for h, w, size in ((37, 23, 16), (16, 16, 16), (9, 12, 16), (64, 40, 7), (5, 70, 32)):
        x = rng.random((2, 3, h, w), dtype=np.float32)
        want = resize_images(torch.from_numpy(x), size).numpy()
        np.testing.assert_allclose(resize_images_array(x, size), want, rtol=0, atol=2e-6)
        m = rng.random((2, h, w), dtype=np.float32)
        for out in ((size, size), (h * 2 + 1, w + 3), (max(1, h // 3), max(1, w // 2))):
            want = F.interpolate(torch.from_numpy(m)[:, None], size=out, mode="bilinear", align_corners=False)[:, 0]
            np.testing.assert_allclose(resize_bilinear(m, *out), want.numpy(), rtol=0, atol=2e-6)


def test_read_array_converts_channels_like_pillow(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    luma = (rgb.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(read_array(tmp_path / "c.png", 1)[0], luma, atol=1e-6)
    np.testing.assert_allclose(read_array(tmp_path / "c.png", 3), rgb.transpose(2, 0, 1) / 255, atol=1e-7)
    np.testing.assert_allclose(read_array(tmp_path / "g.png", 3), np.repeat(grey[None] / 255, 3, 0), atol=1e-7)


def test_graph_resize_folder_of_mixed_sizes_matches_the_torch_path(models, tmp_path):
    path, core = models["graph"]
    paths = _write_images(tmp_path / "imgs", np.random.default_rng(2))
    inf = OnnxInferencer(path)
    assert (inf.channels, inf.image_size, inf.resize, inf.threshold_) == (3, SIZE, "graph", THRESHOLD)
    # the folder's images in predict's order (recursive, sorted, hidden and non-image files left out)
    from reconad.engine.predict import image_names
    assert [p for p, _ in image_names([str(tmp_path / "imgs")])] == paths
    # grey files converted to RGB as the dataset reads them (PIL -> RGB repeat)
    images = [np.asarray(Image.open(p).convert("RGB"), np.float32).transpose(2, 0, 1) / 255 for p in paths]
    want_scores, want_maps = _reference(core, images)
    scores = inf.decision_function(str(tmp_path / "imgs"))
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-6)
    maps = inf.anomaly_map(paths)
    assert isinstance(maps, list) and [m.shape for m in maps] == [m.shape for m in want_maps]
    for got, want in zip(maps, want_maps):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    flags = inf.predict(paths)
    assert flags.dtype == np.int64 and 0 < flags.sum() < len(paths)   # the threshold splits these images
    np.testing.assert_array_equal(flags, (want_scores > THRESHOLD).astype(np.int64))


@pytest.mark.parametrize("name", ["caller", "fixed"])
def test_caller_resize_arrays_of_any_size_match_the_torch_path(models, name):
    path, core = models[name]
    inf = OnnxInferencer(path)
    rng = np.random.default_rng(3)
    for x in (rng.integers(0, 256, (3, 20, 24), dtype=np.uint8), rng.random((5, SIZE, SIZE, 1)).astype(np.float32)):
        images = [im for im in (x[..., None] if x.ndim == 3 else x).transpose(0, 3, 1, 2).astype(np.float32)
                  / (255 if x.dtype == np.uint8 else 1)]
        want_scores, want_maps = _reference(core, images)
        np.testing.assert_allclose(inf.decision_function(x), want_scores, rtol=1e-4, atol=1e-6)
        maps = inf.anomaly_map(x)
        assert maps.shape == (len(x), *x.shape[1:3]) and maps.dtype == np.float32
        np.testing.assert_allclose(maps, np.stack(want_maps), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(inf.predict(x), (want_scores > THRESHOLD).astype(np.int64))
        np.testing.assert_array_equal(inf.score_samples(x), -inf.decision_function(x))


def test_batching_does_not_change_results(models):
    path, _ = models["caller"]
    x = np.random.default_rng(4).random((7, SIZE, SIZE)).astype(np.float32)
    whole = OnnxInferencer(path, batch_size=32).anomaly_map(x)
    np.testing.assert_allclose(OnnxInferencer(path, batch_size=3).anomaly_map(x), whole, rtol=0, atol=1e-6)


def test_predict_onnx_cli_writes_what_predict_writes(models, tmp_path, capsys):
    path, core = models["graph"]
    paths = _write_images(tmp_path / "imgs", np.random.default_rng(5))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    assert main(["predict", "--onnx", path, str(tmp_path / "imgs"), "--out", str(out)]) == 2
    assert "broken.png" in capsys.readouterr().err and not (out / "heatmaps").exists()
    assert main(["predict", "--onnx", path, str(tmp_path / "imgs"), "--out", str(out), "--skip-bad"]) == 0
    assert "broken.png" in (out / "skipped.txt").read_text()
    with open(out / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [os.path.relpath(p, tmp_path / "imgs") for p in paths]
    assert [r["path"] for r in rows] == names
    images = [np.asarray(Image.open(p).convert("RGB"), np.float32).transpose(2, 0, 1) / 255 for p in paths]
    want, _ = _reference(core, images)
    np.testing.assert_allclose([float(r["score"]) for r in rows], want, rtol=1e-4, atol=1e-6)
    assert [int(r["predicted"]) for r in rows] == (want > THRESHOLD).astype(int).tolist()
    for name, p in zip(names, paths):   # heatmaps mirror the relative paths, at each image's own size
        with Image.open(out / "heatmaps" / (os.path.splitext(name)[0] + ".png")) as heat:
            assert heat.size == Image.open(p).size


def test_bad_model_files_are_one_clear_error(models, tmp_path):
    with pytest.raises(OnnxModelError, match="missing.onnx: no such file"):
        OnnxInferencer(tmp_path / "missing.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(OnnxModelError, match="corrupt.onnx: not a readable ONNX model"):
        OnnxInferencer(tmp_path / "corrupt.onnx")
    path, _ = models["caller"]
    for meta, pattern in (({}, "not a reconad export: metadata format=None"),
                          ({**_metadata(1, "caller", 0.1), "channels": "2"}, "channels='2', expected one of '1', '3'"),
                          ({**_metadata(1, "caller", 0.1), "resize": "torch"}, "resize='torch'"),
                          ({**_metadata(1, "caller", 0.1), "image_size": "big"}, "image_size='big'"),
                          ({**_metadata(1, "caller", 0.1), "threshold": "high"}, "threshold='high' is not a number")):
        bad = str(tmp_path / "bad.onnx")
        model = onnx.load(path)
        onnx.save(model, bad)
        _set_metadata(bad, meta)
        with pytest.raises(OnnxModelError, match=pattern):
            OnnxInferencer(bad)


def test_bad_images_are_one_clear_error(models, tmp_path):
    inf = OnnxInferencer(models["caller"][0])    # grey
    with pytest.raises(DataError, match=r"numpy array \(2, 16, 16, 3\) uint8 has 3 channel\(s\) but the model "
                                        r"takes 1-channel images"):
        inf.decision_function(np.zeros((2, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(DataError, match="NaN or inf"):
        inf.decision_function(np.full((1, SIZE, SIZE), np.nan, np.float32))
    with pytest.raises(DataError, match=r"float images must be in \[0, 1\]"):
        inf.decision_function(np.full((1, SIZE, SIZE), 3.0, np.float32))
    with pytest.raises(DataError, match="one image"):
        inf.decision_function(np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(DataError, match="empty list"):
        inf.decision_function([])
    with pytest.raises(DataError, match="does not exist"):
        inf.decision_function(str(tmp_path / "nowhere"))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"cannot read image .*bad\.png"):
        inf.decision_function([str(tmp_path / "bad.png")])
    with pytest.raises(DataError, match="got a dict"):
        inf.decision_function({"image": 1})
    no_threshold = str(tmp_path / "nothr.onnx")
    onnx.save(onnx.load(models["caller"][0]), no_threshold)
    _set_metadata(no_threshold, _metadata(1, "caller", None))
    inf = OnnxInferencer(no_threshold)
    assert inf.threshold_ is None
    with pytest.raises(DataError, match="exported without a threshold"):
        inf.predict(np.zeros((1, SIZE, SIZE), np.uint8))


def test_runs_where_torch_cannot_be_imported(models, tmp_path):
    path, _ = models["graph"]
    paths = _write_images(tmp_path / "imgs", np.random.default_rng(6))
    want = OnnxInferencer(path).decision_function(paths).tolist()
    script = textwrap.dedent(f"""
        import json, sys
        class _NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, _NoTorch())
        from reconad.deploy import OnnxInferencer
        from reconad.cli import main
        scores = OnnxInferencer({path!r}).decision_function({str(tmp_path / "imgs")!r}).tolist()
        rc = main(["-q", "predict", "--onnx", {path!r}, {str(tmp_path / "imgs")!r}, "--out", {str(tmp_path / "out")!r}])
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print(json.dumps({{"scores": scores, "rc": rc}}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0 and (tmp_path / "out" / "scores.csv").is_file()
    np.testing.assert_allclose(got["scores"], want, rtol=0, atol=0)


def test_onnx_predict_is_routed_with_a_quiet_flag_on_either_side():
    from reconad.cli import _onnx_predict

    tail = ["--onnx", "m.onnx", "imgs", "--out", "o"]
    assert _onnx_predict(["-q", "predict", *tail]) == [*tail, "-q"]
    assert _onnx_predict(["predict", *tail, "-q"]) == [*tail, "-q"]
    assert _onnx_predict(["predict", "runs/x", "imgs", "--out", "o"]) is None
    assert _onnx_predict(["run", "--onnx"]) is None
