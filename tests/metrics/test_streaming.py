"""Streaming AUPRO: exact mode equals the one-shot value; binned mode stays within its error bound;
both give the single-process value under torch.distributed (gloo, 2 processes)."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import reconad.metrics as M
from _oracle import blob_masks, official_aupro


def _data(rng: np.random.Generator, n: int = 8, h: int = 40, w: int = 40):
    masks = blob_masks(rng, n, h, w)
    maps = (0.7 * rng.random((n, h, w)) + 0.3 * masks).astype(np.float32)
    return maps, masks


def test_exact_mode_equals_one_shot(rng):
    maps, masks = _data(rng)
    metric = M.AUPRO(fpr_limit=0.3)
    for i in range(0, len(maps), 3):
        metric.update(torch.from_numpy(maps[i : i + 3]), masks[i : i + 3])
    assert metric.compute() == pytest.approx(official_aupro(maps, masks, 0.3), abs=1e-9)
    metric.reset()
    with pytest.raises(ValueError, match="no data"):
        metric.compute()


@pytest.mark.parametrize("bins", [16, 256, 65536])
@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_binned_mode_within_its_bound(rng, bins, limit):
    maps, masks = _data(rng)
    exact = official_aupro(maps, masks, limit)
    metric = M.AUPRO(fpr_limit=limit, mode="binned", bins=bins, score_range=(0.0, 1.0))
    for i in range(0, len(maps), 3):
        metric.update(maps[i : i + 3], masks[i : i + 3])
    got, bound = metric.compute(), metric.error_bound()
    assert abs(got - exact) <= bound + 1e-12
    fpr, _ = metric.curve()
    assert bound <= np.diff(fpr).max() / limit + 1e-12            # the documented "max dFPR / limit"
    if bins == 65536:
        assert bound < 2e-3


def test_binned_mode_clamps_out_of_range_scores(rng):
    maps, masks = _data(rng)
    maps = maps * 3 - 1                                           # most scores outside (0, 1)
    metric = M.AUPRO(0.3, mode="binned", bins=1024, score_range=(0.0, 1.0))
    metric.update(maps, masks)
    assert abs(metric.compute() - official_aupro(maps, masks, 0.3)) <= metric.error_bound() + 1e-12


def _worker(rank: int, world: int, port: int, path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    data = np.load(path)
    maps, masks = data["maps"], data["masks"]
    for mode in ("exact", "binned"):
        metric = M.AUPRO(0.3, mode=mode, bins=4096)
        sl = slice(rank, None, world)                              # ranks see different numbers of maps
        metric.update(maps[sl], masks[sl])
        value = metric.compute()
        np.save(f"{path}.{mode}.{rank}.npy", np.array([value, metric.error_bound()]))
    dist.destroy_process_group()


def test_distributed_equals_single_process(rng, tmp_path):
    maps, masks = _data(rng, n=7)
    path = str(tmp_path / "data.npz")
    np.savez(path, maps=maps, masks=masks)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, path), nprocs=2, join=True)
    for mode in ("exact", "binned"):
        single = M.AUPRO(0.3, mode=mode, bins=4096)
        single.update(maps, masks)
        for rank in range(2):
            value, bound = np.load(f"{path}.{mode}.{rank}.npy")
            assert value == pytest.approx(single.compute(), abs=1e-12)
            assert bound == pytest.approx(single.error_bound(), abs=1e-12)
