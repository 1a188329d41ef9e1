"""The engine: train, test and predict from a validated config, writing a run folder.

``runs.py`` trains and tests a config (``run``), ``trained.py`` uses a finished run (``load_trained``,
``evaluate_checkpoint``, ``predict``), ``video.py`` scores a video with a video run (``score_video``);
``trainer``, ``evaluate``, ``report``, ``checkpoint`` and ``runtime`` are
the steps they share. This module only re-exports the public names.
"""
from __future__ import annotations

from .checkpoint import CheckpointError
from .runs import RunResult, default_out_dir, run
from .runtime import RunError
from .trainer import Interrupted
# ``predict`` the function is bound after ``trained`` imported the ``predict`` submodule, so the function wins
from .trained import Trained, evaluate_checkpoint, load_trained, predict, run_folder
from .video import VideoResult, score_video

__all__ = ["CheckpointError", "Interrupted", "RunError", "RunResult", "Trained", "VideoResult", "default_out_dir",
           "evaluate_checkpoint", "load_trained", "predict", "run", "run_folder", "score_video"]
