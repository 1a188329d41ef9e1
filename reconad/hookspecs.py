"""Every hook reconad calls, in one place. A hook's docstring is its documentation (docs/plugins.md
repeats each one with an example; tests/test_plugins.py fails when a hook is missing there).

Hooks are called with keyword arguments only, so new arguments can be added later without breaking
plugins. Registration hooks receive a ``register`` callback::

    register(name: str, factory: Callable[..., object], *, description: str | None = None)

``factory`` builds the component from the config's keys (see docs/plugins.md, "Component contracts"):
its keyword parameters, with type hints and defaults, are the keys a config may set, and they are
validated before training. The reserved context parameters (``in_channels``, ``out_channels``,
``image_size``, ``in_shape``) are filled by reconad when the factory declares them. A name registered
twice is an error that names both plugins.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

__all__ = ["hookimpl", "hookspec", "Register"]

hookspec = pluggy.HookspecMarker("reconad")
hookimpl = pluggy.HookimplMarker("reconad")

Register = Callable[..., None]


@hookspec
def reconad_register_encoders(register: Register) -> None:
    """Register encoders: ``nn.Module`` s mapping an image batch ``(B, C, H, W)`` to features.

    Features are a tensor (``(B, D)`` vectors or ``(B, D, h, w)`` maps) or a list of such tensors
    (multi-scale). Context parameters a factory may declare: ``in_channels``, ``image_size``.
    """


@hookspec
def reconad_register_memories(register: Register) -> None:
    """Register memories: ``nn.Module`` s that read the encoder's features from a memory.

    ``forward(features)`` returns ``reconad.components.MemoryRead(output, entropy, sample_entropy)``:
    ``output`` has the same structure and shapes as ``features``; ``entropy`` is a scalar (the training
    regulariser); ``sample_entropy`` is ``(B,)`` or None. Context parameter: ``in_shape`` (the features'
    shape without the batch dimension, or a list of shapes for multi-scale features).
    """


@hookspec
def reconad_register_decoders(register: Register) -> None:
    """Register decoders: ``nn.Module`` s mapping features back to an image ``(B, C, H, W)``.

    ``forward(features)`` returns the reconstruction tensor, or a dict with at least ``"recon"`` (more
    keys, e.g. a second reconstruction, are passed on to scorers and the objective). Context parameters:
    ``in_shape`` (the features' shape without batch, or a list of them), ``out_channels``, ``image_size``.
    """


@hookspec
def reconad_register_maskers(register: Register) -> None:
    """Register maskers: ``nn.Module`` s that hide part of the input before it is encoded.

    ``forward(x)`` returns ``(x_masked, mask)``: the masked image, same shape as ``x``, and the mask
    ``(B, 1, H, W)`` (1 = kept, 0 = hidden). Context parameters: ``in_channels``, ``image_size``.
    """


@hookspec
def reconad_register_scorers(register: Register) -> None:
    """Register scorers: ``nn.Module`` s that turn a model's outputs into anomaly scores.

    ``forward(outputs: dict)`` returns ``reconad.components.Scores(image, pixel)``: ``image`` is ``(B,)``,
    higher = more anomalous; ``pixel`` is ``(B, H, W)`` or None. ``outputs`` holds ``input``, ``recon``
    and whatever the components added (``features``, ``memory``, ``mask``, ...). Context parameter:
    ``image_size``.
    """


@hookspec
def reconad_register_objectives(register: Register) -> None:
    """Register training objectives: ``reconad.components.Objective`` subclasses.

    An objective gives the loss (``loss(outputs, batch) -> dict`` with a ``"loss"`` entry) and may
    override the training recipe: ``configure_optimizers`` (e.g. separate optimisers for an adversarial
    masker) and ``training_step`` (e.g. alternating updates, a frozen pre-trained encoder).
    """


@hookspec
def reconad_register_datasets(register: Register) -> None:
    """Register datasets: factories ``factory(settings: reconad.data.DataSettings, **options)``
    returning ``reconad.data.DatasetSplits(train, holdout, test, ...)``.

    ``options`` are the dataset's own keys under ``data:`` in a config, validated from the factory's
    signature like a component's parameters.
    """


@hookspec
def reconad_register_commands(subparsers: Any) -> None:
    """Add command-line subcommands: ``subparsers`` is the ``argparse`` sub-parser action of the
    ``reconad`` command. Add a parser with ``subparsers.add_parser(NAME, help=...)`` and give it a
    handler with ``parser.set_defaults(func=handler)``; ``handler(args) -> int`` returns the exit code.
    """
