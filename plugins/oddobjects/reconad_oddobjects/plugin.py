"""reconad hook implementations for ODDObjects (paper 000): the four autoencoders, the score and the losses,
plus the COCO masked-object dataset and the ``reconad oddobjects rank`` command."""
from __future__ import annotations

from reconad import hookimpl

from .model import AEDecoder, AEEncoder, CAEDecoder, CAEEncoder, CVAEEncoder, MemCAEDecoder, MemCAEEncoder
from .objective import ELBOObjective, ReconstructionEntropyObjective
from .scorer import ODDScorer

# the neighbours each component fits, for tests/test_contract.py (the core's defaults feed it conv maps)
_VECTOR_MODEL = {"memory": None, "objective": "odd_reconstruction", "scorers": ["odd_score"]}
_MEMORY = {"memory": {"name": "memae", "slots": 500}}


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
    from .data import coco_dataset

    register("coco", coco_dataset)


@hookimpl
def reconad_register_commands(subparsers):
    from .cli import add_commands

    add_commands(subparsers)
