"""Checkpoints: plain tensors and Python primitives only, saved atomically, loaded with
``torch.load(..., weights_only=True)`` (a checkpoint that needs pickled code is refused)."""
from __future__ import annotations

import os
import pickle
from typing import Any

import torch
import yaml

from ..io import atomic_path

__all__ = ["CheckpointError", "FORMAT", "check_compatible", "check_config_file", "check_weights", "load_checkpoint",
           "model_signature", "save_checkpoint"]

FORMAT = "reconad-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, not reconad's, unsafe, or of another model."""


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    state = {"format": FORMAT, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "checkpoint.pt")):
            raise CheckpointError(f"{path!r} is not a reconad run folder: it has no checkpoint.pt (pass the --out "
                                  f"folder of `reconad run` / `reconad train`, or its checkpoint.pt)")
        path = os.path.join(path, "checkpoint.pt")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist (pass a checkpoint.pt or a run folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path!r} contains pickled Python objects, not only weights; refusing to load it "
            f"(weights_only=True). Re-save it with plain tensors, or train anew. ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path!r} is not a readable torch file: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path!r} is not a reconad checkpoint (expected format {FORMAT!r})")
    return state


def model_signature(config: dict[str, Any], channels: int, image_size: int) -> dict[str, Any]:
    """What must match for weights to be loaded into a model: the model section and the input shape."""
    return {"model": config["model"], "channels": channels, "image_size": image_size}


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k), out)
    elif a != b:
        out.append(f"{path}: checkpoint has {a!r}, config has {b!r}")


def check_compatible(state: dict[str, Any], signature: dict[str, Any], path: str) -> None:
    """Raise ``CheckpointError`` naming every key where the checkpoint's model differs from the config's."""
    diffs: list[str] = []
    _diff(state.get("signature"), signature, "", diffs)
    if diffs:
        raise CheckpointError(f"checkpoint {path!r} was trained with another model config:\n  "
                              + "\n  ".join(diffs[:10]))


def check_config_file(state: dict[str, Any], config_path: str, path: str) -> None:
    """A run folder's ``config.yaml`` must be the config its checkpoint was trained with (the one every command
    uses): raise ``CheckpointError`` naming each key that differs."""
    try:
        with open(config_path, encoding="utf-8") as fh:
            on_disk = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{config_path!r} beside checkpoint {path!r} cannot be read: {exc}") from None
    diffs: list[str] = []
    _diff(state.get("config"), on_disk, "", diffs)
    if diffs:
        raise CheckpointError(f"{config_path!r} contradicts checkpoint {path!r}, which holds the config it was "
                              f"trained with (and is what this command uses):\n  " + "\n  ".join(diffs[:10])
                              + "\nrestore config.yaml from the run, or train anew with the changed config")


def check_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: str) -> None:
    """The checkpoint's weights must fit the model its own config builds: raise ``CheckpointError`` naming the
    missing, unexpected and differently shaped tensors (instead of torch's size-mismatch traceback)."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in weights.items()}
    problems = [f"{k}: checkpoint has shape {list(have[k])}, the config's model has {list(want[k])}"
                for k in want if k in have and have[k] != want[k]]
    problems += [f"{k}: missing from the checkpoint" for k in want if k not in have]
    problems += [f"{k}: in the checkpoint, not in the config's model" for k in have if k not in want]
    if problems:
        raise CheckpointError(f"checkpoint {path!r}: its weights do not fit the model its embedded config builds "
                              f"(the checkpoint was altered or mixed with another run's config):\n  "
                              + "\n  ".join(problems[:10]) + (f"\n  ... {len(problems) - 10} more"
                                                               if len(problems) > 10 else ""))
