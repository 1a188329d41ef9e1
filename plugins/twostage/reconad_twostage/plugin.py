"""reconad hook registrations of the two-stage autoencoder (paper 003)."""
from __future__ import annotations

from reconad import hookimpl

from .model import DCGANDecoder, DualDecoder, RotNetEncoder
from .objective import TwoStageObjective
from .scorer import TwoStageScorer

# the scorer and objective read the dual decoder's two reconstructions, for tests/test_contract.py
_DUAL = {"encoder": "twostage_rotnet", "memory": None, "decoder": "twostage_dual"}


@hookimpl
def reconad_register_encoders(register):
    register("twostage_rotnet", RotNetEncoder,
             description="ResNet-18 RotNet encoder (rotation head kept in the module), paper 003")


@hookimpl
def reconad_register_decoders(register):
    register("twostage_dual", DualDecoder,
             description="two independent DCGAN decoders: recon (MSE) and recon_ssim (SSIM), paper 003")
    register("twostage_dcgan", DCGANDecoder, description="GANomaly's DCGAN decoder (one branch of twostage_dual)")


@hookimpl
def reconad_register_scorers(register):
    register("twostage", TwoStageScorer, description="AS = MSE(x, x1) - lambda SSIM(x, x2), paper 003 eq. 10",
             contract_model=_DUAL)


@hookimpl
def reconad_register_objectives(register):
    register("twostage", TwoStageObjective,
             description="pretext pre-training (RotNet), then freeze and train the rest (paper 003)",
             contract_model={**_DUAL, "scorers": ["twostage"]})
