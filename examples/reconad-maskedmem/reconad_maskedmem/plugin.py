"""The package's registrations: everything reconad learns about it comes through these hooks."""
from __future__ import annotations

from reconad import hookimpl

from .objective import MaskedMemoryObjective


@hookimpl
def reconad_register_objectives(register):
    register("maskedmem", MaskedMemoryObjective,
             description="OLED's adversarial masking + MMAE's memory entropy: MM maximises, R (with memories) minimises",
             # the neighbours it trains, tiny, for reconad's tests/test_contract.py
             contract_model={"masker": "oled",
                             "encoder": {"name": "mmae", "scales": 2, "feature_size": 4, "channels": 8,
                                         "base_width": 8, "max_width": 16},
                             "memory": {"name": "mmae_multiscale", "slots": 10},
                             "decoder": {"name": "mmae", "base_width": 8, "max_width": 16}})
