"""OLED's registrations (paper 001): the Mask Module masker, the Reconstructor's encoder and decoder, the
scorer, the adversarial objective, the Mask Module's segmentation evaluator and the ``reconad oled`` commands."""
from __future__ import annotations

from reconad import hookimpl

from .model import MaskModule, ReconstructorDecoder, ReconstructorEncoder
from .objective import OLEDObjective
from .scorer import OLEDScorer


@hookimpl
def reconad_register_maskers(register):
    register("oled", MaskModule, description="OLED Mask Module: learned top-k mask (hides 1 - keep of each image)")


@hookimpl
def reconad_register_encoders(register):
    register("oled", ReconstructorEncoder, description="OLED Reconstructor encoder: strided convs, dense bottleneck")


@hookimpl
def reconad_register_decoders(register):
    register("oled", ReconstructorDecoder, description="OLED Reconstructor decoder: dense, transposed convs, clipped",
             contract_model={"encoder": {"name": "oled", "channels": [8, 16], "latent_dim": 16}})


@hookimpl
def reconad_register_scorers(register):
    register("oled", OLEDScorer, description="OLED s_mask, s_cont, s_rec (min-max over held-out normals, or the set) and s_avg",
             contract_model={"masker": "oled"})  # s_mask needs a masker


@hookimpl
def reconad_register_objectives(register):
    register("oled", OLEDObjective, description="OLED adversarial training: min over R, max over MM (eq. 8)",
             contract_model={"masker": "oled"})  # it trains a masker


@hookimpl
def reconad_register_evaluators(register):
    from .evaluate import SegmentationEvaluator

    register("oled_segmentation", SegmentationEvaluator)


@hookimpl
def reconad_register_commands(subparsers):
    from .cli import add_commands

    add_commands(subparsers)

