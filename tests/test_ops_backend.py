"""reconad.ops.backend: which implementation each op runs on, and why."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import reconad.ops as ops


def test_unknown_op_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown op 'memory_adress'; reconad's ops are: .*memory_address"):
        ops.backend("memory_adress", "cpu")


def _backends_in_subprocess(**env: str) -> dict:
    """{op: {device: [backend, reason]}} for every op and cpu / cuda / mps, from a fresh interpreter."""
    code = ("import json, reconad.ops as o; print(json.dumps({op: {d: [o.backend(op, d), o.backend_reason(op, d)] "
            "for d in ('cpu', 'cuda', 'mps')} for op in o.registered_ops()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout)


def test_backends_and_reasons_for_every_op():
    info = ops.extension_info()
    assert set(info["ops"]) == set(ops.registered_ops()) == {"memory_address", "pro_curve", "topk_mask"}
    for op in ops.registered_ops():
        for dev in ("cpu", "cuda"):
            b = ops.backend(op, dev)
            assert b in (("cpp", "fallback") if dev == "cpu" else ("cuda", "fallback"))
            assert ops.backend_reason(op, dev) == info["ops"][op][dev]["reason"]
            assert b == info["ops"][op][dev]["backend"]
        assert ops.backend(op, "mps") == "fallback"
        assert ops.backend_reason(op, "mps") == "no compiled kernels for device type 'mps'"

    # forced fallback: every op, every device, one reason
    forced = _backends_in_subprocess(RECONAD_DISABLE_EXTENSION="1")
    assert set(forced) == set(ops.registered_ops())
    for op, per_device in forced.items():
        for dev in ("cpu", "cuda"):
            assert per_device[dev] == ["fallback", "RECONAD_DISABLE_EXTENSION=1"], (op, dev)

    # no GPU visible: the CPU answer is the installed build's, the CUDA answer says why
    hidden = _backends_in_subprocess(CUDA_VISIBLE_DEVICES="", RECONAD_DISABLE_EXTENSION="")
    loaded, with_cuda = info["extension"]["loaded"], info["extension"]["built_with_cuda"]
    for op, per_device in hidden.items():
        if loaded:
            assert per_device["cpu"] == ["cpp", "reconad._C (installed)"], op
        else:
            assert per_device["cpu"][0] == "fallback" and per_device["cpu"][1].startswith(
                "reconad._C is not importable"), op
        if with_cuda:      # kernels compiled in: registered whether or not a GPU is visible
            assert per_device["cuda"] == ["cuda", "reconad._C (installed)"], op
        else:
            assert per_device["cuda"] == ["fallback", "no CUDA GPU is visible"], op
        assert per_device["mps"] == ["fallback", "no compiled kernels for device type 'mps'"], op


def test_installed_extension_serves_cpu_kernels():
    """On an installed build every op with a CPU kernel in csrc/ reports "cpp"."""
    info = ops.extension_info()
    if not info["extension"]["loaded"]:
        pytest.skip(f"reconad._C is not built here: {info['extension']['error']}")
    import glob

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with_cpu = {os.path.basename(os.path.dirname(os.path.dirname(p)))
                for p in glob.glob(os.path.join(root, "csrc", "*", "cpu", "*.cpp"))}
    for op in with_cpu & set(ops.registered_ops()):
        assert ops.backend(op, "cpu") == "cpp", (op, ops.backend_reason(op, "cpu"))


def test_disable_switch_forces_the_fallback():
    code = ("import reconad.ops as o; print(o.backend('memory_address', 'cpu'), "
            "o.backend_reason('memory_address', 'cpu'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "RECONAD_DISABLE_EXTENSION": "1"}, check=True)
    assert out.stdout.strip() == "fallback RECONAD_DISABLE_EXTENSION=1"


# ---- one source of build truth: setup.py and the first-use CUDA build -----------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")


def _setup_extension(monkeypatch, force_cuda: bool):
    """The reconad._C Extension that setup.py would build (setup() itself replaced by a recorder)."""
    import runpy

    import setuptools

    seen: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.delenv("RECONAD_NO_EXTENSION", raising=False)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")     # setup.py may set it; restored afterwards
    if force_cuda:
        monkeypatch.setenv("FORCE_CUDA", "1")
    else:
        monkeypatch.delenv("FORCE_CUDA", raising=False)
    runpy.run_path(os.path.join(ROOT, "setup.py"))
    (ext,) = seen["ext_modules"]
    return ext


def _cuda_toolchain() -> bool:
    import torch
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME
    return torch.version.cuda is not None and home is not None and os.path.exists(os.path.join(home, "bin", "nvcc"))


@pytest.mark.parametrize("force_cuda", [False, pytest.param(True, marks=pytest.mark.skipif(
    not _cuda_toolchain(), reason="FORCE_CUDA=1 needs a CUDA build of torch and nvcc"))])
def test_setup_and_first_use_build_share_sources_and_flags(monkeypatch, force_cuda):
    import glob

    from reconad.ops._extension import jit_build_args

    ext = _setup_extension(monkeypatch, force_cuda)
    jit = jit_build_args(CSRC, with_schemas=True)
    on_disk_cpp = set(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    on_disk_cu = set(glob.glob(os.path.join(CSRC, "**", "*.cu"), recursive=True))
    assert on_disk_cpp and on_disk_cu
    setup_sources = {os.path.join(ROOT, p) for p in ext.sources}
    with_cuda = bool(ext.define_macros)
    # setup.py: the Python module plus every C++ file, and every .cu file when it builds CUDA kernels
    assert setup_sources == on_disk_cpp | (on_disk_cu if with_cuda else set())
    # the first-use build: the same files less the Python module (it loads into torch.ops, not Python)
    assert set(jit["sources"]) == (on_disk_cpp - {os.path.join(CSRC, "module.cpp")}) | on_disk_cu
    assert len(jit["sources"]) == len(set(jit["sources"]))
    assert jit_build_args(CSRC, with_schemas=False)["sources"] == sorted(on_disk_cu)
    # the same flags
    cxx = ext.extra_compile_args["cxx"] if isinstance(ext.extra_compile_args, dict) else ext.extra_compile_args
    assert jit["extra_cflags"] == [*cxx, "-DRECONAD_WITH_CUDA"]
    assert jit["extra_ldflags"] == ext.extra_link_args
    assert jit["extra_include_paths"] == [CSRC] and CSRC in ext.include_dirs
    if with_cuda:
        assert ext.define_macros == [("RECONAD_WITH_CUDA", None)]
        assert jit["extra_cuda_cflags"] == ext.extra_compile_args["nvcc"]


def test_first_use_build_compiles_what_build_config_lists(monkeypatch, tmp_path):
    """_jit_build_cuda hands cpp_extension.load exactly jit_build_args (sources and flags), once."""
    from torch.utils import cpp_extension

    import reconad.ops._extension as ext

    calls: list[dict] = []
    monkeypatch.setattr(ext, "_state", ext._State(loaded=True))     # no installed module: schemas built too
    monkeypatch.setattr(ext, "_source_dir", lambda: CSRC)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/nonexistent/cuda")
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setattr(cpp_extension, "load", lambda **kw: calls.append(kw))
    monkeypatch.setenv("RECONAD_CACHE", str(tmp_path))
    with pytest.warns(UserWarning, match="compiling the CUDA kernels on first use"):
        ext._jit_build_cuda()
    (kw,) = calls
    want = ext.jit_build_args(CSRC, with_schemas=True)
    assert {k: kw[k] for k in want} == want
    assert kw["build_directory"].startswith(str(tmp_path)) and ext._state.source == "jit"


# ---- define_op: the one way an op picks kernel or fallback ----------------------------------------------

def test_every_op_is_defined_once_and_follows_backend(monkeypatch):
    import torch

    from reconad.ops import _extension

    assert set(_extension._DEFINED) == set(ops.registered_ops())
    with pytest.raises(ValueError, match="op 'topk_mask' is already defined"):
        _extension.define_op("topk_mask", fallback=print, kernel=print)
    with pytest.raises(ValueError, match="backward and setup_context together"):
        _extension.Op("x", print, print, None, print, None, {})
    for name, op in _extension._DEFINED.items():
        assert op.use_kernel("cpu") == (ops.backend(name, "cpu") != "fallback")
        assert op.use_kernel("meta") is False
    # the disable switch, set in a running process, sends the next call to the fallback
    calls: list[str] = []
    op = _extension._DEFINED["topk_mask"]
    monkeypatch.setattr(op, "fallback", lambda *a: calls.append("fallback"))
    monkeypatch.setattr(op, "_kernel", lambda *a: calls.append("kernel"))
    first = "kernel" if ops.backend("topk_mask", "cpu") == "cpp" else "fallback"
    x = torch.zeros(1, 2, 2)
    op(x, 1, 1e-7, "ste")
    monkeypatch.setenv("RECONAD_DISABLE_EXTENSION", "1")
    op(x, 1, 1e-7, "ste")
    assert calls == [first, "fallback"]
