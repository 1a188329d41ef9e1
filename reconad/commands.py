"""What every command on a trained run shares, so a plugin's command is a few lines.

    p = subparsers.add_parser("segment", help="...")
    add_run_arguments(p)                         # RUN, --out (default: the run folder), --device auto
    p.set_defaults(func=lambda args: ...)        # trained = load_run(args); out = out_folder(args)

``RUN`` is a finished run folder (the ``--out`` of ``reconad run``) or its ``checkpoint.pt``; anything else is
one ``CheckpointError`` that ``reconad`` prints as one line.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from .engine import Trained, load_trained, run_folder

__all__ = ["add_device_argument", "add_quiet_argument", "add_run_arguments", "load_run", "out_folder"]

DEVICE_HELP = "auto (a GPU when there is one), cpu, cuda or cuda:N (default: auto)"


def add_device_argument(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device``; ``default=None`` for commands that train, so the config's ``train.device`` stays."""
    parser.add_argument("--device", default=default,
                        help=DEVICE_HELP if default == "auto" else "auto, cpu, cuda or cuda:N (default: the "
                                                                   "config's train.device)")


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """``--quiet/-q``: no progress bars or progress lines, only errors and the command's result lines. Given
    before or after the command name (``reconad -q run`` or ``reconad run -q``)."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only errors and the final result lines (no progress)")


def add_run_arguments(parser: argparse.ArgumentParser, *, optional: bool = False, out: str | None = None,
                      out_required: bool = False) -> None:
    """``RUN`` (``--checkpoint RUN`` when ``optional``: commands that can also train), ``--out`` and
    ``--device`` (default ``auto``; a command that can train keeps its config's). ``out`` is the help of
    ``--out`` (default: the run folder)."""
    what = "a finished run folder (the --out of `reconad run`) or its checkpoint.pt"
    if optional:
        parser.add_argument("--checkpoint", dest="run", default=None, help=f"score with {what} instead of training")
    else:
        parser.add_argument("run", metavar="RUN", help=what)
    parser.add_argument("--out", required=out_required, default=None,
                        help=out or "output folder (default: the run folder)")
    add_device_argument(parser, None if optional else "auto")
    add_quiet_argument(parser)


def load_run(args: argparse.Namespace, registry: Any = None) -> Trained:
    """The finished run ``args.run`` on ``args.device`` (see ``reconad.engine.load_trained``)."""
    return load_trained(args.run, args.device, registry)


def out_folder(args: argparse.Namespace) -> str:
    """``args.out`` or else the run folder, created."""
    out = args.out or run_folder(args.run)
    os.makedirs(out, exist_ok=True)
    return out
