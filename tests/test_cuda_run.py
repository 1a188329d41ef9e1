"""A short training run on a CUDA GPU (skipped without one): the model trains with the compiled CUDA kernels,
and the trained checkpoint scores the same test images on the CPU (C++ kernels) as on the GPU."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from reconad.config import apply_overrides, validate
from reconad.engine import evaluate_checkpoint, run
from reconad.ops import backend

pytestmark = pytest.mark.cuda


def _scores(folder) -> np.ndarray:
    with open(folder / "scores.csv", newline="", encoding="utf-8") as fh:
        return np.array([float(r["score"]) for r in csv.DictReader(fh)])


def test_training_step_on_cuda_then_cpu_scores_agree(tiny_raw, tmp_path):
    for op in ("memory_address", "topk_mask", "pro_curve"):
        assert backend(op, "cuda") == "cuda", f"{op} runs on its fallback on the GPU"
    raw = apply_overrides(tiny_raw, ["train.device=cuda", "train.epochs=2"])
    torch.cuda.reset_peak_memory_stats()
    res = run(validate(raw), str(tmp_path / "gpu"), log=lambda s: None)
    assert res.train.step > 0 and torch.cuda.max_memory_allocated() > 0
    assert next(res.train.model.parameters()).device.type == "cuda"
    assert all(torch.isfinite(p).all() for p in res.train.model.parameters())
    assert 0.0 <= res.metrics["image_auroc"] <= 1.0

    again = evaluate_checkpoint(str(tmp_path / "gpu"), str(tmp_path / "cpu"), device="cpu")
    gpu, cpu = _scores(tmp_path / "gpu"), _scores(tmp_path / "cpu")
    assert gpu.shape == cpu.shape and np.isfinite(gpu).all()
    # cuDNN may use TF32 convolutions: close, not bit-equal; the ranking is what the metrics see
    np.testing.assert_allclose(gpu, cpu, rtol=2e-2, atol=1e-5)
    assert spearmanr(gpu, cpu).statistic > 0.99
    assert again.metrics["image_auroc"] == pytest.approx(res.metrics["image_auroc"], abs=0.02)
