"""Where a run executes: device choice, seeding, and torchrun / DistributedDataParallel setup."""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..ops.flush_denormal import set_flush_denormal

__all__ = ["Runtime", "RunError", "apply_threads", "flush_denormals", "flushing_denormals", "local_device",
           "resolve_device", "seed_everything", "setup_runtime"]


class RunError(RuntimeError):
    """A run cannot go on; the message says what was wrong and what to do."""


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False   # this process joined the process group (setup_runtime) and leaves it (close)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group this runtime joined. A process that exits still in it can abort in gloo's
        teardown ("terminate called without an active exception") after its work is done."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> a GPU when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
            raise RunError(f"train.device is {name!r} but no CUDA GPU is visible (torch {torch.__version__}, "
                           f"{build}); use --device cpu or --device auto")
        index = int(name.split(":", 1)[1]) if ":" in name else local_rank
        if index >= torch.cuda.device_count():
            raise RunError(f"train.device is {name!r} but only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", index)
    return torch.device(name)


def local_device(name: str) -> torch.device:
    """``resolve_device`` for this process's GPU under torchrun (``LOCAL_RANK``), without joining a process
    group: what scoring and loading need."""
    return resolve_device(name, int(os.environ.get("LOCAL_RANK", "0")))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def apply_threads(threads: int | None) -> int:
    """``train.threads``: torch's intra-op CPU threads for this process (None: leave torch's choice). Processes
    sharing the cores run faster with a share each than with every core each. Returns the count in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def flushing_denormals() -> bool:
    """Whether this thread flushes subnormal floats to zero now (a float32 product below 1.2e-38 comes out 0)."""
    return (torch.tensor([1e-30], dtype=torch.float32) * 1e-10).item() == 0.0


@contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """On the CPU, compute with subnormal floats flushed to zero (``torch.set_flush_denormal``: x86 FTZ/DAZ) while
    the block runs, then restore the mode found; on a GPU, nothing. A network whose weights or gradients decay
    toward zero (a branch nothing trains any more, a memory slot no query addresses) otherwise computes on
    subnormals, which x86 cores handle in microcode: an MMAE run slowed from 470 to 55 images/s mid-training.
    The mode is per thread: :func:`reconad.ops.flush_denormal.set_flush_denormal` sets it on every intra-op
    thread with reconad._C, on the calling thread alone without it."""
    if device.type != "cpu":
        yield
        return
    was = flushing_denormals()
    set_flush_denormal(True)
    try:
        yield
    finally:
        set_flush_denormal(was)


def setup_runtime(device_name: str) -> Runtime:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1): gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    owns = world > 1 and not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world, local_rank, owns)
