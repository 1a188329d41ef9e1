"""The package's registrations: everything reconad learns about it comes through these hooks."""
from __future__ import annotations

from reconad.hookspecs import hookimpl

from .objective import MaskedMemoryObjective


@hookimpl
def reconad_register_objectives(register):
    register("maskedmem", MaskedMemoryObjective,
             description="OLED's adversarial masking + MMAE's memory entropy: MM maximises, R (with memories) minimises")
