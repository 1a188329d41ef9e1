"""Export a fitted ``reconad.Detector`` to one ONNX file, with its parity proven at export (docs/deploy.md).

The graph goes from the raw image to the outputs: resize to the trained size as ``Detector`` does
(antialiased bilinear), the model, its primary scorer (blur, pooling, the reference scale it fitted), the map
back at the input's size, and the threshold. Custom ops are decomposed into standard ONNX ops
(``reconad.deploy.onnx_ops``). Every export then scores a sample with PyTorch (``Detector``) and with
onnxruntime and writes ``export_report.json`` beside the file; the ``.onnx`` appears (temp file, rename) only
when they agree.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..config import to_dict
from ..data.base import resize_images
from ..engine.runtime import RunError
from ..io import atomic_path, write_json
from .inferencer import FORMAT, OUTPUTS   # the file contract, kept where the torch-free reader checks it
from .onnx_ops import MIN_OPSET, translation_table

if TYPE_CHECKING:
    from ..api import Detector

__all__ = ["FORMAT", "OUTPUTS", "ExportError", "ExportReport", "export_onnx"]

SAMPLE_SIZE = 32          # test images scored for the parity check
# a pixel is not averaged as a score is: rank-based layers (max-pool, top-k masks) may flip a near-tie there
MAP_FACTOR = 10


class ExportError(RunError):
    """A detector that cannot be exported faithfully, or an export whose parity check failed; the message
    names the component, op or image and why."""


@dataclass
class ExportReport:
    """What ``export_onnx`` measured (also written to ``export_report.json`` beside the file)."""

    path: str
    report: str
    passed: bool
    sample: str                         # where the parity images came from
    n_images: int
    tolerance: float                    # relative: scores may differ by tolerance * max|score|
    score_bound: float
    max_abs_score_diff: float
    mean_abs_score_diff: float
    max_abs_map_diff: float
    mean_abs_map_diff: float
    map_bound: float
    decisions_identical: bool
    borderline: list[str] = field(default_factory=list)   # within score_bound of the threshold
    failures: list[str] = field(default_factory=list)
    opset: int = MIN_OPSET
    resize: str = "graph"
    dynamic_batch: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- the graph

class _Graph(nn.Module):
    """image (N, C, H, W) in [0, 1] -> (score (N,), anomaly_map (N, H, W), is_anomaly (N,))."""

    def __init__(self, model: nn.Module, image_size: int, threshold: float | None, resize: bool) -> None:
        super().__init__()
        self.model, self.size, self.resize = model, image_size, resize
        # score > t for a float32 score is score > (the largest float32 <= t): exact, whatever t's rounding
        t32 = None if threshold is None else _float32_below(threshold)
        self.register_buffer("threshold", torch.tensor(math.inf if t32 is None else t32, dtype=torch.float32))
        self.map_index = 0

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = image.shape[-2:]
        x = image
        if self.resize:  # reconad.data.base.resize_images; at the trained size it is the identity
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0.0, 1.0)
        scores = list(self.model.score(self.model(x)).values())
        score = scores[0].image.float()
        pixel = scores[self.map_index].pixel.float()
        if self.resize:  # Detector.anomaly_map: bilinear back to the input's size
            pixel = F.interpolate(pixel.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return score, pixel, score > self.threshold


def _float32_below(t: float) -> float:
    t32 = np.float32(t)
    return float(t32 if float(t32) <= t else np.nextafter(t32, np.float32(-np.inf)))


# ------------------------------------------------------------------------------------------- refusals

def _component_names(det: Detector) -> dict[str, str]:
    m = det.config_.model
    out = {kind: f"{kind} {cc.name!r}" for kind, cc in
           (("masker", m.masker), ("encoder", m.encoder), ("memory", m.memory), ("decoder", m.decoder)) if cc}
    out.update({f"scorer{i}": f"scorer {n!r}" for i, n in enumerate(det.model_.scorer_names)})
    return out


def _check_exportable(det: Detector, opset: int) -> int:
    """Refusals that need no tracing; returns the index of the scorer giving the maps."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: the decompositions of reconad::memory_address and "
                          f"reconad::topk_mask (ReduceMax / ReduceMin with axes as an input) and the antialiased "
                          f"Resize of the graph need opset >= {MIN_OPSET}; export with --opset {MIN_OPSET}")
    model = det.model_
    names = model.scorer_names
    with_maps = _scorers_with_maps(det)
    if not with_maps:
        raise ExportError(f"scorer(s) {', '.join(names)} give no pixel maps; the ONNX file's anomaly_map output "
                          f"needs one (add a scorer with maps, e.g. l2)")
    for i in {0, with_maps[0]}:
        if model.scorers[i].set_level:
            raise ExportError(f"scorer {names[i]!r} cannot be exported: its scores are scaled over the whole scored "
                              f"set (Scorer.set_level: e.g. OLED's scale: set, ODDObjects' threshold: gamma), so an "
                              f"image's score depends on the other images; use its per-image scale (OLED's default "
                              f"scale: reference) and fit again")
    rule = det.threshold_rule_
    if rule is not None and rule.on_maps:
        raise ExportError(f"threshold rule {rule!r} decides on connected regions of the maps, not on score > "
                          f"threshold, and is not in the graph; fit with a score threshold (conformal, quantile)")
    return with_maps[0]


def _scorers_with_maps(det: Detector) -> list[int]:
    """The indices of the scorers that give pixel maps (one probe image through the model)."""
    probe = torch.rand(1, det.channels_, det.image_size_, det.image_size_, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = det.model_.score(det.model_(probe.to(det.device_))).values()
    return [i for i, s in enumerate(scores) if s.pixel is not None]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_deterministic(det: Detector, x: torch.Tensor) -> None:
    """A component that draws at evaluation (a random masker with ``at_eval``) has no fixed graph: refused."""
    model, x = det.model_, resize_images(x, det.image_size_)
    runs = []
    for seed in (0, 1):
        with _seeded(seed), torch.no_grad():
            out = model(x.to(det.device_))
            runs.append((out, [s.image for s in model.score(out).values()]))
    (a, sa), (b, sb) = runs
    names = _component_names(det)
    for key, kind in (("mask", "masker"), ("features", "encoder"), ("memory", "memory"), ("recon", "decoder")):
        if key in a and not _same(a[key], b[key]):
            raise ExportError(f"{names[kind]} draws random numbers at evaluation (two runs on the same images "
                              f"differ): an ONNX graph would freeze one draw; turn its randomness off at "
                              f"evaluation (e.g. random_block's at_eval: false)")
    for i, (u, v) in enumerate(zip(sa, sb)):
        if not _same(u, v):
            raise ExportError(f"{names[f'scorer{i}']} gives different scores for the same images on two runs: it "
                              f"draws random numbers at evaluation and cannot be exported")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return all(_same(u, v) for u, v in zip(a, b))
    return True


def _blame(det: Detector, x: torch.Tensor) -> str | None:
    """The first component that ``torch.export`` cannot trace on its own (None when each can)."""
    model, names, x = det.model_, _component_names(det), resize_images(x, det.image_size_)
    parts = [(k, m) for k, m in (("masker", model.masker), ("encoder", model.encoder), ("memory", model.memory),
                                 ("decoder", model.decoder)) if m is not None]
    parts += [(f"scorer{i}", s) for i, s in enumerate(model.scorers)]
    seen: dict[str, tuple] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, k=k: seen.setdefault(k, args)) for k, m in parts]
    try:
        with torch.no_grad():
            model.score(model(x))
    finally:
        for h in hooks:
            h.remove()
    for kind, module in parts:
        if kind not in seen:
            continue
        try:
            with torch.no_grad():
                torch.export.export(module, seen[kind], strict=False)
        except Exception as exc:  # noqa: BLE001 - reported with the component's name
            return f"{names[kind]} ({type(module).__name__}): {type(exc).__name__}: {_first_line(exc)}"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


# ------------------------------------------------------------------------------------------- tracing

def _export_program(det: Detector, graph: _Graph, x: torch.Tensor, dynamic_batch: bool) -> Any:
    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=4096)
    if graph.resize:
        dims[2], dims[3] = torch.export.Dim("height", min=2, max=16384), torch.export.Dim("width", min=2, max=16384)
    try:
        with torch.no_grad():
            ep = torch.export.export(graph, (x,), dynamic_shapes=({**dims} or None,), strict=False)
    except Exception as exc:  # noqa: BLE001 - re-raised naming the component
        where = _blame(det, x) or f"the model ({type(exc).__name__}: {_first_line(exc)})"
        raise ExportError(f"cannot trace {where}; an ONNX graph needs a model torch.export can trace") from exc
    table = translation_table()
    for node in ep.graph.nodes:
        target = node.target
        ns = getattr(target, "namespace", None)
        if node.op == "call_function" and ns not in (None, "aten", "prims", "_operator") and target not in table:
            raise ExportError(f"op {target} (in the exported model) has no ONNX decomposition in "
                              f"reconad.deploy.onnx_ops; reconad does not approximate it, so the model cannot "
                              f"be exported")
    return ep


def _to_onnx(ep: Any, opset: int) -> Any:
    """The ONNX ModelProto of the exported program, inputs and outputs named by the contract."""
    prog = torch.onnx.export(ep, dynamo=True, opset_version=opset, custom_translation_table=translation_table(),
                             input_names=["image"], output_names=list(OUTPUTS), verbose=False)
    return prog.model_proto


def _metadata(det: Detector, resize: str) -> dict[str, str]:
    from ..api import _components
    from ..plugins import get_registry

    t = det.threshold_
    plugins = {c["distribution"]: c["version"] for c in _components(det.config_, get_registry())}
    meta = {"reconad_version": __version__, "method": det.config_.name,
            "config": json.dumps(to_dict(det.config_), sort_keys=True),
            "threshold": "" if t is None else repr(float(t)), "image_size": str(det.image_size_),
            "channels": str(det.channels_), "resize": resize, "plugins": json.dumps(plugins, sort_keys=True),
            "format": FORMAT}
    if det.pixel_threshold_ is not None:
        meta["pixel_threshold"] = repr(float(det.pixel_threshold_))
    return meta


# ------------------------------------------------------------------------------------------- parity

def _sample(det: Detector, sample: object) -> tuple[list[torch.Tensor], str]:
    """Image groups (each (N, C, H, W) float32 in [0, 1], one size per group) and where they come from."""
    if sample is not None:
        from .._inputs import as_images

        images = as_images(sample)
        images.dataset(det.channels_, det.image_size_)          # its channel check
        x = torch.stack([images.read(i, det.channels_).float() for i in range(images.n)])
        return [x], f"sample= ({images.what})"
    if det.fit_data_.startswith("run "):
        from ..engine.trainer import build_data
        from ..plugins import get_registry

        with contextlib.suppress(Exception):   # the run's dataset may not be here: synthetic normals then
            test = build_data(det.config_, get_registry()).test
            idx = np.unique(np.linspace(0, len(test) - 1, min(SAMPLE_SIZE, len(test))).round().astype(int))
            return [torch.stack([test[int(i)]["image"] for i in idx]).float()], f"{len(idx)} test images of the run"
    g = torch.Generator().manual_seed(0)
    size, c = det.image_size_, det.channels_
    smooth = lambda n, s: F.interpolate(torch.rand(n, c, 4, 4, generator=g), size=(s, s), mode="bilinear",  # noqa: E731
                                        align_corners=False)
    groups = [(0.8 * smooth(8, size) + 0.2 * torch.rand(8, c, size, size, generator=g)).clamp(0, 1),
              smooth(4, size * 3 // 2 + 1).clamp(0, 1)]            # another size: the graph's resize
    return groups, "synthetic smooth-noise images (the trained size and 1.5x)"


def _run_ort(path: str, x: np.ndarray, dynamic_batch: bool) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    if dynamic_batch:
        return sess.run(list(OUTPUTS), {"image": x})
    outs = [sess.run(list(OUTPUTS), {"image": x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([o[j] for o in outs]) for j in range(3)]


def _parity(det: Detector, path: str, groups: list[torch.Tensor], dynamic_batch: bool, tolerance: float
            ) -> dict[str, Any]:
    s_pt, s_ox, m_diff, m_max, d_pt, d_ox = [], [], [], [], [], []
    for x in groups:
        s_pt.append(det.decision_function(x))
        maps = det.anomaly_map(x)
        d_pt.append(det.predict(x).astype(bool))
        score, amap, flag = _run_ort(path, x.numpy(), dynamic_batch)
        s_ox.append(score.astype(np.float64))
        d_ox.append(flag.astype(bool))
        if amap.shape != maps.shape:
            raise ExportError(f"the ONNX anomaly_map has shape {amap.shape}, PyTorch's {maps.shape}")
        m_diff.append(np.abs(amap.astype(np.float64) - maps).ravel())
        m_max.append(float(np.abs(maps).max(initial=0.0)))
    sp, so, dp, do = map(np.concatenate, (s_pt, s_ox, d_pt, d_ox))
    md = np.concatenate(m_diff)
    tiny = np.finfo(np.float32).tiny
    score_bound = tolerance * max(float(np.abs(sp).max(initial=0.0)), tiny)
    map_bound = MAP_FACTOR * tolerance * max(max(m_max), tiny)
    sd = np.abs(sp - so)
    t = det.threshold_
    border = np.zeros(len(sp), bool) if t is None or not math.isfinite(t) else np.abs(sp - t) <= score_bound
    failures = []
    if sd.max(initial=0.0) > score_bound:
        i = int(sd.argmax())
        failures.append(f"scores differ by up to {sd[i]:.3g} (image {i}: PyTorch {sp[i]:.9g}, onnxruntime "
                        f"{so[i]:.9g}), above the bound {score_bound:.3g} = tolerance {tolerance:g} x max|score|")
    if md.max(initial=0.0) > map_bound:
        failures.append(f"anomaly maps differ by up to {md.max():.3g}, above {map_bound:.3g} = {MAP_FACTOR} x "
                        f"tolerance {tolerance:g} x max|map|")
    wrong = np.flatnonzero((dp != do) & ~border)
    if wrong.size:
        failures.append(f"{wrong.size} decision(s) differ away from the threshold (images {wrong[:10].tolist()})")
    return {"n_images": int(len(sp)), "score_bound": score_bound, "max_abs_score_diff": float(sd.max(initial=0.0)),
            "mean_abs_score_diff": float(sd.mean()) if sd.size else 0.0, "max_abs_map_diff": float(md.max(initial=0)),
            "mean_abs_map_diff": float(md.mean()) if md.size else 0.0, "map_bound": map_bound,
            "decisions_identical": bool((dp == do).all()),
            "borderline": [f"image {i}: score {sp[i]:.9g}, threshold {t!r}" for i in np.flatnonzero(border)],
            "failures": failures}


# ------------------------------------------------------------------------------------------- entry point

class _CallerResizes(Exception):
    """``resize="caller"`` asked for: the graph without its resize."""


def export_onnx(detector: Detector, path: str | os.PathLike, *, opset: int = MIN_OPSET, dynamic_batch: bool = True,
                sample: object = None, tolerance: float = 1e-4, resize: str = "graph") -> ExportReport:
    """Export ``detector`` to ONNX at ``path`` and prove its parity (docs/deploy.md).

    ``sample``: images for the parity check (anything ``Detector`` scores); default: the run's test images
    when the detector was loaded from a run, else synthetic images. ``tolerance``: scores (and maps) may
    differ by ``tolerance`` x their largest magnitude; decisions must be identical except for images whose
    score is that close to the threshold (listed as borderline). ``export_report.json`` is written beside
    ``path`` either way; the ``.onnx`` only when the check passes, else ``ExportError`` says what differed.
    ``resize``: ``"graph"`` (the file takes any size and resizes as trained) or ``"caller"`` (the file takes
    the trained size only and the caller resizes, as ``OnnxInferencer`` does: for runtimes whose antialiased
    ``Resize`` differs, e.g. OpenVINO; docs/deploy.md).
    """
    import onnx

    detector._check_fitted("export")
    path = os.fspath(path)
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ExportError(f"export_onnx: tolerance must be in (0, 1) (relative to the largest score), "
                          f"got {tolerance!r}")
    if resize not in ("graph", "caller"):
        raise ExportError(f"export_onnx: resize must be 'graph' or 'caller', got {resize!r}")
    map_index = _check_exportable(detector, opset)
    groups, where = _sample(detector, sample)
    model = detector.model_.eval()
    _check_deterministic(detector, groups[0][:4])
    graph = _Graph(model, detector.image_size_, detector.threshold_, resize=resize == "graph").eval()
    graph.map_index = map_index
    example = groups[0][:2] if dynamic_batch else groups[0][:1]
    try:
        if resize == "caller":
            raise _CallerResizes
        proto = _to_onnx(_export_program(detector, graph, example.to(detector.device_), dynamic_batch), opset)
    except ExportError:
        raise
    except Exception:  # noqa: BLE001 - asked for, or the antialiased resize did not convert: the caller resizes
        graph.resize = False
        ep = _export_program(detector, graph, example.to(detector.device_), dynamic_batch)
        try:
            proto, resize = _to_onnx(ep, opset), "caller"
        except Exception as exc:  # noqa: BLE001 - named
            raise ExportError(f"torch.onnx cannot convert the traced model to ONNX opset {opset}: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from exc
    if resize == "caller":   # the sample at the trained size, resized as Detector does
        groups = [resize_images(g, detector.image_size_) for g in groups]
    for key, value in _metadata(detector, resize).items():
        proto.metadata_props.add(key=key, value=value)
    report_path = os.path.join(os.path.dirname(os.path.abspath(path)), "export_report.json")
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)
        result = _parity(detector, tmp, groups, dynamic_batch, tolerance)
        report = ExportReport(path=path, report=report_path, passed=not result["failures"], sample=where,
                              tolerance=float(tolerance), opset=opset, resize=resize, dynamic_batch=dynamic_batch,
                              **result)
        write_json(report_path, report.to_dict())
        if not report.passed:
            raise ExportError(f"{path}: parity check failed, no file written ({'; '.join(report.failures)}); "
                              f"see {report_path}. A model with rank-based layers (OLED's top-k mask, max-pool) "
                              f"can move by a flipped near-tie: check the report, then raise --tolerance")
    return report
