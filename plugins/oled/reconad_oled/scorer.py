"""OLED's anomaly scores (paper 001, §3.6): s_mask, s_cont, s_rec and their average s_avg.

Per batch the scorer returns the raw terms L_mask, L_cont, L_rec (``reconad_oled.losses``) as the parts
``mask``, ``cont``, ``rec``; ``finalize`` (called once per scored set) scales each part to [0, 1] over that set
(min-max) and sets the image score to their mean, s_avg. The masks are the model's masker's (MM at test time).

s_rec needs ``R(x)``, the reconstruction of the intact image, which a composed model's forward pass does not
compute (its encoder reads the masked image): the scorer declares ``requires = ("recon_unmasked",)`` and the
core's ``ReconModel.score`` hands it ``outputs["recon_unmasked"]`` (``ReconModel.reconstruct(x)``: encoder ->
[memory] -> decoder without the masker).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reconad.components import Scorer, Scores
from reconad.metrics import normalize_scores

from .losses import check_cont, oled_terms

__all__ = ["OLEDScorer"]

PARTS = ("mask", "cont", "rec")


class OLEDScorer(Scorer):
    """OLED's scores: parts s_mask, s_cont, s_rec (each min-max scaled over the scored set) and s_avg, their
    mean, as the image score. Pixel map: the squared error of the masked image's reconstruction (in [-1, 1]
    units, mean over channels). Needs a masker in the model (``oled``, or ``random_block`` for the CAE).
    ``cont``: the norm of s_cont's term, ``"l2"`` or ``"l1"`` (the authors' code), as the objective's."""

    requires = ("recon_unmasked",)  # R(x) for s_rec, given by ReconModel.score

    def __init__(self, cont: str = "l2") -> None:
        super().__init__()
        self.cont = check_cont(cont, "oled scorer")

    def _unmasked(self, outputs: dict[str, Any]) -> torch.Tensor:
        if outputs.get("recon_unmasked") is None:
            raise ValueError("oled scorer: s_rec needs outputs['recon_unmasked'] (R(x) on the intact image); "
                             "score through reconad.model.ReconModel.score, which provides it")
        return outputs["recon_unmasked"]

    def forward(self, outputs: dict[str, Any]) -> Scores:
        if "mask" not in outputs:
            raise ValueError("oled scorer: the model has no masker (outputs carry no 'mask'); set model.masker "
                             "(oled, or random_block with at_eval: true for the CAE baseline)")
        x, recon = outputs["input"], outputs["recon"]
        t = oled_terms(x, recon, outputs["mask"], self._unmasked(outputs), self.cont)
        pixel = (2.0 * (x.float() - recon.float())).pow(2).mean(1)
        parts = {"mask": t.mask, "cont": t.cont, "rec": t.rec}
        return Scores((t.mask + t.cont + t.rec) / 3.0, pixel, parts)

    def finalize(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {p: normalize_scores(scores[p]) for p in PARTS}  # min-max over the set
        out["image"] = (out["mask"] + out["cont"] + out["rec"]) / 3.0
        return out
