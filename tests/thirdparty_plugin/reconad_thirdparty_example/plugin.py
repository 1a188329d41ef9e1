"""Registers one scorer through reconad's hook, as any third-party package would."""
from __future__ import annotations

from reconad import hookimpl
from reconad.components import Scorer, Scores


class MaxAbsError(Scorer):
    """Image score = the largest absolute reconstruction error of any pixel."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, outputs):
        pixel = (outputs["recon"] - outputs["input"]).abs().amax(1) * self.scale
        return Scores(pixel.flatten(1).amax(1), pixel)


@hookimpl
def reconad_register_scorers(register):
    register("max_abs_error", MaxAbsError)
