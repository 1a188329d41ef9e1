"""MMAE's reconad registrations (hook implementations only; the modules live in ``model.py`` / ``video.py``)."""
from __future__ import annotations

from reconad import hookimpl

from .model import MMAEDecoder, MMAEEncoder, MultiScaleMemory

# tests/test_contract.py composes each multi-scale part with the other two (no core component fits them), small
_SMALL = {"encoder": {"name": "mmae", "scales": 3, "channels": 16, "base_width": 8, "max_width": 16},
          "memory": {"name": "mmae_multiscale", "slots": 10},
          "decoder": {"name": "mmae", "base_width": 8, "max_width": 16}}


def _contract(without: str) -> dict[str, object]:
    return {k: v for k, v in _SMALL.items() if k != without}


@hookimpl
def reconad_register_encoders(register):
    register("mmae", MMAEEncoder, description="MMAE: K strided-conv encoders, one per resolution scale (a list)",
             contract_model=_contract("encoder"))


@hookimpl
def reconad_register_memories(register):
    register("mmae_multiscale", MultiScaleMemory,
             description="MMAE: one MemAE memory per scale, reads a list of features",
             contract_model=_contract("memory"))


@hookimpl
def reconad_register_decoders(register):
    register("mmae", MMAEDecoder, description="MMAE: multi-scale attention fuser + pixel-shuffle decoder",
             contract_model=_contract("decoder"))


@hookimpl
def reconad_register_commands(subparsers):
    from .cli import add_commands

    add_commands(subparsers)
