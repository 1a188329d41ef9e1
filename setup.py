"""Builds reconad's one extension, ``reconad._C``, from ``csrc/``.

What is built, and why, is printed:

* ``RECONAD_NO_EXTENSION=1``: nothing; a pure-Python install (every op uses its PyTorch fallback).
* otherwise the C++ CPU kernels (``csrc/module.cpp``, ``csrc/<op>/*.cpp``, ``csrc/<op>/cpu/*.cpp``);
* and the CUDA kernels (``csrc/<op>/cuda/*.cu``) when ``FORCE_CUDA=1``, or when torch has CUDA, a GPU is
  visible and nvcc is found (``CUDA_HOME``). ``FORCE_CUDA=1`` without a CUDA build of torch or nvcc is an
  error, never a quiet CPU-only build.

The sources and flags are listed once, in ``csrc/build_config.py``, which the first-use build shares.
The sources are also copied into the package (``reconad/_csrc``) so that a CPU-only install can compile
its CUDA kernels on first use (see ``reconad/ops/_extension.py``).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")


def _load_build_config():
    # by path: reconad is not installed (nor importable) while setup.py runs
    spec = importlib.util.spec_from_file_location("reconad_build_config", os.path.join(CSRC, "build_config.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_config = _load_build_config()


def _say(msg: str) -> None:
    print(f"reconad setup: {msg}", file=sys.stderr, flush=True)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class BuildPyWithSources(build_py):
    """Ship csrc/ inside the package as reconad/_csrc (for compile-on-first-use)."""

    def run(self) -> None:
        super().run()
        target = os.path.join(self.build_lib, "reconad", "_csrc")
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(CSRC, target, ignore=shutil.ignore_patterns("__pycache__"))


def _sources(with_cuda: bool) -> list[str]:
    files = [build_config.module_source(CSRC)] + build_config.cpu_sources(CSRC)
    files += build_config.cuda_sources(CSRC) if with_cuda else []
    return [os.path.relpath(p, ROOT) for p in files]


def _extensions(cmdclass: dict) -> list:
    if _flag("RECONAD_NO_EXTENSION"):
        _say("RECONAD_NO_EXTENSION=1: pure-Python install, every op uses its PyTorch fallback")
        return []
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:  # pragma: no cover - depends on the build environment
        raise SystemExit(
            "reconad setup: torch must be importable to build reconad._C "
            f"({exc}). Install torch first and build with `pip install --no-build-isolation ...`, "
            "or set RECONAD_NO_EXTENSION=1 for a pure-Python install."
        ) from exc

    force = _flag("FORCE_CUDA")
    torch_cuda = torch.version.cuda is not None
    nvcc = cpp_extension.CUDA_HOME is not None and os.path.exists(
        os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
    )
    if force:
        if not torch_cuda:
            raise SystemExit("reconad setup: FORCE_CUDA=1 but this torch is a CPU build "
                             f"(torch {torch.__version__}); install a CUDA build of torch.")
        if not nvcc:
            raise SystemExit("reconad setup: FORCE_CUDA=1 but nvcc was not found; "
                             "set CUDA_HOME (e.g. CUDA_HOME=/usr/local/cuda).")
        with_cuda, why = True, "FORCE_CUDA=1"
    elif torch_cuda and nvcc and torch.cuda.is_available():
        with_cuda, why = True, f"torch {torch.__version__} has CUDA, a GPU is visible and nvcc is in {cpp_extension.CUDA_HOME}"
    else:
        missing = [m for m, ok in (("a CUDA build of torch", torch_cuda), ("nvcc (CUDA_HOME)", nvcc),
                                   ("a visible GPU", torch_cuda and torch.cuda.is_available())) if not ok]
        with_cuda, why = False, "no " + ", no ".join(missing) + " (FORCE_CUDA=1 overrides)"

    if with_cuda and "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        _say("no GPU to detect the architecture from: TORCH_CUDA_ARCH_LIST=8.0;9.0+PTX")

    sources = _sources(with_cuda)
    _say(f"building reconad._C with C++ CPU kernels{' and CUDA kernels' if with_cuda else ' only'}: {why}")
    for s in sources:
        _say(f"  {s}")

    cxx, nvcc_flags = list(build_config.CXX_FLAGS), list(build_config.NVCC_FLAGS)
    macros = [(build_config.CUDA_MACRO, None)] if with_cuda else []
    ext_cls = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    ext = ext_cls(
        "reconad._C",
        sources,
        include_dirs=[CSRC],
        define_macros=macros,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags} if with_cuda else {"cxx": cxx},
        extra_link_args=list(build_config.LINK_FLAGS),
    )
    cmdclass["build_ext"] = cpp_extension.BuildExtension.with_options(no_python_abi_suffix=False)
    return [ext]


cmdclass: dict = {"build_py": BuildPyWithSources}
setup(ext_modules=_extensions(cmdclass), cmdclass=cmdclass)
