"""What reconad's extension is compiled from, and with which flags: the one list that setup.py (the
installed ``reconad._C``) and ``reconad/ops/_extension.py`` (the CUDA kernels compiled on first use) share.

Pure Python with no imports from reconad: setup.py loads it by path before reconad is installed, and it is
shipped inside the package with the sources (``reconad/_csrc/build_config.py``) for the first-use build.
Paths are absolute, under ``root`` (the ``csrc`` folder).
"""
from __future__ import annotations

import glob
import os

__all__ = ["CUDA_MACRO", "CXX_FLAGS", "LINK_FLAGS", "NVCC_FLAGS", "cpu_sources", "cuda_sources", "headers",
           "module_source"]

# at::parallel_for is inline OpenMP code: without -fopenmp it runs serially. The extension links the
# libgomp.so.1 that torch itself loaded (same soname), so there is one OpenMP runtime.
CXX_FLAGS = ["-O3", "-fopenmp"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]
# defined when the CUDA kernels are part of the build (module.cpp reports it as reconad._C.with_cuda)
CUDA_MACRO = "RECONAD_WITH_CUDA"


def module_source(root: str) -> str:
    """The Python module ``reconad._C`` itself (only the installed build is a Python module)."""
    return os.path.join(root, "module.cpp")


def cpu_sources(root: str) -> list[str]:
    """Every op's schema (``<op>/<op>.cpp``) and CPU kernels (``<op>/cpu/*.cpp``)."""
    return sorted(glob.glob(os.path.join(root, "*", "*.cpp"))) + \
        sorted(glob.glob(os.path.join(root, "*", "cpu", "*.cpp")))


def cuda_sources(root: str) -> list[str]:
    """Every op's CUDA kernels (``<op>/cuda/*.cu``)."""
    return sorted(glob.glob(os.path.join(root, "*", "cuda", "*.cu")))


def headers(root: str) -> list[str]:
    """Every header (a first-use build is keyed on the sources and these)."""
    return sorted(glob.glob(os.path.join(root, "**", "*.h"), recursive=True))
