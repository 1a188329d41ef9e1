"""MMAE's reconad registrations (hook implementations only; the modules live in ``model.py`` / ``video.py``)."""
from __future__ import annotations

from reconad.hookspecs import hookimpl

from .model import MMAEDecoder, MMAEEncoder, MultiScaleMemory
from .video import VideoMMAEDecoder, VideoMMAEEncoder


@hookimpl
def reconad_register_encoders(register):
    register("mmae", MMAEEncoder, description="MMAE: K strided-conv encoders, one per resolution scale (a list)")
    register("mmae_video", VideoMMAEEncoder, description="MMAE video: K 3-D encoders over a clip of grey frames")


@hookimpl
def reconad_register_memories(register):
    register("mmae_multiscale", MultiScaleMemory,
             description="MMAE: one MemAE memory per scale, reads a list of features")


@hookimpl
def reconad_register_decoders(register):
    register("mmae", MMAEDecoder, description="MMAE: multi-scale attention fuser + pixel-shuffle decoder")
    register("mmae_video", VideoMMAEDecoder, description="MMAE video: attention fuser + 3-D pixel-shuffle decoder")
