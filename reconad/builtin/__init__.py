"""reconad's built-in plugin: registered through the same hooks as any third-party plugin."""
from __future__ import annotations

from ..hookspecs import hookimpl
from .conv import ConvDecoder, ConvEncoder
from .evaluators import PerDefectAUROC
from .loggers import CsvLogger, MlflowLogger, TensorBoardLogger
from .maskers import RandomBlockMasker
from .memae import MemAEMemory
from .objectives import ReconstructionObjective
from .scorers import ReconstructionErrorScorer

__all__ = ["ConvDecoder", "ConvEncoder", "CsvLogger", "MemAEMemory", "MlflowLogger", "PerDefectAUROC",
           "RandomBlockMasker", "ReconstructionErrorScorer", "ReconstructionObjective", "TensorBoardLogger"]


@hookimpl
def reconad_register_encoders(register):
    register("conv", ConvEncoder)


@hookimpl
def reconad_register_memories(register):
    register("memae", MemAEMemory)


@hookimpl
def reconad_register_decoders(register):
    register("conv", ConvDecoder)


@hookimpl
def reconad_register_maskers(register):
    register("random_block", RandomBlockMasker)


@hookimpl
def reconad_register_scorers(register):
    register("l2", ReconstructionErrorScorer, description="per-pixel squared reconstruction error")


@hookimpl
def reconad_register_objectives(register):
    register("reconstruction", ReconstructionObjective)


@hookimpl
def reconad_register_datasets(register):
    from ..data import BUILTIN_DATASETS

    for name, factory in BUILTIN_DATASETS.items():
        register(name, factory)


@hookimpl
def reconad_register_loggers(register):
    register("csv", CsvLogger)
    register("tensorboard", TensorBoardLogger)
    register("mlflow", MlflowLogger)


@hookimpl
def reconad_register_evaluators(register):
    register("per_defect", PerDefectAUROC)
