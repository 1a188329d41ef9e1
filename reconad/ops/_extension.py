"""Loading ``reconad._C`` and telling which backend each op runs on.

An op runs on one of three backends for a device type:

* ``"cuda"`` / ``"cpp"``: a kernel of the compiled extension is registered for that dispatch key;
* ``"fallback"``: the op's pure-PyTorch implementation, with the reason recorded for ``reconad info``.

The extension is ``reconad._C``, built at install time by setup.py. When it was built without CUDA
kernels but a GPU, a CUDA build of torch, nvcc and ninja are all present, the CUDA kernels are compiled
on first use from the shipped sources (``reconad/_csrc`` or the checkout's ``csrc/``) into a cache
(``$RECONAD_CACHE`` or ``~/.cache/reconad``). A failed build is reported with a warning naming the
build log, and every affected op's reason says so; ``RECONAD_STRICT_EXTENSION=1`` turns it into an error.

``RECONAD_DISABLE_EXTENSION=1`` makes every op use its fallback (for comparisons and debugging).

Every op is declared once with ``define_op``: it records the op for ``backend``, registers the compiled
op's fake (meta) and autograd implementations once its schema is loaded, and returns an ``Op`` whose call
runs the kernel path or the fallback, decided once per device type.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

__all__ = ["Op", "backend", "backend_reason", "define_op", "extension_info", "has_kernel", "load_extension",
           "register_op", "registered_ops"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_lock = threading.Lock()
_OPS: list[str] = []


@dataclass
class _State:
    loaded: bool = False
    module: object | None = None
    source: str = ""            # "installed", "jit" or ""
    error: str = ""            # why the extension is unavailable
    jit_tried: bool = False
    jit_error: str = ""
    notes: list[str] = field(default_factory=list)


_state = _State()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def register_op(name: str) -> None:
    """Record an op name (``reconad::<name>``) so that ``backend`` and ``reconad info`` know it."""
    if name not in _OPS:
        _OPS.append(name)


def registered_ops() -> list[str]:
    return list(_OPS)


def _load_installed() -> None:
    if _state.loaded:
        return
    with _lock:
        if _state.loaded:
            return
        _state.loaded = True
        try:
            _state.module = importlib.import_module("reconad._C")
            _state.source = "installed"
        except ImportError as exc:
            _state.error = f"reconad._C is not importable ({exc}); reinstall without RECONAD_NO_EXTENSION"


def _source_dir() -> str | None:
    for cand in (os.path.join(_PACKAGE_DIR, "_csrc"), os.path.join(os.path.dirname(_PACKAGE_DIR), "csrc")):
        if os.path.isfile(os.path.join(cand, "module.cpp")) and os.path.isfile(os.path.join(cand, "build_config.py")):
            return cand
    return None


def _build_config(src: str):
    """``<src>/build_config.py``, the sources and flags setup.py builds reconad._C with (loaded by path)."""
    spec = importlib.util.spec_from_file_location("reconad_build_config", os.path.join(src, "build_config.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jit_build_args(src: str, with_schemas: bool) -> dict:
    """Sources and flags of the first-use CUDA build (``cpp_extension.load`` arguments), from the shipped
    ``build_config.py``: every CUDA kernel, plus the schemas and CPU kernels when ``with_schemas``."""
    cfg = _build_config(src)
    return {
        "sources": cfg.cuda_sources(src) + (cfg.cpu_sources(src) if with_schemas else []),
        "extra_include_paths": [src],
        "extra_cflags": [*cfg.CXX_FLAGS, f"-D{cfg.CUDA_MACRO}"],
        "extra_ldflags": list(cfg.LINK_FLAGS),
        "extra_cuda_cflags": list(cfg.NVCC_FLAGS),
    }


def _jit_build_cuda() -> None:
    """Compile the CUDA kernels on first use (see module docstring)."""
    _state.jit_tried = True
    from torch.utils import cpp_extension

    src = _source_dir()
    if src is None:
        _state.jit_error = "no shipped sources (reconad/_csrc) to compile the CUDA kernels from"
        return
    if cpp_extension.CUDA_HOME is None:
        _state.jit_error = "nvcc not found (set CUDA_HOME) to compile the CUDA kernels on first use"
        return
    if not cpp_extension.is_ninja_available():
        _state.jit_error = "ninja is not installed (pip install 'reconad[cuda]') to compile the CUDA kernels"
        return
    # with reconad._C installed, it already defines every schema (loading them twice would be an error);
    # without it, the schemas and CPU kernels come from this build too
    args = jit_build_args(src, with_schemas=_state.module is None)
    digest = hashlib.sha256()
    for f in args["sources"] + _build_config(src).headers(src) + [os.path.join(src, "build_config.py")]:
        with open(f, "rb") as fh:
            digest.update(fh.read())
    digest.update(torch.__version__.encode())
    cache = os.environ.get("RECONAD_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "reconad"))
    build_dir = os.path.join(cache, f"ext-{digest.hexdigest()[:16]}")
    os.makedirs(build_dir, exist_ok=True)
    warnings.warn(f"reconad: compiling the CUDA kernels on first use into {build_dir} (once)", stacklevel=3)
    try:
        cpp_extension.load(
            name="reconad_jit_ops",
            **args,
            build_directory=build_dir,
            is_python_module=False,
            verbose=False,
        )
        _state.source = "jit"
        _state.notes.append(f"CUDA kernels compiled on first use in {build_dir}")
    except Exception as exc:  # noqa: BLE001 - any build failure is reported, not hidden
        _state.jit_error = f"compiling the CUDA kernels failed ({type(exc).__name__}); log in {build_dir}"
        msg = f"reconad: {_state.jit_error}: {exc}"
        if _flag("RECONAD_STRICT_EXTENSION"):
            raise RuntimeError(msg) from exc
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _dispatch_key(device_type: str) -> str:
    return {"cpu": "CPU", "cuda": "CUDA"}.get(device_type, device_type.upper())


def has_kernel(op_name: str, device_type: str) -> bool:
    """Whether ``reconad::<op_name>`` has a compiled kernel registered for ``device_type``."""
    qual = f"reconad::{op_name}"
    try:
        if not torch._C._dispatch_has_kernel(qual):
            return False
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(qual, _dispatch_key(device_type)))
    except RuntimeError:
        return False


def _resolve(op_name: str, device_type: str) -> tuple[str, str]:
    if op_name not in _OPS:
        raise ValueError(f"unknown op {op_name!r}; reconad's ops are: {', '.join(sorted(_OPS))}")
    if device_type not in ("cpu", "cuda"):
        return "fallback", f"no compiled kernels for device type {device_type!r}"
    if _flag("RECONAD_DISABLE_EXTENSION"):
        return "fallback", "RECONAD_DISABLE_EXTENSION=1"
    _load_installed()
    kind = "cpp" if device_type == "cpu" else "cuda"
    if has_kernel(op_name, device_type):
        return kind, f"reconad._C ({_state.source or 'installed'})"
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return "fallback", "no CUDA GPU is visible"
        if not _state.jit_tried and torch.version.cuda is not None:
            with _lock:
                if not _state.jit_tried:
                    _jit_build_cuda()
            if has_kernel(op_name, device_type):
                return kind, f"reconad._C ({_state.source})"
        if _state.jit_error:
            return "fallback", _state.jit_error
    if _state.error:
        return "fallback", _state.error
    return "fallback", f"reconad._C has no {_dispatch_key(device_type)} kernel for {op_name}"


def backend(op_name: str, device_type: str | torch.device = "cpu") -> str:
    """Return ``"cuda"``, ``"cpp"`` or ``"fallback"``: what ``op_name`` runs on for ``device_type``."""
    device_type = torch.device(device_type).type if not isinstance(device_type, str) else device_type
    return _resolve(op_name, device_type)[0]


def backend_reason(op_name: str, device_type: str = "cpu") -> str:
    """Why ``backend(op_name, device_type)`` answers what it does."""
    return _resolve(op_name, device_type)[1]


def extension_info() -> dict:
    """Versions, where the extension came from, and every op's backend per device type (``reconad info``)."""
    _load_installed()
    ops = {}
    for op in _OPS:
        ops[op] = {}
        for dev in ("cpu", "cuda"):
            b, why = _resolve(op, dev)
            ops[op][dev] = {"backend": b, "reason": why}
    mod = _state.module
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "extension": {
            "loaded": mod is not None or _state.source == "jit",
            "source": _state.source or None,
            "path": getattr(mod, "__file__", None),
            "built_with_cuda": bool(getattr(mod, "with_cuda", False)),
            "error": _state.error or None,
            "notes": list(_state.notes),
        },
        "ops": ops,
    }


def load_extension() -> bool:
    """Import the compiled extension (registering its kernels); True when it is there."""
    if _flag("RECONAD_DISABLE_EXTENSION"):
        return False
    _load_installed()
    return _state.module is not None


# ---------------------------------------------------------------------------------------------------------
# One op = a kernel path and a fallback with the same arguments, chosen per device type.
# ---------------------------------------------------------------------------------------------------------

_DEFINED: dict[str, "Op"] = {}
_USE_KERNEL: dict[tuple[str, str, str], bool] = {}


@torch.compiler.assume_constant_result
def _use_kernel(op_name: str, device_type: str) -> bool:
    # Constant for torch.compile (Dynamo cannot trace the dispatcher queries behind backend()), and cached:
    # backend() costs ~30 us a call, more than a kernel on small inputs. The disable switch is part of the
    # key so that setting it later in a process still takes effect.
    key = (op_name, device_type, os.environ.get("RECONAD_DISABLE_EXTENSION", ""))
    if key not in _USE_KERNEL:
        _USE_KERNEL[key] = backend(op_name, device_type) != "fallback" and _DEFINED[op_name].register()
    return _USE_KERNEL[key]


class Op:
    """``reconad::<name>``: ``op(*args)`` runs ``kernel(*args)`` (which calls ``torch.ops.reconad.<name>``)
    when ``backend(name, device)`` is not ``"fallback"``, else ``fallback(*args)``; the device is the first
    tensor argument's. Made by ``define_op``."""

    def __init__(self, name: str, fallback: Callable[..., Any], kernel: Callable[..., Any],
                 fake: Callable[..., Any] | None, backward: Callable[..., Any] | None,
                 setup_context: Callable[..., Any] | None, fakes: dict[str, Callable[..., Any]]) -> None:
        if (backward is None) != (setup_context is None):
            raise ValueError(f"define_op({name!r}): give backward and setup_context together, or neither")
        self.name, self.fallback, self._kernel = name, fallback, kernel
        self._backward, self._setup_context = backward, setup_context
        self._fakes = {name: fake, **fakes} if fake is not None else dict(fakes)
        self._registered = False

    def register(self) -> bool:
        """Register the fake and autograd implementations once the compiled schema is loaded; True then."""
        if self._registered:
            return True
        load_extension()
        try:
            if not torch._C._dispatch_has_kernel(f"reconad::{self.name}"):
                return False
        except RuntimeError:
            return False
        with _lock:
            if self._registered:
                return True
            for op_name, fake in self._fakes.items():
                torch.library.register_fake(f"reconad::{op_name}")(fake)
            if self._backward is not None:
                torch.library.register_autograd(f"reconad::{self.name}", self._backward,
                                                setup_context=self._setup_context)
            self._registered = True
        return True

    def use_kernel(self, device_type: str) -> bool:
        """Whether a call on ``device_type`` runs the kernel path (decided once per device type)."""
        return _use_kernel(self.name, device_type)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        device = "cpu"
        for a in args:
            if isinstance(a, torch.Tensor):
                device = a.device.type
                break
        if self.use_kernel(device):
            return self._kernel(*args, **kwargs)
        return self.fallback(*args, **kwargs)


def define_op(name: str, *, fallback: Callable[..., Any], kernel: Callable[..., Any],
              fake: Callable[..., Any] | None = None, backward: Callable[..., Any] | None = None,
              setup_context: Callable[..., Any] | None = None,
              fakes: dict[str, Callable[..., Any]] | None = None) -> Op:
    """Declare ``reconad::<name>``, the one way every op is wired up.

    ``fallback``: the pure-PyTorch implementation; ``kernel``: takes the same arguments and calls
    ``torch.ops.reconad.<name>``; ``fake``: its fake-tensor implementation; ``backward`` / ``setup_context``:
    its autograd formula (``torch.library.register_autograd``); ``fakes``: fake implementations of helper ops
    (e.g. ``{"<name>_backward": ...}``). Registration happens now when the extension is loaded, else when a
    device first selects the kernel (a first-use CUDA build loads the schemas later).
    """
    if name in _DEFINED:
        raise ValueError(f"define_op: op {name!r} is already defined")
    register_op(name)
    op = Op(name, fallback, kernel, fake, backward, setup_context, dict(fakes or {}))
    _DEFINED[name] = op
    op.register()
    return op
