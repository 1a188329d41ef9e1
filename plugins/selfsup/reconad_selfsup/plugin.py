"""reconad-selfsup's hook implementations (registrations only; the code lives in the other modules)."""
from __future__ import annotations

from reconad import hookimpl

from .model import SelfSupDecoder, SelfSupEncoder
from .objective import SelfSupObjective
from .scorer import SelfSupScorer

__all__ = ["reconad_register_commands", "reconad_register_decoders", "reconad_register_encoders",
           "reconad_register_evaluators", "reconad_register_objectives", "reconad_register_scorers"]

# The contract test pairs each component with these neighbours (small widths keep it fast).
_SMALL_ENCODER = {"encoder": {"name": "selfsup", "width": 8, "sdc_width": 8}, "memory": None}


@hookimpl
def reconad_register_encoders(register):
    register("selfsup", SelfSupEncoder, description="paper 004 Table 1 encoder: conv / max-pool levels + stacked dilated convolutions",
             contract_model={**_SMALL_ENCODER, "decoder": {"name": "selfsup", "width": 8}})


@hookimpl
def reconad_register_decoders(register):
    register("selfsup", SelfSupDecoder, description="paper 004 Table 1 decoder: transposed convolutions, BN + ReLU, sigmoid output",
             contract_model=_SMALL_ENCODER)


@hookimpl
def reconad_register_scorers(register):
    register("selfsup", SelfSupScorer, description="paper 004 heatmap: channel L2 norm of F(X) - X, Gaussian-smoothed")


@hookimpl
def reconad_register_objectives(register):
    register("selfsup", SelfSupObjective, description="paper 004 objectives (1)-(3) on elastically distorted patches, progressive sizes")


@hookimpl
def reconad_register_commands(subparsers):
    from .cli import add_commands

    add_commands(subparsers)


@hookimpl
def reconad_register_evaluators(register):
    from .evaluate import AreaRuleEvaluator

    register("area_rule", AreaRuleEvaluator)
