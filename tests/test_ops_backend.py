"""reconad.ops.backend: which implementation each op runs on, and why."""
from __future__ import annotations

import subprocess
import sys

import pytest

import reconad.ops as ops


def test_unknown_op_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown op 'memory_adress'; reconad's ops are: .*memory_address"):
        ops.backend("memory_adress", "cpu")


def test_backends_and_reasons_for_every_op():
    info = ops.extension_info()
    assert set(info["ops"]) == set(ops.registered_ops()) and "memory_address" in info["ops"]
    for op in ops.registered_ops():
        for dev in ("cpu", "cuda"):
            b = ops.backend(op, dev)
            assert b in (("cpp", "fallback") if dev == "cpu" else ("cuda", "fallback"))
            assert ops.backend_reason(op, dev)
    assert ops.backend("memory_address", "mps") == "fallback"


def test_installed_extension_serves_cpu_kernels():
    """On an installed build every op with a CPU kernel in csrc/ reports "cpp"."""
    info = ops.extension_info()
    if not info["extension"]["loaded"]:
        pytest.skip(f"reconad._C is not built here: {info['extension']['error']}")
    import glob
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with_cpu = {os.path.basename(os.path.dirname(os.path.dirname(p)))
                for p in glob.glob(os.path.join(root, "csrc", "*", "cpu", "*.cpp"))}
    for op in with_cpu & set(ops.registered_ops()):
        assert ops.backend(op, "cpu") == "cpp", (op, ops.backend_reason(op, "cpu"))


def test_disable_switch_forces_the_fallback():
    code = ("import reconad.ops as o; print(o.backend('memory_address', 'cpu'), "
            "o.backend_reason('memory_address', 'cpu'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "RECONAD_DISABLE_EXTENSION": "1"}, check=True)
    assert out.stdout.strip() == "fallback RECONAD_DISABLE_EXTENSION=1"
