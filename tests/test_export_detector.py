"""reconad.deploy.export_onnx / Detector.export / `reconad export`: every image method exports and scores as
PyTorch does under onnxruntime (or is refused by name), the ONNX file contract, and each refusal and bad input."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from test_api import EXTRA, TINY, TINY_METHOD, patches  # noqa: E402 - the Detector tests' tiny fits

from reconad import Detector  # noqa: E402
from reconad.api import ArtifactError, config_names  # noqa: E402
from reconad.cli import main  # noqa: E402
from reconad.deploy import ExportError, export_onnx  # noqa: E402
from reconad.deploy import export as export_module  # noqa: E402
from reconad.engine import CheckpointError  # noqa: E402
from reconad.thresholds import Fixed  # noqa: E402

META = {"reconad_version", "method", "config", "threshold", "image_size", "channels", "resize", "plugins", "format"}
# configs whose export is refused, with the refusal's words: random blocks hidden at evaluation too
REFUSED = {"oled/cae_random_mask": r"masker 'random_block' draws random numbers at evaluation"}


def session(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def run_onnx(path: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """The file's outputs by name for (N, H, W) images (one channel) or (N, H, W, 3)."""
    s = session(path)
    nchw = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"image": np.ascontiguousarray(nchw)})))


def tolerance(det: Detector) -> float:
    """1e-4 (the default); 1e-3 behind OLED's top-k mask, where ORT's last-bit differences can flip which of two
    near-tied pixels is hidden (measured: 4e-4 of the largest score on a resized image)."""
    masker = det.config_.model.masker
    return 1e-3 if masker is not None and masker.name == "oled" else 1e-4


def assert_parity(det: Detector, path: str, x: np.ndarray) -> None:
    """onnxruntime's outputs against the PyTorch Detector's, computed here (not read from the report), within
    the export's bounds: tolerance x max|score| for scores, 10 x that for map pixels."""
    out, tol = run_onnx(path, x), tolerance(det)
    want = det.decision_function(x)
    np.testing.assert_allclose(out["score"], want, rtol=0, atol=tol * np.abs(want).max())
    maps = det.anomaly_map(x)
    assert out["anomaly_map"].shape == maps.shape == x.shape[:3]
    np.testing.assert_allclose(out["anomaly_map"], maps, rtol=0, atol=10 * tol * np.abs(maps).max())
    assert out["is_anomaly"].dtype == np.bool_
    np.testing.assert_array_equal(out["is_anomaly"], det.predict(x).astype(bool))


NAMES = [pytest.param(n, marks=pytest.mark.slow) if "/" in n else n for n in config_names() if n != "mmae/video"]


@pytest.mark.parametrize("name", NAMES)
def test_every_image_method_exports_with_parity(name, tmp_path):
    x = patches((0, 256), 64)
    extra = EXTRA.get(name, EXTRA.get(name.split("/")[0], {}) if "mmae" not in name else {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = Detector(name, **TINY_METHOD, **extra).fit(x)
        path = str(tmp_path / "m.onnx")
        if name in REFUSED:
            with pytest.raises(ExportError, match=REFUSED[name]):
                det.export(path)
            assert os.listdir(tmp_path) == []
            return
        report = det.export(path, tolerance=tolerance(det))
        assert report.passed and report.decisions_identical and report.resize == "graph"
        new = patches((256, 400), 6, size=24)          # another size: the graph resizes as Detector does
        assert_parity(det, path, new)
        assert_parity(det, path, x[:5])
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert META <= set(meta) and meta["format"] == "reconad-onnx/1" and meta["channels"] == "1"
    assert float(meta["threshold"]) == det.threshold_ and int(meta["image_size"]) == det.image_size_
    assert json.loads(meta["config"])["model"]["encoder"]["name"] == det.config_.model.encoder.name


@pytest.fixture(scope="module")
def fitted() -> Detector:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Detector("memae", **{**TINY, "data.holdout_fraction": 0.5}).fit(patches((0, 128), 64))


def test_contract_inputs_outputs_and_report(fitted, tmp_path):
    report = export_onnx(fitted, tmp_path / "m.onnx", sample=patches((256, 400), 8))
    s = session(str(tmp_path / "m.onnx"))
    (inp,) = s.get_inputs()
    assert inp.name == "image" and inp.type == "tensor(float)" and inp.shape[1] == 1
    assert all(isinstance(d, str) for d in (inp.shape[0], inp.shape[2], inp.shape[3]))     # dynamic N, H, W
    assert [(o.name, o.type) for o in s.get_outputs()] == [("score", "tensor(float)"), ("anomaly_map", "tensor(float)"),
                                                           ("is_anomaly", "tensor(bool)")]
    on_disk = json.loads((tmp_path / "export_report.json").read_text())
    assert on_disk == report.to_dict() and on_disk["n_images"] == 8 and on_disk["sample"].startswith("sample=")
    scores = fitted.decision_function(patches((256, 400), 8))
    got = run_onnx(str(tmp_path / "m.onnx"), patches((256, 400), 8))["score"]
    assert on_disk["max_abs_score_diff"] == pytest.approx(np.abs(scores - got).max(), abs=1e-12)


def test_no_dynamic_batch_fixes_the_batch_to_one(fitted, tmp_path):
    path = str(tmp_path / "m.onnx")
    fitted.export(path, dynamic_batch=False)
    assert session(path).get_inputs()[0].shape[0] == 1
    assert_parity(fitted, path, patches((256, 400), 1))
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(path, patches((256, 400), 2))


def test_threshold_in_float32_decides_as_float64():
    """score > t for float32 scores is score > _float32_below(t): the graph's comparison is exact."""
    rng = np.random.default_rng(0)
    for t in rng.normal(size=200):
        below = np.float32(export_module._float32_below(float(t)))
        s = np.nextafter(np.float32(t), np.float32([-np.inf, np.inf]))
        s = np.concatenate([s, [np.float32(t)], rng.normal(float(t), 1e-6, 20).astype(np.float32)])
        np.testing.assert_array_equal(s.astype(np.float64) > t, s > below)


def test_refuses_a_set_level_scorer(tmp_path):
    x = patches((0, 256), 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = Detector("oled", **TINY_METHOD, **{"model.scorers": [{"name": "oled", "cont": "l1", "scale": "set"}]}
                       ).fit(x)
    with pytest.raises(ExportError, match=r"scorer 'oled' cannot be exported: its scores are scaled over the whole"):
        det.export(tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_refuses_a_random_masker_at_eval(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = Detector("memae", **TINY, **{"model.masker": {"name": "random_block", "block": 4, "at_eval": True}}
                       ).fit(patches((0, 128), 32))
    with pytest.raises(ExportError, match=r"masker 'random_block' draws random numbers at evaluation"):
        det.export(tmp_path / "m.onnx")


class _Branchy(torch.nn.Module):
    """A decoder whose output depends on a Python branch on its values: torch.export cannot trace it."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, h):  # noqa: ANN001, ANN201
        out = self.inner(h)
        return out if float(out.mean()) > -1.0 else -out


def test_refuses_an_untraceable_component_by_name(fitted, tmp_path):
    decoder = fitted.model_.decoder
    fitted.model_.decoder = _Branchy(decoder)
    try:
        with pytest.raises(ExportError, match=r"cannot trace decoder 'conv' \(_Branchy\)"):
            fitted.export(tmp_path / "m.onnx")
    finally:
        fitted.model_.decoder = decoder
    assert os.listdir(tmp_path) == []


def test_refuses_an_op_without_decomposition(fitted, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "translation_table", dict)
    with pytest.raises(ExportError, match=r"op reconad\.memory_address\.default .* has no ONNX decomposition"):
        fitted.export(tmp_path / "m.onnx")


def test_refuses_an_old_opset_and_a_bad_tolerance(fitted, tmp_path):
    with pytest.raises(ExportError, match=r"opset 17 is too old: .*reconad::topk_mask.* need opset >= 18"):
        fitted.export(tmp_path / "m.onnx", opset=17)
    with pytest.raises(ExportError, match=r"tolerance must be in \(0, 1\)"):
        fitted.export(tmp_path / "m.onnx", tolerance=0)
    assert os.listdir(tmp_path) == []


def test_failed_parity_leaves_no_onnx_and_a_report(fitted, tmp_path, monkeypatch):
    real = export_module._run_ort

    def off_by_a_bit(path, x, dynamic_batch):  # noqa: ANN001, ANN202 - a converter that got a score wrong
        score, amap, flag = real(path, x, dynamic_batch)
        return score * 1.01, amap, flag

    monkeypatch.setattr(export_module, "_run_ort", off_by_a_bit)
    with pytest.raises(ExportError, match=r"parity check failed, no file written \(scores differ by up to"):
        fitted.export(tmp_path / "m.onnx")
    assert sorted(os.listdir(tmp_path)) == ["export_report.json"]
    assert json.loads((tmp_path / "export_report.json").read_text())["passed"] is False


def test_borderline_decisions_are_listed_not_failed(fitted, tmp_path, monkeypatch):
    x = patches((256, 400), 8)
    s = fitted.decision_function(x)
    rule = Fixed(float(s[3])).fit()                                  # image 3 sits on the threshold
    monkeypatch.setattr(fitted, "threshold_rule_", rule)
    monkeypatch.setattr(fitted, "threshold_", rule.threshold_)
    pytorch = fitted.predict(x)
    real = export_module._run_ort

    def flip_three(path, x, dynamic_batch):  # noqa: ANN001, ANN202
        score, amap, flag = real(path, x, dynamic_batch)
        flag[3] = not pytorch[3]                                   # disagrees with PyTorch on image 3
        return score, amap, flag

    monkeypatch.setattr(export_module, "_run_ort", flip_three)
    report = fitted.export(tmp_path / "m.onnx", sample=x)
    assert report.passed and not report.decisions_identical
    assert len(report.borderline) == 1 and report.borderline[0].startswith("image 3:")


# ------------------------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_base):
    import yaml

    folder = tmp_path_factory.mktemp("run")
    cfg = folder / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_base))
    assert main(["run", str(cfg), "--out", str(folder / "run")]) == 0
    return folder / "run"


def test_cli_exports_a_run_with_its_test_images(tiny_run, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    assert "decisions identical: True" in capsys.readouterr().out
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["passed"] and report["sample"].endswith("test images of the run")
    det = Detector.load(str(tiny_run), device="cpu")
    x = patches((256, 400), 6)
    assert_parity(det, str(out), x)


def test_cli_refuses_an_unfinished_run(tiny_run, tmp_path, capsys):
    state = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    state["finished"] = False
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((tiny_run / "config.yaml").read_text())
    torch.save(state, run / "checkpoint.pt")
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "unfinished run" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(CheckpointError, match="unfinished run"):
        Detector.load(str(run))


def test_cli_refuses_a_corrupt_artifact(fitted, tmp_path, capsys):
    path = fitted.save(tmp_path / "d.safetensors")
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0xFF
    open(path, "wb").write(bytes(data))
    assert main(["export", path, "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"{path}: its contents do not match the sha256" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["d.safetensors"]
    with pytest.raises(ArtifactError):
        Detector.load(path)


def test_exported_run_under_the_inferencer_scores_as_the_detector(tiny_run, tmp_path):
    """End to end: `reconad export` of a CLI run, then OnnxInferencer and `reconad predict --onnx` on a folder of
    PNG files against the PyTorch Detector and `reconad predict` on the same files."""
    import csv

    from PIL import Image

    from reconad.deploy import OnnxInferencer

    model = tmp_path / "m.onnx"
    assert main(["export", str(tiny_run), "--out", str(model)]) == 0
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, im in enumerate(patches((256, 400), 6, size=40)):
        Image.fromarray((im * 255).round().astype(np.uint8)).save(folder / ("sub" if i % 2 else "") / f"{i}.png")
    det, inf = Detector.load(str(tiny_run), device="cpu"), OnnxInferencer(str(model))
    want, got = det.decision_function(str(folder)), inf.decision_function(str(folder))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
    maps = det.anomaly_map(str(folder))
    np.testing.assert_allclose(inf.anomaly_map(str(folder)), maps, rtol=0, atol=1e-3 * np.abs(maps).max())
    np.testing.assert_array_equal(inf.predict(str(folder)), det.predict(str(folder)))

    def scores(out):
        with open(out / "scores.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        return {r["path"]: float(r["score"]) for r in rows}

    assert main(["predict", "--onnx", str(model), str(folder), "--out", str(tmp_path / "onnx")]) == 0
    assert main(["predict", str(tiny_run), str(folder), "--out", str(tmp_path / "torch")]) == 0
    a, b = scores(tmp_path / "onnx"), scores(tmp_path / "torch")
    assert sorted(a) == sorted(b) and len(a) == 6
    np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=0,
                               atol=1e-4 * max(map(abs, b.values())))


def test_caller_resize_export_runs_under_the_inferencer_and_openvino(fitted, tmp_path):
    """``resize="caller"``: the file takes the trained size only; OnnxInferencer resizes in numpy as Detector
    does, and OpenVINO (whose antialiased Resize differs from torch's) gives PyTorch's outputs at that size."""
    from reconad.deploy import OnnxInferencer

    path = str(tmp_path / "m.onnx")
    report = fitted.export(path, resize="caller")
    assert report.passed and report.resize == "caller"
    (inp,) = session(path).get_inputs()
    assert inp.shape[2:] == [fitted.image_size_, fitted.image_size_]
    x = patches((256, 400), 6, size=fitted.image_size_ + 12)            # another size: resized by the caller
    want = fitted.decision_function(x)
    np.testing.assert_allclose(OnnxInferencer(path).decision_function(x), want, rtol=0, atol=1e-4 * np.abs(want).max())
    ov = pytest.importorskip("openvino")
    # f32: on a CPU with bf16 units (AMD Zen 4, Intel AMX) OpenVINO computes in bf16 unless asked (scores off
    # by 5e-3 relative: measured on an AMD EPYC)
    compiled = ov.Core().compile_model(ov.Core().read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = patches((256, 400), 6)                                          # the trained size
    out = compiled({"image": x[:, None]})
    score, amap, flag = (out[o] for o in compiled.outputs)
    want, maps = fitted.decision_function(x), fitted.anomaly_map(x)
    np.testing.assert_allclose(score, want, rtol=0, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(amap, maps, rtol=0, atol=1e-3 * np.abs(maps).max())
    np.testing.assert_array_equal(flag.astype(bool), fitted.predict(x).astype(bool))
    with pytest.raises(ExportError, match="resize must be 'graph' or 'caller'"):
        fitted.export(str(tmp_path / "n.onnx"), resize="numpy")
