"""MMAE's reconad registrations (hook implementations only; the modules live in ``model.py`` / ``video.py``)."""
from __future__ import annotations

from reconad.hookspecs import hookimpl

from .model import MMAEDecoder, MMAEEncoder, MultiScaleMemory


@hookimpl
def reconad_register_encoders(register):
    register("mmae", MMAEEncoder, description="MMAE: K strided-conv encoders, one per resolution scale (a list)")


@hookimpl
def reconad_register_memories(register):
    register("mmae_multiscale", MultiScaleMemory,
             description="MMAE: one MemAE memory per scale, reads a list of features")


@hookimpl
def reconad_register_decoders(register):
    register("mmae", MMAEDecoder, description="MMAE: multi-scale attention fuser + pixel-shuffle decoder")


@hookimpl
def reconad_register_commands(subparsers):
    from .cli import add_commands

    add_commands(subparsers)
