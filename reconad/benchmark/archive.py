"""A benchmark's archive (``--archive DIR``): what a long suite needs to go on in another checkout and to be
summarised again, small enough to commit. A suite of hundreds of cells outlives a machine; its run folders
(checkpoints, reports: megabytes each) do not need to.

``DIR`` has ``OUT``'s layout, pruned: per finished cell, next to where its run folder is in ``OUT``
(``cells/<method>/<dataset>/<class>/``):

* ``seed<N>.json``: the cell's cache entry (cache key, metrics, seconds), as in ``OUT/cells/``;
* ``seed<N>.npz``: its test scores as dense ranks over the images sorted by path (uint16 or uint32) and the
  0/1 labels (int8), and the name of its image list. AUROC depends on the ranking only, so every image-level
  number of the summary (means, intervals, paired differences) is the same from the ranks as from the scores;
* ``images/<sha1>.txt``: an image list (sorted paths), shared by every cell that scored the same test set.

Pixel maps are not archived (megabytes per cell): pixel intervals need the cells' run folders.
Restoring writes each archived cell's entry and a ``scores.csv`` (``path,score,label``, the score a rank)
into ``OUT/cells/``, where ``--resume`` finds it cached when its cache key still matches.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ..io import atomic_path, write_json, write_text
from .runner import CellResult
from .suite import Cell
from .summary import read_scores

__all__ = ["restore", "save"]

IMAGES = "images"


def _entry(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            entry = json.load(fh)
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def save(archive: str, out: str, result: CellResult) -> bool:
    """Archive one finished cell of the benchmark in ``out`` (its entry and ranked scores); True when written,
    False when it is not finished or the archive holds it already with the same cache key."""
    entry = _entry(os.path.join(out, result.cell.folder) + ".json")
    dest = os.path.join(archive, result.cell.folder)
    if result.status != "ok" or entry is None or entry.get("status") != "ok":
        return False
    old = _entry(dest + ".json")
    if old is not None and old.get("key") == entry["key"] and os.path.exists(dest + ".npz"):
        return False
    rows = sorted((p, score, label) for p, (score, label) in read_scores(result.run_dir).items())
    paths = "\n".join(r[0] for r in rows) + "\n"
    digest = hashlib.sha1(paths.encode("utf-8")).hexdigest()
    listing = os.path.join(archive, IMAGES, f"{digest}.txt")
    if not os.path.exists(listing):
        write_text(listing, paths)
    ranks = rankdata([r[1] for r in rows], method="dense")
    dtype = np.uint16 if len(rows) < 2 ** 16 else np.uint32
    with atomic_path(dest + ".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, ranks=ranks.astype(dtype), labels=np.array([r[2] for r in rows], np.int8),
                            images=np.array(digest))
    write_json(dest + ".json", entry)
    return True


def restore(archive: str, out: str, cells: list[Cell]) -> int:
    """Write the archived cells that ``out`` lacks (or holds unfinished) into ``out``: their entry and a
    ``scores.csv`` of ranks. Returns how many. An archive file that cannot be read is a ValueError naming it."""
    n = 0
    for cell in cells:
        src = os.path.join(archive, cell.folder)
        entry = _entry(src + ".json")
        if entry is None:
            if os.path.exists(src + ".json"):
                raise ValueError(f"{src}.json: unreadable archive entry; delete it or restore it from git")
            continue
        here = _entry(os.path.join(out, cell.folder) + ".json")
        if here is not None and here.get("status") == "ok":
            continue
        try:
            with np.load(src + ".npz", allow_pickle=False) as z:
                ranks, labels, digest = z["ranks"], z["labels"], str(z["images"])
            with open(os.path.join(archive, IMAGES, f"{digest}.txt"), encoding="utf-8") as fh:
                paths = fh.read().splitlines()
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{src}.npz: unreadable archived scores ({exc})") from None
        if not len(paths) == len(ranks) == len(labels):
            raise ValueError(f"{src}.npz: {len(ranks)} ranks and {len(labels)} labels for {len(paths)} images")
        folder = os.path.join(out, cell.folder)
        if os.path.isdir(folder):
            shutil.rmtree(folder)          # an unfinished run of the cell: the archived one replaces it
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([("path", "score", "label"),
                                                       *((p, int(r), int(y)) for p, r, y in zip(paths, ranks, labels))])
        write_text(os.path.join(folder, "scores.csv"), buf.getvalue())
        write_json(folder + ".json", {**entry, "restored": os.path.abspath(archive)})
        n += 1
    return n
