"""Parameter validation shared by the operators, masks, pipeline and geometry.

Every check raises ``ValueError`` or ``TypeError`` whose message names the
parameter and the offending value, so a mistake made in the napari console,
a widget or a recipe file reads the same everywhere.
"""

from __future__ import annotations

import numbers
import os

import numpy as np


def is_int(v):
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool)


def int_tuple(value, name, expected="an int or a sequence of ints"):
    """``value`` as a tuple of Python ints (one int: a 1-tuple); a TypeError
    naming ``name`` for anything else."""
    if is_int(value):
        return (int(value),)
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be {expected}, got {value!r}") from None
    for v in values:
        if not is_int(v):
            raise TypeError(f"{name} must contain integers, got {value!r}")
    return tuple(int(v) for v in values)


def per_axis_ints(value, n, name, *, minimum=1):
    """Return ``value`` as a tuple of ``n`` Python ints, each ``>= minimum``.

    ``value`` is one int (used for every axis) or a sequence of ``n`` ints.
    """
    values = int_tuple(value, name, f"an int or a sequence of {n} ints")
    if is_int(value):
        values = values * n
    elif len(values) != n:
        raise ValueError(
            f"{name}={value!r} has {len(values)} values but there are {n} spatial axes"
        )
    for v in values:
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return values


def shape_ints(shape, name="input_shape", *, minimum=1):
    """``shape`` as a tuple of Python ints, each ``>= minimum`` (one int: 1-D)."""
    values = int_tuple(shape, name, "a tuple of ints")
    for v in values:
        if v < minimum:
            raise ValueError(f"{name} must have lengths >= {minimum}, got {shape!r}")
    return values


def check_image(image):
    """Check an input image and return it as an array (NumPy or CuPy).

    Lists are converted with NumPy; arrays are never copied here. Empty,
    complex, object, string and 0-d arrays are refused.
    """
    if not hasattr(image, "__array_namespace__") and not hasattr(
        image, "__cuda_array_interface__"
    ):
        image = np.asarray(image)
    if image.ndim == 0:
        raise ValueError(f"image must have at least one axis, got a 0-d array {image!r}")
    if image.size == 0:
        raise ValueError(f"image is empty: shape {tuple(image.shape)}")
    kind = np.dtype(image.dtype).kind
    if kind == "c":
        raise TypeError(
            f"image dtype {image.dtype} is complex; filter the real and imaginary parts"
        )
    if kind not in "biuf":
        raise TypeError(f"image dtype {image.dtype} is not a real numeric type")
    return image


def normalize_axes(axes, ndim, n_kernel_axes=None):
    """Return the spatial axes as a sorted tuple of non-negative ints.

    ``axes=None`` means the last ``n_kernel_axes`` axes, or every axis when the
    kernel dimensionality is not fixed (a preset).
    """
    if axes is None:
        if n_kernel_axes is None:
            return tuple(range(ndim))
        if n_kernel_axes > ndim:
            raise ValueError(
                f"kernel has {n_kernel_axes} dimensions but the image has only {ndim} axes"
            )
        return tuple(range(ndim - n_kernel_axes, ndim))
    axes_list = int_tuple(axes, "axes")
    if not axes_list:
        raise ValueError(f"axes must name at least one axis, got {axes!r}")
    out = []
    for a in axes_list:
        if not -ndim <= a < ndim:
            raise ValueError(f"axes={axes!r}: axis {a} is out of range for a {ndim}-D image")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axes={axes!r} names the same axis twice")
    if n_kernel_axes is not None and n_kernel_axes != len(out):
        raise ValueError(
            f"kernel has {n_kernel_axes} dimensions but axes={axes!r} names {len(out)} axes"
        )
    return tuple(sorted(out))


def available_memory(xp=np):
    """Bytes of memory free for a new array on the device ``xp`` computes on."""
    if xp is not np:
        free, _total = xp.cuda.Device().mem_info
        # Blocks CuPy's pool keeps from earlier arrays are free for new ones.
        return int(free) + int(xp.get_default_memory_pool().free_bytes())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def format_bytes(n):
    """Human-readable byte count (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_memory(shape, dtype, what, xp=np, extra_bytes=0):
    """Refuse, before allocating, an array that cannot fit in free memory."""
    need = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize + int(extra_bytes)
    have = available_memory(xp)
    if need > have:
        device = "GPU" if xp is not np else "the machine"
        raise MemoryError(
            f"{what} of shape {tuple(shape)} ({np.dtype(dtype).name}) needs "
            f"{format_bytes(need)} but {device} has only {format_bytes(have)} free; "
            "process the image in chunks (conv-resample batch tool) or crop it"
        )
    return need
