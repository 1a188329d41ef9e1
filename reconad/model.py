"""A model composed from config: [masker] -> encoder -> [memory] -> decoder, scored by one or more scorers.

Components are plain ``nn.Module`` s built from the registry; shapes are checked once, when the model is
built, by running a tiny batch through it, so a mismatch is an error naming both components and both
shapes before any training.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .components import MemoryRead, Objective, Scorer, Scores
from .config import ComponentConfig, ModelConfig
from .registry import Registry

__all__ = ["BuildError", "ReconModel", "build_model", "feature_shape", "nearest_size"]


class BuildError(ValueError):
    """Components that do not fit together (raised when the model is built, before training)."""


def feature_shape(features: Any) -> Any:
    """Shape(s) without the batch dimension: a tuple, or a list of tuples for multi-scale features."""
    if isinstance(features, torch.Tensor):
        return tuple(features.shape[1:])
    if isinstance(features, (list, tuple)):
        return [feature_shape(f) for f in features]
    raise BuildError(f"features must be a tensor or a list of tensors, got {type(features).__name__}")


class ReconModel(nn.Module):
    """``forward(x)`` returns a dict: ``input``, ``recon`` and what the components add (``masked``, ``mask``,
    ``features``, ``memory`` (a ``MemoryRead``), and any extra keys a decoder returns)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, memory: nn.Module | None = None,
                 masker: nn.Module | None = None, scorers: list[Scorer] | None = None,
                 scorer_names: list[str] | None = None) -> None:
        super().__init__()
        self.masker, self.encoder, self.memory, self.decoder = masker, encoder, memory, decoder
        self.scorers = nn.ModuleList(scorers or [])
        self.scorer_names = list(scorer_names or [f"scorer{i}" for i in range(len(self.scorers))])

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        out: dict[str, Any] = {"input": x}
        h = x
        if self.masker is not None:
            h, out["mask"] = self.masker(x)
            out["masked"] = h
        out.update(self.encode_decode(h))
        return out

    def encode_decode(self, x: torch.Tensor) -> dict[str, Any]:
        """encoder -> [memory] -> decoder on ``x`` as given (no masker): ``features``, ``memory`` (a
        ``MemoryRead``), ``recon`` and any extra keys an encoder or decoder returns."""
        out: dict[str, Any] = {}
        feats = self.encoder(x)
        if isinstance(feats, dict):  # e.g. a variational encoder: {"features": z, "kl": ...}
            out.update({k: v for k, v in feats.items() if k != "features"})
            feats = feats["features"]
        out["features"] = feats
        if self.memory is not None:
            read = self.memory(feats)
            out["memory"] = read
            feats = read.output
        dec = self.decoder(feats)
        if isinstance(dec, dict):
            out.update(dec)
        else:
            out["recon"] = dec
        return out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``R(x)`` of masked-input methods: the reconstruction of ``x`` itself, without the masker."""
        return self.encode_decode(x)["recon"]

    def score(self, outputs: dict[str, Any]) -> dict[str, Scores]:
        """Every scorer's ``Scores`` for a batch of outputs, by scorer name. A scorer whose ``Scorer.requires``
        names ``"recon_unmasked"`` gets the intact input's reconstruction (``reconstruct``), computed once when
        a masker hid part of the input and no component provided it."""
        if "recon_unmasked" not in outputs and any("recon_unmasked" in s.requires for s in self.scorers):
            outputs = {**outputs, "recon_unmasked": self.reconstruct(outputs["input"])
                       if self.masker is not None else outputs["recon"]}
        return {name: scorer(outputs) for name, scorer in zip(self.scorer_names, self.scorers)}


def _build(registry: Registry, kind: str, cc: ComponentConfig, context: dict[str, Any],
           source: str | None = None) -> Any:
    spec = registry.get(kind, cc.name)
    ctx = {k: v for k, v in context.items() if k in spec.schema.context}
    try:
        return spec.build(**ctx, **cc.params)
    except (ValueError, TypeError) as exc:
        ctx_text = ", ".join(f"{k}={v}" for k, v in ctx.items() if not (source and k == "in_shape"))
        after = f" after {source} (which gives features of shape {context['in_shape']})" if source else ""
        raise BuildError(f"model.{'scorers' if kind == 'scorer' else kind}: building {kind} {cc.name!r} "
                         f"({spec.plugin}){after} with {ctx_text or 'no context'} failed: {exc}") from exc


def _scorer_names(configs: list[ComponentConfig]) -> list[str]:
    names, seen = [], {}
    for cc in configs:
        seen[cc.name] = seen.get(cc.name, 0) + 1
        names.append(cc.name if seen[cc.name] == 1 else f"{cc.name}{seen[cc.name]}")
    return names


def build_model(cfg: ModelConfig, registry: Registry, in_channels: int, image_size: int
                ) -> tuple[ReconModel, Objective]:
    """Build and shape-check the model and its objective for ``in_channels`` x ``image_size`` images."""
    probe = torch.rand(2, in_channels, image_size, image_size)
    base = {"in_channels": in_channels, "image_size": image_size, "out_channels": in_channels}
    masker = _build(registry, "masker", cfg.masker, base) if cfg.masker else None
    encoder = _build(registry, "encoder", cfg.encoder, base)
    with torch.no_grad():
        h = probe
        if masker is not None:
            masker.eval()
            h, mask = _probe(masker, h, f"masker {cfg.masker.name!r}", (in_channels, image_size, image_size))
            if tuple(h.shape) != tuple(probe.shape) or tuple(mask.shape) != (2, 1, image_size, image_size):
                raise BuildError(f"masker {cfg.masker.name!r} must return (x_masked {tuple(probe.shape[1:])}, "
                                 f"mask (1, {image_size}, {image_size})), got {feature_shape(h)} and "
                                 f"{feature_shape(mask)}")
        encoder.eval()
        feats = _probe(encoder, h, f"encoder {cfg.encoder.name!r}", (in_channels, image_size, image_size))
        if isinstance(feats, dict):
            feats = feats["features"]
        enc_shape = feature_shape(feats)
        memory, mem_shape = None, enc_shape
        if cfg.memory:
            memory = _build(registry, "memory", cfg.memory, {**base, "in_shape": enc_shape},
                            source=f"encoder {cfg.encoder.name!r}")
            memory.eval()
            read = _probe(memory, feats, f"memory {cfg.memory.name!r}", enc_shape,
                          after=f"encoder {cfg.encoder.name!r}")
            if not isinstance(read, MemoryRead):
                raise BuildError(f"memory {cfg.memory.name!r} must return reconad.components.MemoryRead, "
                                 f"got {type(read).__name__}")
            mem_shape = feature_shape(read.output)
            if mem_shape != enc_shape:
                raise BuildError(f"memory {cfg.memory.name!r} returns features of shape {mem_shape} but reads "
                                 f"encoder {cfg.encoder.name!r}'s features of shape {enc_shape}; a memory must "
                                 f"return the shape it reads")
            feats = read.output
        source = f"memory {cfg.memory.name!r}" if cfg.memory else f"encoder {cfg.encoder.name!r}"
        decoder = _build(registry, "decoder", cfg.decoder, {**base, "in_shape": mem_shape}, source=source)
        decoder.eval()
        dec = _probe(decoder, feats, f"decoder {cfg.decoder.name!r}", mem_shape, after=source)
        recon = dec["recon"] if isinstance(dec, dict) else dec
        if tuple(recon.shape) != tuple(probe.shape):
            raise BuildError(f"decoder {cfg.decoder.name!r} reconstructs shape {feature_shape(recon)} from "
                             f"{source}'s features {mem_shape}, but the images are "
                             f"{(in_channels, image_size, image_size)}")
    scorers = [_build(registry, "scorer", sc, base) for sc in cfg.scorers]
    for sc, scorer in zip(cfg.scorers, scorers):
        if not isinstance(scorer, Scorer):  # its optional features (requires, finalize, ...) live on the base
            raise BuildError(f"scorer {sc.name!r} ({registry.get('scorer', sc.name).plugin}) must be a "
                             f"reconad.components.Scorer, got {type(scorer).__name__}; subclass Scorer instead "
                             f"of nn.Module (its defaults keep the behaviour)")
    model = ReconModel(encoder, decoder, memory, masker, scorers, _scorer_names(cfg.scorers))
    model.train()
    objective = _build(registry, "objective", cfg.objective, base)
    if not isinstance(objective, Objective):
        raise BuildError(f"objective {cfg.objective.name!r} must be a reconad.components.Objective, "
                         f"got {type(objective).__name__}")
    return model, objective


def _probe(module: nn.Module, x: Any, what: str, in_shape: Any, after: str | None = None) -> Any:
    try:
        return module(x)
    except Exception as exc:  # noqa: BLE001 - re-raised with both components and shapes named
        src = f" from {after}" if after else ""
        raise BuildError(f"{what} cannot take input of shape {in_shape}{src}: {type(exc).__name__}: {exc}") from exc


def nearest_size(cfg: ModelConfig, registry: Registry, in_channels: int, image_size: int, tries: int = 64) -> int:
    """``image_size`` when the model builds for ``image_size`` x ``image_size`` inputs, else the nearest multiple
    of 4 it builds for (the larger on ties; ``tries`` sizes at most); with none, the error for ``image_size``.
    The global RNG is left as it was."""
    candidates = sorted((c for c in range(4, 4 * image_size + 1, 4) if c != image_size),
                        key=lambda c: (abs(c - image_size), -c))
    with torch.random.fork_rng(devices=[]):
        try:
            build_model(cfg, registry, in_channels, image_size)
            return image_size
        except BuildError as exc:
            first = exc
        for size in candidates[:tries]:
            try:
                build_model(cfg, registry, in_channels, size)
                return size
            except BuildError:
                continue
    raise first
