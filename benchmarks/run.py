"""Run every ``benchmarks/bm_*.py`` (or the named ones) and print their tables.

    python benchmarks/run.py                   # all
    python benchmarks/run.py memory_address    # bm_memory_address.py only
    python benchmarks/run.py topk_mask -- --device cuda   # arguments after -- go to each benchmark
    python benchmarks/run.py --json rows.json topk_mask   # also write every benchmark's rows as JSON
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _available() -> dict[str, str]:
    return {os.path.basename(p)[3:-3]: p for p in sorted(glob.glob(os.path.join(HERE, "bm_*.py")))}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    json_path = None
    if argv[:1] == ["--json"]:
        if len(argv) < 2:
            print("--json needs a file name", file=sys.stderr)
            return 2
        json_path, argv = argv[1], argv[2:]
    available = _available()
    names = [n[3:] if n.startswith("bm_") else n.removesuffix(".py") for n in argv] or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    sys.path.insert(0, HERE)
    rows: dict[str, list] = {}
    for name in names:
        spec = importlib.util.spec_from_file_location(f"bm_{name}", available[name])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        rows[name] = mod.main(extra)
    if json_path:
        from reconad.io import write_text

        write_text(json_path, json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
