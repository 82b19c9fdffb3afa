"""Choosing NumPy or CuPy. CuPy is imported lazily, only when asked for."""

from __future__ import annotations

import functools

import numpy as np

BACKENDS = ("auto", "numpy", "cupy")


class BackendUnavailableError(RuntimeError):
    """The CuPy backend was requested but cannot run here."""


@functools.lru_cache(maxsize=1)
def _cupy_status():
    """``(cupy_module_or_None, reason)``; reason says why CuPy cannot be used."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return None, (
            f"CuPy is not installed or failed to import ({exc}); install it with "
            "`pip install 'napari-conv-resample[cupy]'` (cupy-cuda12x, needs an NVIDIA "
            "driver for CUDA 12)"
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy is installed but no CUDA device answers ({exc})"
    if count < 1:
        return None, "CuPy is installed but no CUDA device was found"
    return cupy, ""


def cupy_available():
    """True when CuPy imports and a CUDA device answers."""
    return _cupy_status()[0] is not None


def is_cupy_array(a):
    """True for a CuPy array (checked without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def get_array_module(backend, image=None):
    """Return the array module (``numpy`` or ``cupy``) to compute with.

    ``'auto'`` picks CuPy for CuPy input, or when CuPy imports and a device
    answers; otherwise NumPy, quietly. ``'cupy'`` raises
    :class:`BackendUnavailableError` explaining what is missing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "numpy":
        return np
    if backend == "auto" and image is not None and is_cupy_array(image):
        return _cupy_status()[0] or np
    cupy, reason = _cupy_status()
    if cupy is not None:
        return cupy
    if backend == "cupy":
        raise BackendUnavailableError(f"backend='cupy' cannot run: {reason}")
    return np


def device_name(xp):
    """A short description of where ``xp`` computes, for GUIs and reports."""
    if xp is np:
        return "CPU (NumPy)"
    dev = xp.cuda.Device()
    props = xp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"GPU {dev.id}: {name} (CuPy)"


def to_backend(a, xp):
    """Move ``a`` to ``xp``'s device (no copy when it is already there)."""
    if xp is np:
        return a.get() if is_cupy_array(a) else np.asarray(a)
    return xp.asarray(a)


def like_input(result, image):
    """Return ``result`` on the same kind of array as ``image`` (NumPy in, NumPy out)."""
    if is_cupy_array(image):
        if is_cupy_array(result):
            return result
        import cupy

        return cupy.asarray(result)
    return result.get() if is_cupy_array(result) else result
