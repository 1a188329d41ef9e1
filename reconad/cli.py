"""The ``reconad`` command: run, train, test, report, predict, video, export, benchmark, plugins, info (and
subcommands plugins add)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any, Sequence

__all__ = ["main"]


def _config_args(p: argparse.ArgumentParser, optional: bool) -> None:
    from .commands import add_quiet_argument

    p.add_argument("config", nargs="?" if optional else None, default=None,
                   help="YAML config (default: the built-in textures config)" if optional else "YAML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<config>-<time>/)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (sets train.device)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, such an --out is refused)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    add_quiet_argument(p)


def _load(args: argparse.Namespace) -> Any:
    from .config import load_config

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.skip_bad:
        overrides.append("data.skip_bad=true")
    return load_config(args.config, overrides)


def _print_metrics(metrics: dict[str, Any] | None) -> None:
    if not metrics:
        return
    for warning in metrics.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1", "image_tpr", "image_tnr", "threshold"):
        if metrics.get(key) is not None:
            print(f"  {key:12s} {metrics[key]:.4f}")
    for name, entry in list(metrics.get("scorers", {}).items())[1:]:
        if entry.get("image_auroc") is not None:
            print(f"  image_auroc[{name}] {entry['image_auroc']:.4f}")
    for name, values in (metrics.get("evaluators") or {}).items():
        print(f"  {name}: " + ", ".join(f"{k} {_number(v)}" for k, v in values.items()))


def _number(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}" if float(v).is_integer() else f"{v:.4f}"


def _cmd_run(args: argparse.Namespace, test: bool = True) -> int:
    from .engine import Interrupted, default_out_dir, run

    cfg = _load(args)
    out = args.out or default_out_dir(cfg.name)
    try:
        res = run(cfg, out, test=test, resume=args.resume, overwrite=args.overwrite)
    except Interrupted as exc:
        print(f"reconad {args.command}: {exc}\nresume with: {_resume_command(args, out)}", file=sys.stderr)
        return 128 + exc.signum
    if res.train is not None and res.train.splits.skipped:
        print(f"skipped {len(res.train.splits.skipped)} unreadable file(s):")
        for line in res.train.splits.skipped:
            print(f"  {line}")
    if res.metrics is not None:
        print(f"{cfg.name}: {res.metrics['n_test']} test images ({res.metrics['n_anomalous']} anomalous)")
        _print_metrics(res.metrics)
    elif res.train is not None:   # train only: what the calibration found
        for warning in res.train.calibration.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    where = res.files.get("report") or res.files.get("checkpoint")
    print(f"report: {where}" if "report" in res.files else f"checkpoint: {where}")
    return 0


def _resume_command(args: argparse.Namespace, out: str) -> str:
    """The command line that continues this run: the same config and options, ``--out`` the run folder,
    ``--resume`` instead of ``--overwrite``."""
    argv = [args.command] + ([args.config] if args.config else [])
    for item in args.overrides:
        argv += ["--set", item]
    if args.device:
        argv += ["--device", args.device]
    if args.skip_bad:
        argv.append("--skip-bad")
    return shlex.join(["reconad", *argv, "--out", out, "--resume"])


def _cmd_test(args: argparse.Namespace) -> int:
    from .engine import evaluate_checkpoint

    res = evaluate_checkpoint(args.run, args.out, device=args.device)
    _print_metrics(res.metrics)
    print(f"report: {res.files['report']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .engine import run_folder
    from .engine.report import rebuild_report

    files = rebuild_report(run_folder(args.run))
    print(f"report: {files['report']}" + (f"\ncurves: {files['curves']}" if "curves" in files else ""))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .engine import predict

    res = predict(args.run, args.images, args.out, device=args.device, skip_bad=args.skip_bad, tile=args.tile,
                  overlap=args.tile_overlap)
    if "skipped" in res.files:
        print(f"skipped unreadable images: see {res.files['skipped']}")
    print(f"scores: {res.files['scores']}\nheatmaps: {res.files['heatmaps']}")
    return 0


def _cmd_video(args: argparse.Namespace) -> int:
    from .engine import score_video

    res = score_video(args.run, args.frames, args.out, labels=args.labels, device=args.device,
                      batch_size=args.batch_size)
    if res.metrics is not None:
        m = res.metrics
        print(f"{len(res.names)} frames ({m['n_anomalous']} anomalous)")
        for name, entry in m["scores"].items():
            print(f"  {name:16s} frame AUROC {entry['frame_auroc']:.4f}  EER {entry['eer']:.4f}")
    for what, path in res.files.items():
        print(f"{what}: {path}")
    return 0


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _seed_list(text: str) -> list[int]:
    try:
        return [int(n) for n in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer seeds (0,1,2), got {text!r}") from None


def _duration(text: str) -> float:
    """Seconds from ``90``, ``45s``, ``30m``, ``2h``, ``1.5h`` or ``1:30:00`` (H:MM:SS)."""
    t = text.strip().lower()
    try:
        if ":" in t:
            parts = [float(p) for p in t.split(":")]
            if len(parts) != 3:
                raise ValueError
            seconds = sum(v * 60 ** k for k, v in enumerate(reversed(parts)))
        else:
            unit = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
            seconds = float(t[:-1] if unit else t) * (unit or 1)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive duration (90, 45s, 30m, 2h or 1:30:00), got {text!r}")
    return seconds


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmark
    from .engine import Interrupted

    try:
        files = run_benchmark(args.suite, args.out, jobs=args.jobs, resume=args.resume, quick=args.quick,
                              device=args.device, methods=args.methods, datasets=args.datasets,
                              classes=args.classes, seeds=args.seeds, readme=args.readme,
                              baseline=args.baseline, archive=args.archive, summary_only=args.summary_only,
                              time_limit=args.time_limit)
    except Interrupted as exc:
        print(f"reconad benchmark: {exc}\nresume with: reconad benchmark {shlex.quote(args.suite)} --out "
              f"{shlex.quote(args.out)} --jobs {args.jobs} --resume", file=sys.stderr)
        return 128 + exc.signum
    for what, path in files.items():
        print(f"{what}: {path}")
    return 0


def _overrides(reg: Any) -> dict[tuple[str, str], list[str]]:
    """(kind, name) -> the plugins whose component of that name the registered one replaces."""
    out: dict[tuple[str, str], list[str]] = {}
    for loser, winner in reg.overridden:
        out.setdefault((winner.kind, winner.name), []).append(loser.plugin)
    return out


def component_lines(reg: Any) -> list[str]:
    """``reconad plugins``' text: per kind, one line per component (name, plugin, description), the name
    and plugin columns as wide as their longest entry over every kind, so long names keep them aligned."""
    from .registry import KINDS

    overrides = _overrides(reg)
    specs = list(reg)
    name_w = max((len(s.name) for s in specs), default=0)
    plugin_w = max((len(s.plugin) for s in specs), default=0)
    lines = []
    for kind in KINDS:
        lines.append(f"{'memories' if kind == 'memory' else kind + 's'}:")
        for name in reg.names(kind):
            s = reg.get(kind, name)
            replaced = overrides.get((kind, name))
            lines.append(f"  {name:{name_w}s}  {s.plugin:{plugin_w}s}  {s.description or ''}".rstrip()
                         + (f" (overrides {', '.join(replaced)})" if replaced else ""))
    return lines


def _cmd_export(args: argparse.Namespace) -> int:
    from .api import Detector

    report = Detector.load(args.run, device="cpu").export(args.out, opset=args.opset, dynamic_batch=args.dynamic_batch,
                                                          tolerance=args.tolerance, resize=args.resize)
    print(f"onnx: {report.path}\nparity: {report.n_images} images ({report.sample}), max |score diff| "
          f"{report.max_abs_score_diff:.3g}, max |map diff| {report.max_abs_map_diff:.3g}, decisions identical: "
          f"{report.decisions_identical}; report: {report.report}")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import get_registry

    reg = get_registry()
    if args.json:
        overrides = _overrides(reg)
        print(json.dumps([{"kind": s.kind, "name": s.name, "plugin": s.plugin, "description": s.description,
                           "overrides": overrides.get((s.kind, s.name), [])} for s in reg], indent=2))
        return 0
    print("\n".join(component_lines(reg)))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import pluggy
    import torch

    from . import __version__
    from .ops import extension_info
    from .ops.flush_denormal import every_thread

    info = extension_info()
    info = {"reconad": __version__, "python": platform.python_version(), "pluggy": pluggy.__version__, **info,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "flush_denormal": "every intra-op thread" if every_thread() else "the calling thread"}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    ext = info["extension"]
    print(f"reconad {info['reconad']}  python {info['python']}  torch {info['torch']} "
          f"(CUDA {info['torch_cuda'] or 'none'})  pluggy {info['pluggy']}")
    print(f"GPU: {info['gpu'] or 'none visible'}")
    print(f"CPU threads: {info['threads']} (inter-op {info['interop_threads']}; train.threads sets them per run); "
          f"subnormals flushed to zero in training and scoring on {info['flush_denormal']}")
    print(f"extension: {'loaded from ' + str(ext['path']) if ext['loaded'] else 'not loaded'}"
          f"{' (built with CUDA kernels)' if ext['built_with_cuda'] else ''}")
    if ext["error"]:
        print(f"  {ext['error']}")
    print(f"\n{'op':18s} {'cpu':9s} {'cuda':9s} reasons")
    for op, per in info["ops"].items():
        reasons = "; ".join(f"{d}: {v['reason']}" for d, v in per.items() if v["backend"] == "fallback")
        print(f"{op:18s} {per['cpu']['backend']:9s} {per['cuda']['backend']:9s} {reasons}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .commands import add_quiet_argument, add_run_arguments

    parser = argparse.ArgumentParser(prog="reconad", description="Reconstruction-based visual anomaly detection.")
    add_quiet_argument(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("run", help="train, then test and write the report")
    _config_args(p, optional=True)
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("train", help="train only (writes checkpoint.pt in --out)")
    _config_args(p, optional=False)
    p.set_defaults(func=lambda a: _cmd_run(a, test=False))
    p = sub.add_parser("test", help="test a trained checkpoint and write the report")
    add_run_arguments(p)
    p.set_defaults(func=_cmd_test)
    p = sub.add_parser("report", help="write report.html and curves.png again from a run folder's files "
                                      "(nothing is trained or scored)")
    p.add_argument("run", metavar="RUN", help="a tested run folder (the --out of `reconad run`) or its checkpoint.pt")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("predict", help="score images with a trained checkpoint (scores.csv + heatmaps)",
                       epilog="With an exported model instead of a run, without PyTorch: reconad predict --onnx "
                              "model.onnx IMAGES... --out DIR [--skip-bad] [--batch-size N] [--provider NAME]")
    add_run_arguments(p, out="output folder", out_required=True)
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    p.add_argument("--tile", type=int, default=None, metavar="SIZE",
                   help="score each image in overlapping SIZE-pixel squares (maps stitched) instead of whole: "
                        "small defects on large images keep their pixels")
    p.add_argument("--tile-overlap", type=float, default=0.25, metavar="FRACTION",
                   help="overlap of neighbouring tiles, a fraction of a tile (default 0.25)")
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser("video", help="score every frame of a video with a video run (frame AUROC / EER with labels)",
                       description="Score a folder of frame images or a video file with a run trained on the "
                                   "`video` dataset (patches or clips, as the run was trained): frame_scores.csv, "
                                   "scores.png and, with --labels, video_metrics.json (frame AUROC and EER).")
    add_run_arguments(p)
    p.add_argument("frames", help="a folder of frame images or a video file")
    p.add_argument("--labels", default=None, help="one 0/1 per frame (.txt/.csv, last field; or .npy)")
    p.add_argument("--batch-size", type=int, default=64, help="units scored at once (default 64)")
    p.set_defaults(func=_cmd_video)
    p = sub.add_parser("benchmark", help="run a suite: methods x datasets x seeds, with intervals (docs/benchmarks.md)")
    p.add_argument("suite", help="suite YAML (benchmarks/suites/*.yaml)")
    p.add_argument("--out", required=True, help="output folder (results.csv, summary.md, cells/...)")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, each in its own process (default 1)")
    p.add_argument("--resume", action="store_true", help="continue in --out: finished cells are skipped")
    p.add_argument("--quick", action="store_true", help="the first seed and class, the suite's quick overrides")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (sets train.device)")
    for name, what in (("methods", "methods"), ("datasets", "datasets"), ("classes", "classes or categories")):
        p.add_argument(f"--{name}", type=_names, default=None, metavar="A,B",
                       help=f"run only these {what} (comma-separated); the summary holds every finished cell")
    p.add_argument("--seeds", type=_seed_list, default=None, metavar="0,1", help="run only these seeds")
    p.add_argument("--baseline", default=None, metavar="METHOD",
                   help="compare every method with this one instead of the suite's baseline")
    p.add_argument("--archive", default=None, metavar="DIR",
                   help="keep every finished cell's entry and ranked test scores in DIR (small: commit it) and "
                        "restore them from there first, so a long suite goes on in another checkout")
    p.add_argument("--readme", default=None, metavar="README.md",
                   help="also write summary.md's tables into this file, between <!-- benchmark:NAME:start/end -->")
    p.add_argument("--summary-only", action="store_true",
                   help="run no cell: summarise the finished cells in --out and --archive (implies --resume)")
    p.add_argument("--time-limit", type=_duration, default=None, metavar="DURATION",
                   help="start no cell expected to end past this (90m, 2h, 1:30:00; from the median time of its "
                        "method's finished cells), then write the summary; --resume goes on with the rest")
    p.set_defaults(func=_cmd_benchmark)
    p = sub.add_parser("export", help="export a run or a Detector.save file to ONNX, parity checked (docs/deploy.md)")
    p.add_argument("run", metavar="RUN_OR_ARTIFACT", help="a run folder, its checkpoint.pt, or a Detector.save file")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the only format: onnx")
    p.add_argument("--out", required=True, help="the .onnx file to write (export_report.json goes beside it)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default and minimum 18)")
    p.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="a dynamic batch dimension (default); --no-dynamic-batch fixes it to 1")
    p.add_argument("--tolerance", type=float, default=1e-4, help="parity tolerance, relative to max |score|")
    p.add_argument("--resize", choices=["graph", "caller"], default="graph",
                   help="graph: the file takes any image size and resizes as trained (default); caller: the file "
                        "takes the trained size only and the caller resizes (OnnxInferencer does; for OpenVINO)")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("plugins", help="every registered component by kind, with its plugin")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("info", help="versions and which backend each op runs on, with reasons")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_info)
    from .plugins import get_plugin_manager

    get_plugin_manager().hook.reconad_register_commands(subparsers=sub)
    return parser


def _onnx_predict(argv: Sequence[str]) -> list[str] | None:
    """``predict --onnx ...``'s own arguments (a ``-q`` before ``predict`` moved after it), else None."""
    quiet = [a for a in argv[:argv.index("predict")] if a in ("-q", "--quiet")] if "predict" in argv else []
    rest = argv[len(quiet):]
    if rest[:1] == ["predict"] and any(a == "--onnx" or a.startswith("--onnx=") for a in rest):
        return rest[1:] + quiet
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    onnx_args = _onnx_predict(argv)
    if onnx_args is not None:   # before anything imports torch: a line PC may run exported models without it
        from .deploy.inferencer import predict_command

        return predict_command(onnx_args)
    from .config import ConfigError
    from .data.base import DataError
    from .benchmark import BenchmarkError, SuiteError
    from .engine import CheckpointError, RunError
    from .model import BuildError
    from .registry import RegistryError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .engine.progress import set_mode

    before = set_mode("quiet") if getattr(args, "quiet", False) else None
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, CheckpointError, RunError, BuildError, RegistryError, BenchmarkError,
            SuiteError) as exc:
        print(f"reconad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reconad {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if before is not None:
            set_mode(before)


if __name__ == "__main__":
    sys.exit(main())
