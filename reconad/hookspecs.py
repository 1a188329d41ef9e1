"""Every hook reconad calls, in one place; a hook's docstring is its documentation. docs/plugins.md's sections
"How reconad calls plugins" and "Hooks" are generated from this module (``python -m reconad._hookdocs
--update docs/plugins.md``; tests/test_plugins.py fails when they differ).

A plugin is a module or object with ``@hookimpl`` functions (``from reconad import hookimpl``), found through
the entry-point group ``reconad`` of an installed distribution. Hooks are called through pluggy with keyword
arguments only: an implementation declares just the arguments it uses, so a hook can gain arguments later
without breaking plugins. A ``@hookimpl`` function whose name is not one of the hooks below (a misspelling
such as ``reconad_register_encoder``) is refused with an error naming the plugin, the function and the
closest hook; an installed plugin with one is skipped with that message as a warning.

Plugins are called in the order they are registered: reconad's built-in plugin first, then the installed
entry points in sorted name order, then plugins given to ``make_plugin_manager`` explicitly (tests).

Registration hooks receive a ``register`` callback::

    register(name, factory, *, description=None, contract_model=None)

- ``name`` (str) is what configs use (``model.encoder.name: conv``); an unknown name is an error listing
  the available names and the closest one.
- ``factory`` is a class or function. **Its keyword parameters are the component's config keys**: give them
  type hints and defaults. When the component is registered, reconad builds its schema from the signature
  once (``ComponentSpec.schema``, checked by pydantic in strict mode: ``3`` is not a ``bool``, ``"3"`` not an
  ``int``; an ``int`` widens to a ``float``) and validates every config against it before training
  (``model.memory.slots: expected int, got 'many'``, unknown keys with "did you mean" and the valid keys).
  A factory taking ``**kwargs`` accepts any further key, unchecked. A null for a parameter whose type does
  not take null means its default.
- Context parameters are filled in by reconad when the factory declares them, and may not be set in a
  config: ``in_channels``, ``out_channels`` (image channels), ``image_size`` (the square input side) and
  ``in_shape`` (the incoming features' shape without the batch dimension: a tuple, or a list of tuples
  for multi-scale features).
- ``description`` defaults to the first line of the factory's docstring (shown by ``reconad plugins``).
- ``contract_model`` is for tests only: the neighbours the component needs in tests/test_contract.py, a
  partial ``model:`` mapping used instead of the contract's defaults (e.g. ``{"masker": "oled"}`` for a
  scorer that reads a mask).

The same kind and name registered by two plugins is not an error: the later registration overrides the
earlier one (so an installed plugin can replace a built-in component), with one warning naming both
plugins; ``reconad plugins`` lists the component that is used and its plugin. One plugin registering a
name twice is an error.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Protocol

import pluggy

__all__ = ["hookimpl", "hookspec", "Register"]

hookspec = pluggy.HookspecMarker("reconad")
hookimpl = pluggy.HookimplMarker("reconad")


class Register(Protocol):
    """The ``register`` callback of the registration hooks (see the module docstring)."""

    def __call__(self, name: str, factory: Callable[..., object], *, description: str | None = None,
                 contract_model: Mapping[str, Any] | None = None) -> None: ...


@hookspec
def reconad_register_encoders(register: Register) -> None:
    """Register encoders: modules mapping an image batch ``(B, C, H, W)`` to features.

    Features are a tensor (``(B, D)`` vectors or ``(B, D, h, w)`` maps), a list of such tensors
    (multi-scale), or a dict with ``"features"`` and extra entries for scorers and the objective (e.g. a
    variational encoder's ``"kl"``). Context parameters a factory may declare: ``in_channels``,
    ``image_size``. Example::

        @hookimpl
        def reconad_register_encoders(register):
            register("tiny", TinyEncoder)  # TinyEncoder(nn.Module): __init__(self, in_channels: int, width: int = 8)
    """


@hookspec
def reconad_register_memories(register: Register) -> None:
    """Register memories: modules that read the encoder's features from a memory.

    ``forward(features)`` returns ``reconad.components.MemoryRead(output, entropy, sample_entropy)``:
    ``output`` has the same structure and shapes as ``features``; ``entropy`` is a scalar (the training
    regulariser); ``sample_entropy`` is ``(B,)`` or None. Context parameter: ``in_shape`` (the features'
    shape without the batch dimension, or a list of shapes for multi-scale features). The built-in
    ``memae`` reads ``(B, C)`` vectors or every position of ``(B, C, h, w)`` maps with
    ``reconad.ops.memory_address``. Example::

        from reconad.components import MemoryRead
        from reconad.ops import memory_address

        class SlotMemory(nn.Module):
            def __init__(self, in_shape: tuple, slots: int = 50, shrink_threshold: float = 0.02):
                super().__init__()
                self.memory = nn.Parameter(torch.randn(slots, in_shape[0]))
                self.shrink = shrink_threshold

            def forward(self, z):                      # z: (B, D)
                read = memory_address(z, self.memory, self.shrink)
                return MemoryRead(read.output, read.entropy, None)

        @hookimpl
        def reconad_register_memories(register):
            register("slots", SlotMemory)
    """


@hookspec
def reconad_register_decoders(register: Register) -> None:
    """Register decoders: modules mapping features back to an image ``(B, C, H, W)``.

    ``forward(features)`` returns the reconstruction tensor, or a dict with at least ``"recon"`` (more
    keys, e.g. a second reconstruction, are passed on to scorers and the objective). Context parameters:
    ``in_shape`` (the features' shape without batch, or a list of them), ``out_channels``, ``image_size``.
    Example::

        @hookimpl
        def reconad_register_decoders(register):
            register("upsample", UpsampleDecoder)  # __init__(self, in_shape, out_channels: int, image_size: int)
    """


@hookspec
def reconad_register_maskers(register: Register) -> None:
    """Register maskers: modules that hide part of the input before it is encoded.

    ``forward(x)`` returns ``(x_masked, mask)``: the masked image, same shape as ``x``, and the mask
    ``(B, 1, H, W)`` (1 = kept, 0 = hidden). Context parameters: ``in_channels``, ``image_size``. The
    built-in ``random_block`` hides random squares while training. Example::

        @hookimpl
        def reconad_register_maskers(register):
            register("stripes", StripeMasker)  # forward(x) -> (x * mask, mask)
    """


@hookspec
def reconad_register_scorers(register: Register) -> None:
    """Register scorers: ``reconad.components.Scorer`` subclasses that turn a model's outputs into anomaly
    scores.

    ``forward(outputs: dict)`` returns ``reconad.components.Scores(image, pixel, parts)``: ``image`` is
    ``(B,)``, higher = more anomalous; ``pixel`` is ``(B, H, W)`` or None; ``parts`` is None or extra named
    ``(B,)`` scores. ``outputs`` holds ``input``, ``recon`` and whatever the components added
    (``features``, ``memory``, ``mask``, ...). The optional features, ``requires``, ``finalize``,
    ``fit_reference``, ``set_level`` and ``fixed_threshold``, are named on ``Scorer`` with defaults that
    change nothing (see "Component contracts"). A factory that builds a plain ``nn.Module`` is refused when the model is built, with the
    scorer's name. Context parameter: ``image_size``. Example::

        @hookimpl
        def reconad_register_scorers(register):
            register("max_abs_error", MaxAbsError)  # class MaxAbsError(Scorer)
    """


@hookspec
def reconad_register_objectives(register: Register) -> None:
    '''Register training objectives: ``reconad.components.Objective`` subclasses.

    An objective gives the loss (``loss(outputs, batch) -> dict`` with a ``"loss"`` entry) and may
    override the training recipe: ``configure_optimizers(model, make_optimizer)`` (e.g. separate
    optimisers for an adversarial masker; the default is one optimiser, the config's ``train.optimizer``,
    ``lr``, ...) and ``training_step(ctx, batch)`` (e.g. alternating updates, a frozen pre-trained encoder).
    ``ctx`` is a ``StepContext`` with ``model``, ``optimizers``, ``autocast()`` and
    ``step(loss, optimizer)`` (zero_grad, backward, clipping, step, mixed precision handled), and the schedule:
    ``step_index`` (steps done, resumed ones included), ``epoch``, ``steps_per_epoch`` and ``total_steps``,
    for recipes with phases (pre-train then freeze, progressive input sizes). ``check_schedule(steps_per_epoch,
    total_steps)`` runs once before training: raise ``ValueError`` there when the recipe cannot fit the run
    (reconad prints it as one line before any step). An objective's own state (a
    phase flag, an EMA) goes in ``state_dict()`` so ``--resume`` restores it. Example::

        from reconad.components import Objective

        class L1Objective(Objective):
            """Mean absolute reconstruction error."""

            def __init__(self, weight: float = 1.0):
                self.weight = weight

            def loss(self, outputs, batch):
                rec = (outputs["recon"] - outputs["input"]).abs().mean()
                return {"loss": self.weight * rec, "rec": rec}

        @hookimpl
        def reconad_register_objectives(register):
            register("l1", L1Objective)
    '''


@hookspec
def reconad_register_datasets(register: Register) -> None:
    '''Register datasets: factories ``factory(settings: reconad.data.DataSettings, **options)``
    returning ``reconad.data.DatasetSplits(train, holdout, test, ...)``.

    ``options`` are the dataset's own keys under ``data:`` in a config, validated from the factory's
    signature like a component's parameters. Items are dicts with the keys ``image``, ``label``, ``mask``,
    ``path`` and ``defect`` (see docs/datasets.md); thresholds are chosen on ``holdout``. The optional ``validation``
    split (labelled normal and anomalous images, disjoint from ``train`` and ``test``; default None) is
    what ``train.select_every`` selects the model on; leave it None when the dataset has no spare
    anomalies. ``settings.image_size`` may be None: resize to ``reconad.data.base.image_size(settings, own)``,
    where ``own`` is the side your training images share (``own_size(sizes)`` finds it; None when they have no
    one square size: 64 is used), and return ``own`` as ``DatasetSplits(own_size=...)``; the trainer then says
    once what it did and, when the model cannot take that size, rebuilds the data at the nearest size it takes.
    Example::

        from reconad.data import DatasetSplits, DataSettings

        def my_parts(settings: DataSettings, camera: str = "left") -> DatasetSplits:
            """Parts photographed on line 3."""
            ...

        @hookimpl
        def reconad_register_datasets(register):
            register("line3", my_parts)  # data: {name: line3, camera: right}
    '''


@hookspec
def reconad_register_loggers(register: Register) -> None:
    '''Register loggers: ``reconad.components.Logger`` subclasses that receive the training history, selected
    by ``train.loggers`` (e.g. ``[csv, tensorboard]``; ``csv``, which writes ``history.csv``, is always on).

    The factory takes no context; reconad builds each logger once per run, then calls ``start(run)`` before
    the first step (``run`` is a ``reconad.components.LogRun``: ``out_dir``, the resolved ``config`` and, on
    ``--resume``, ``resume_step``: drop what was logged after it), ``log(rows)`` as training goes (a list of
    ``reconad.components.HistoryRow(step, epoch, stage, scope, key, value)``: scope ``train`` every
    ``train.log_every_steps`` steps, ``epoch`` per epoch, ``val`` for the validation split) and ``close()``
    when training ends or stops. A destination that cannot be written raises ``reconad.engine.RunError``
    in ``start``, so the run stops before training. Built-in: ``csv``, ``tensorboard`` (extra
    ``[tensorboard]``), ``mlflow`` (extra ``[mlflow]``). Example::

        from reconad.components import Logger

        class PrintLogger(Logger):
            """Print every row."""

            def log(self, rows):
                for r in rows:
                    print(r.step, r.stage, f"{r.scope}/{r.key}", r.value)

        @hookimpl
        def reconad_register_loggers(register):
            register("print", PrintLogger)
    '''


@hookspec
def reconad_register_evaluators(register: Register) -> None:
    '''Register evaluators: ``reconad.components.Evaluator`` subclasses that measure what a paper defines beyond
    reconad's metrics (OLED's Mask Module as a segmenter, paper 004's area rule), selected by
    ``test.evaluators`` (e.g. ``[oled_segmentation]``, or ``[{name: area_rule, min_area: 20}]``).

    The factory's keyword parameters are the evaluator's config keys; it takes no context. reconad builds the
    evaluators when the model is built and calls ``check(model)`` before training (and before ``reconad test``
    scores): raise ``ValueError`` there when the evaluator cannot measure this model, so a run never fails
    after training. Once the test set is scored, ``evaluate(run)`` gets a ``reconad.components.EvalRun``
    (``model``, ``splits``, the test ``scores``, ``device``, ``config``, ``batch_size``) and returns a dict of
    numbers (None where undefined), written under ``metrics.json["evaluators"][NAME]``, shown in the report and
    summarised per method by ``reconad benchmark``; a value that is not a number is an error naming the
    evaluator and the key. Example::

        import numpy as np
        from reconad.components import Evaluator

        class FlaggedFraction(Evaluator):
            """The fraction of test images scoring above the q-quantile of the normal ones."""

            def __init__(self, q: float = 0.99):
                self.q = q

            def evaluate(self, run):
                s, y = run.scores.primary, run.scores.labels
                return {"flagged": float(np.mean(s > np.quantile(s[y == 0], self.q)))}

        @hookimpl
        def reconad_register_evaluators(register):
            register("flagged", FlaggedFraction)
    '''


@hookspec
def reconad_register_commands(subparsers: Any) -> None:
    """Add command-line subcommands: ``subparsers`` is the ``argparse`` sub-parser action of the
    ``reconad`` command.

    Add a parser with ``subparsers.add_parser(NAME, help=...)`` and give it a handler with
    ``parser.set_defaults(func=handler)``; ``handler(args) -> int`` returns the exit code. Example::

        @hookimpl
        def reconad_register_commands(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.add_argument("--name", default="world")
            p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)
    """

