"""ONNX export speed: image to decision (resize, model, scorer, threshold) for the default model (MemAE,
64x64 grey), per image and images/s, in eager PyTorch (every op on its pure-PyTorch fallback), on the reconad
op path (the C++ kernels), and under onnxruntime's CPU execution provider, at batch 1 and 32.

    python benchmarks/run.py export
    python benchmarks/bm_export.py --threads 1 --batches 1 32

The weights do not matter for speed: the model is fitted for one step on random images.
"""
from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import warnings

import numpy as np
import torch

from common import append_results, bench_device, print_table, time_fn


def _graph(det, resize: bool = True):  # noqa: ANN001, ANN202 - the exported module itself
    from reconad.deploy.export import _Graph, _check_exportable

    g = _Graph(det.model_, det.image_size_, det.threshold_, resize=resize).eval()
    g.map_index = _check_exportable(det, 18)
    return g


def main(argv: list[str] | None = None) -> list[dict]:
    import onnxruntime as ort

    from reconad import Detector
    ma = importlib.import_module("reconad.ops.memory_address")   # the module (reconad.ops exports the function)

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads (default 1)")
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 32])
    args = ap.parse_args(argv or [])
    device = bench_device("cpu", args.threads)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = Detector("memae", **{"train.steps": 1, "train.device": "cpu", "train.progress": False}).fit(
            rng.random((40, 64, 64)).astype(np.float32))
    graph = _graph(det)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        det.export(path)
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        for b in args.batches:
            x = torch.from_numpy(rng.random((b, 1, 64, 64)).astype(np.float32))
            with torch.no_grad():
                op_s = time_fn(lambda: graph(x), device)
                kernel = ma._OP.use_kernel
                ma._OP.use_kernel = lambda device_type: False    # every call on the pure-PyTorch fallback
                try:
                    eager_s = time_fn(lambda: graph(x), device)
                finally:
                    ma._OP.use_kernel = kernel
            feed = {"image": x.numpy()}
            ort_s = time_fn(lambda: sess.run(None, feed), device)
            for name, sec in (("eager", eager_s), ("reconad op", op_s), ("onnxruntime CPU", ort_s)):
                rows.append({"batch": b, "path": name, "ms/image": 1e3 * sec / b, "images/s": b / sec,
                             "vs eager": eager_s / sec})
    print_table(f"image -> decision, MemAE 64x64, {args.threads} thread(s)", rows)
    figures = "; ".join(
        f"batch {b}: " + ", ".join(f"{r['path']} {r['ms/image']:.2f} ms/image ({r['vs eager']:.2f}x eager)"
                                   for r in rows if r["batch"] == b) for b in args.batches)
    append_results("bm_export", device, f"{figures} (torch and ORT intra-op threads {args.threads}: shared machine)")
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
