"""The self-supervised training recipe (§3.2, §4.1): augment the clean batch (rotations by multiples of 90
degrees, flips), bring it to the progressive training size, distort it, run the model on the distorted
batch and apply objective (1), (2) or (3) against the clean batch.

Randomness comes from the objective's own ``torch.Generator`` (seeded by ``seed``, or from torch's global
RNG, which the trainer seeds from the config), saved in ``state_dict`` so a resumed run continues exactly.
"""
from __future__ import annotations

import bisect
from typing import Any, Literal

import torch
import torch.nn.functional as F
from reconad.components import Objective, StepContext

from .distort import Shape
from .distort import distort as distort_images
from .losses import selfsup_loss

__all__ = ["SelfSupObjective", "augment", "progressive_size", "take_size"]


def augment(x: torch.Tensor, generator: torch.Generator, *, rot90: bool = False, hflip: bool = False,
            vflip: bool = False) -> torch.Tensor:
    """Each image independently: rotated by a random multiple of 90 degrees (square images), flipped left-right
    and / or upside down with probability 1/2 each, as enabled."""
    b = x.shape[0]
    u = torch.rand(b, 3, generator=generator, device=generator.device).to(x.device)
    if rot90:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"selfsup rot90: needs square images, got {tuple(x.shape[-2:])}")
        k = (u[:, 0] * 4).long().clamp(max=3)
        out = x.clone()
        for turns in range(1, 4):
            sel = k == turns
            if bool(sel.any()):
                out[sel] = torch.rot90(x[sel], turns, dims=(-2, -1))
        x = out
    if hflip:
        x = torch.where((u[:, 1] < 0.5).view(b, 1, 1, 1), x.flip(-1), x)
    if vflip:
        x = torch.where((u[:, 2] < 0.5).view(b, 1, 1, 1), x.flip(-2), x)
    return x


def progressive_size(schedule: list[tuple[float, int]] | None, step: int, total_steps: int | None,
                     default: int) -> int:
    """The training size at ``step`` of ``total_steps``: the size of the last entry whose fraction is <= the
    fraction of training done; ``default`` without a schedule (or without a known total)."""
    if not schedule or not total_steps:
        return default
    fractions = [f for f, _ in schedule]
    i = bisect.bisect_right(fractions, step / total_steps) - 1
    return int(schedule[max(i, 0)][1])


def take_size(x: torch.Tensor, size: int, generator: torch.Generator, mode: str = "crop") -> torch.Tensor:
    """``(B, C, size, size)`` from a square batch: a random crop per image, or the whole image resized."""
    h, w = x.shape[-2:]
    if size == h and size == w:
        return x
    if size > min(h, w):
        raise ValueError(f"selfsup progressive size {size} is larger than the training images {h}x{w}")
    if mode == "resize":
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    b = x.shape[0]
    u = torch.rand(b, 2, generator=generator, device=generator.device).to(x.device)
    y0 = (u[:, 0] * (h - size + 1)).long().clamp(max=h - size)
    x0 = (u[:, 1] * (w - size + 1)).long().clamp(max=w - size)
    r = torch.arange(size, device=x.device)
    c = x.shape[1]
    rows = (y0[:, None] + r).view(b, 1, size, 1).expand(b, c, size, w)
    cols = (x0[:, None] + r).view(b, 1, 1, size).expand(b, c, size, size)
    return x.gather(2, rows).gather(3, cols)


class SelfSupObjective(Objective):
    """Bauer's self-supervised objective (1), (2) or (3) on elastically distorted inputs, with progressive
    training sizes and rotation / flip augmentation; ``distort: false`` trains a plain autoencoder (mean
    squared error on undistorted images, the baseline)."""

    def __init__(self, image_size: int = 64, objective: Literal[1, 2, 3] = 3, lam: float = 0.5,
                 distort: bool = True, patch_min: float = 0.1, patch_max: float = 0.4, alpha: float = 0.2,
                 sigma: float = 0.12, grid: int = 16, shape: Shape = "blob", shape_noise: float = 0.35,
                 brightness: float = 0.0, brightness_prob: float = 0.5, rot90: bool = False, hflip: bool = False,
                 vflip: bool = False, progressive: list[list[float]] | None = None,
                 progressive_mode: Literal["crop", "resize"] = "crop", seed: int | None = None) -> None:
        if objective not in (1, 2, 3):
            raise ValueError(f"objective must be 1, 2 or 3 (the paper's equations), got {objective!r}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.objective, self.lam, self.distort = int(objective), float(lam), bool(distort)
        self.distort_options: dict[str, Any] = dict(
            patch_min=patch_min, patch_max=patch_max, alpha=alpha, sigma=sigma, grid=grid, shape=shape,
            shape_noise=shape_noise, brightness=brightness, brightness_prob=brightness_prob)
        distort_check = torch.zeros(1, 1, 4, 4)
        distort_images(distort_check, torch.Generator().manual_seed(0), **self.distort_options)  # option errors now
        self.augment_options = dict(rot90=rot90, hflip=hflip, vflip=vflip)
        self.image_size = image_size
        self.schedule = self._schedule(progressive, image_size)
        self.progressive_mode = progressive_mode
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._checked_sizes = False

    @staticmethod
    def _schedule(progressive: list[list[float]] | None, image_size: int) -> list[tuple[float, int]] | None:
        if not progressive:
            return None
        out = []
        for i, entry in enumerate(progressive):
            if len(entry) != 2:
                raise ValueError(f"progressive[{i}]: expected [fraction of training, size], got {entry}")
            frac, size = float(entry[0]), entry[1]
            if not 0.0 <= frac < 1.0:
                raise ValueError(f"progressive[{i}]: the fraction must be in [0, 1), got {entry[0]}")
            if float(size) != int(size) or not 1 <= int(size) <= image_size:
                raise ValueError(f"progressive[{i}]: the size must be an int in [1, image_size={image_size}], "
                                 f"got {size}")
            out.append((frac, int(size)))
        if [f for f, _ in out] != sorted({f for f, _ in out}):
            raise ValueError(f"progressive: fractions must increase strictly, got {[f for f, _ in out]}")
        if out[0][0] != 0.0:
            raise ValueError(f"progressive: the first entry must start at fraction 0, got {out[0][0]}")
        return out

    # ------------------------------------------------------------------------------------------ state
    def generator(self) -> torch.Generator:
        if self._generator is None:
            seed = self.seed if self.seed is not None else int(torch.randint(0, 2 ** 62, (1,)).item())
            self._generator = torch.Generator().manual_seed(seed)
        return self._generator

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator().get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator().set_state(state["generator"].cpu())

    # ------------------------------------------------------------------------------------------- loss
    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``outputs["input"]`` is what the model saw (X_hat); ``outputs["target"]`` the clean X and
        ``outputs["distortion_mask"]`` M (both set by ``training_step``; absent = no distortion)."""
        recon = outputs["recon"].float()
        x_hat = outputs["input"].float()
        target = outputs.get("target", outputs["input"]).float()
        if not self.distort:
            rec = F.mse_loss(recon, target)
            return {"loss": rec, "rec": rec}
        mask = outputs.get("distortion_mask")
        if mask is None:
            mask = torch.zeros_like(target[:, :1])
        return selfsup_loss(recon, target, x_hat, mask.float(), self.objective, self.lam)

    def training_sample(self, x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(X, X_hat, M) for a clean batch: augmented, brought to ``size``, distorted (M is None without)."""
        g = self.generator()
        x = augment(x, g, **self.augment_options)
        x = take_size(x, size, g, self.progressive_mode)
        if not self.distort:
            return x, x, None
        x_hat, mask = distort_images(x, g, **self.distort_options)
        return x, x_hat, mask

    def current_size(self, ctx: StepContext) -> int:
        return progressive_size(self.schedule, ctx.step_index, ctx.total_steps, self.image_size)

    def training_step(self, ctx: StepContext, batch: dict[str, Any]) -> dict[str, float]:
        size = self.current_size(ctx)
        if not self._checked_sizes and self.schedule:
            self._check_sizes(ctx.model)
        x, x_hat, mask = self.training_sample(batch["image"], size)
        with ctx.autocast():
            outputs = ctx.model(x_hat)
        outputs["target"] = x
        if mask is not None:
            outputs["distortion_mask"] = mask
        losses = self.loss(outputs, batch)
        ctx.step(losses["loss"], ctx.optimizers[0])
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs["size"] = float(size)
        return logs

    def _check_sizes(self, model: torch.nn.Module) -> None:
        self._checked_sizes = True
        encoder = getattr(getattr(model, "module", model), "encoder", None)
        multiple = getattr(encoder, "size_multiple", None)
        bad = [s for _, s in self.schedule if multiple and s % multiple]
        if bad:
            raise ValueError(f"model.objective.progressive: sizes {bad} are not multiples of {multiple}, which the "
                             f"encoder needs (2**depth); choose sizes like "
                             f"{[max(multiple, s // multiple * multiple) for s in bad]}")
