"""MMAE's reconad registrations (hook implementations only; the modules live in ``model.py`` / ``video.py``)."""
from __future__ import annotations

from reconad import hookimpl

from .model import MMAEDecoder, MMAEEncoder, MultiScaleMemory
from .video import VideoMMAEDecoder, VideoMMAEEncoder

# tests/test_contract.py composes each multi-scale part with the other two (no core component fits them), small
_SMALL = {"encoder": {"name": "mmae", "scales": 3, "channels": 16, "base_width": 8, "max_width": 16},
          "memory": {"name": "mmae_multiscale", "slots": 10},
          "decoder": {"name": "mmae", "base_width": 8, "max_width": 16}}
_SMALL_VIDEO = {"encoder": {"name": "mmae_video", "scales": 3, "channels": 8, "base_width": 4, "max_width": 8},
                "memory": {"name": "mmae_multiscale", "slots": 10},
                "decoder": {"name": "mmae_video", "base_width": 4, "max_width": 8}}


def _contract(without: str, video: bool = False) -> dict[str, object]:
    return {k: v for k, v in (_SMALL_VIDEO if video else _SMALL).items() if k != without}


@hookimpl
def reconad_register_encoders(register):
    register("mmae", MMAEEncoder, description="MMAE: K strided-conv encoders, one per resolution scale (a list)",
             contract_model=_contract("encoder"))
    register("mmae_video", VideoMMAEEncoder, description="MMAE video: K 3-D encoders over a clip of grey frames",
             contract_model=_contract("encoder", video=True))


@hookimpl
def reconad_register_memories(register):
    register("mmae_multiscale", MultiScaleMemory,
             description="MMAE: one MemAE memory per scale, reads a list of features",
             contract_model=_contract("memory"))


@hookimpl
def reconad_register_decoders(register):
    register("mmae", MMAEDecoder, description="MMAE: multi-scale attention fuser + pixel-shuffle decoder",
             contract_model=_contract("decoder"))
    register("mmae_video", VideoMMAEDecoder, description="MMAE video: attention fuser + 3-D pixel-shuffle decoder",
             contract_model=_contract("decoder", video=True))
