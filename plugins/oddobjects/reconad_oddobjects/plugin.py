"""reconad hook implementations for ODDObjects (paper 000): the four autoencoders, the score and the losses,
plus the COCO masked-object dataset and the ``reconad oddobjects rank`` command when those modules exist."""
from __future__ import annotations

import importlib
import importlib.util

from reconad import hookimpl

from .model import AEDecoder, AEEncoder, CAEDecoder, CAEEncoder, CVAEEncoder, MemCAEDecoder, MemCAEEncoder
from .objectives import ELBOObjective, ReconstructionEntropyObjective
from .scoring import ODDScorer

# the neighbours each component fits, for tests/test_contract.py (the core's defaults feed it conv maps)
_VECTOR_MODEL = {"memory": None, "objective": "odd_reconstruction", "scorers": ["odd_score"]}
_MEMORY = {"memory": {"name": "memae", "slots": 500}}


def _optional(module: str):
    """The plugin's module ``module`` when it exists (a missing module is skipped; its own errors are not)."""
    name = f"{__package__}.{module}"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


@hookimpl
def reconad_register_encoders(register):
    register("odd_ae", AEEncoder, contract_model={**_VECTOR_MODEL, "decoder": "odd_ae"})
    register("odd_cae", CAEEncoder, contract_model={**_VECTOR_MODEL, "decoder": "odd_cae"})
    register("odd_cvae", CVAEEncoder,
             contract_model={**_VECTOR_MODEL, "decoder": "odd_cvae", "objective": "odd_elbo"})
    register("odd_memcae", MemCAEEncoder, contract_model={**_VECTOR_MODEL, **_MEMORY, "decoder": "odd_memcae"})


@hookimpl
def reconad_register_decoders(register):
    register("odd_ae", AEDecoder, contract_model={**_VECTOR_MODEL, "encoder": "odd_ae"})
    register("odd_cae", CAEDecoder, contract_model={**_VECTOR_MODEL, "encoder": "odd_cae"})
    register("odd_cvae", CAEDecoder, description="CVAE decoder: the CAE decoder (dense 32-d -> deconvolutions)",
             contract_model={**_VECTOR_MODEL, "encoder": "odd_cae"})
    register("odd_memcae", MemCAEDecoder, contract_model={**_VECTOR_MODEL, **_MEMORY, "encoder": "odd_memcae"})


@hookimpl
def reconad_register_scorers(register):
    register("odd_score", ODDScorer)


@hookimpl
def reconad_register_objectives(register):
    register("odd_reconstruction", ReconstructionEntropyObjective)
    register("odd_elbo", ELBOObjective,
             contract_model={**_VECTOR_MODEL, "encoder": "odd_cvae", "decoder": "odd_cvae"})


@hookimpl
def reconad_register_datasets(register):
    coco = _optional("coco")
    if coco is not None:
        register("coco", coco.coco_dataset)


@hookimpl
def reconad_register_commands(subparsers):
    rank = _optional("rank")
    if rank is not None:
        rank.register_rank_command(subparsers)
