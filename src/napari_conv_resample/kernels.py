"""Kernel presets for dilated downsampling and transpose upsampling.

N-D presets are outer products of 1-D profiles, one per spatial axis, so each
axis may have its own size and stride (anisotropic z-stacks). Profiles are
sampled at tap offsets ``t - (k - 1) / 2`` in *tap units*: dilation spreads
the same kernel further apart, it does not change its weights.

Normalisation (DESIGN §5):

* ``direction="down"``: the weights sum to 1, so a flat image stays flat.
* ``direction="up"``: the weights sum to 1 within every output phase,
  ``sum_{t: d*t = r (mod s)} w[t] = 1``, so a flat image upsamples flat
  (except where a phase receives no tap at all; see :func:`overlap_map`).
"""

from __future__ import annotations

import math

import numpy as np

from ._validation import per_axis_ints

PRESETS = ("box", "gaussian", "binomial", "bilinear", "lanczos")
DIRECTIONS = ("down", "up")


def default_sigma(stride):
    """Gaussian sigma (tap units) scikit-image uses for a pyramid step of ``stride``."""
    return 2.0 * stride / 6.0


def natural_size(name, stride, *, sigma=None, a=3):
    """The preset's natural number of taps for one axis resampled by ``stride``.

    box: ``s`` (average pooling / nearest neighbour); bilinear: ``2s - s % 2``
    (FCN); binomial: ``2s + 1`` (5 taps at s=2, like pyrDown/pyrUp);
    gaussian: ``2*ceil(3 sigma) + 1``; lanczos-a: ``2 a s - s % 2``.
    """
    _check_name(name)
    s = int(stride)
    if name == "box":
        return s
    if name == "bilinear":
        return 2 * s - s % 2
    if name == "binomial":
        return 2 * s + 1
    if name == "gaussian":
        sig = default_sigma(s) if sigma is None else float(sigma)
        return 2 * math.ceil(3 * sig) + 1
    return 2 * int(a) * s - s % 2  # lanczos


def _check_lanczos_order(a):
    try:
        ok = not isinstance(a, bool) and float(a) == int(a) and int(a) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"a must be an integer >= 1 for the lanczos kernel, got {a!r}")


def _check_name(name):
    if name not in PRESETS:
        raise ValueError(f"kernel={name!r} is not a preset; choose one of {', '.join(PRESETS)}")


def kernel_profile(name, size, stride, *, sigma=None, a=3):
    """Un-normalised 1-D weights of preset ``name`` with ``size`` taps (float64)."""
    _check_name(name)
    t = np.arange(size, dtype=np.float64)
    x = t - (size - 1) / 2.0
    if name == "box":
        return np.ones(size)
    if name == "gaussian":
        sig = default_sigma(stride) if sigma is None else float(sigma)
        if not sig > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        return np.exp(-(x**2) / (2.0 * sig**2))
    if name == "binomial":
        # Relative to the middle coefficient, in exact integers: C(n, k) itself
        # overflows a float from n ~ 1030.
        n = size - 1
        top = math.comb(n, n // 2)
        return np.array([math.comb(n, int(i)) / top for i in t], dtype=np.float64)
    if name == "bilinear":
        return 1.0 - np.abs(x) / ((size + 1) // 2)
    _check_lanczos_order(a)
    u = x / stride
    return np.where(np.abs(u) < a, np.sinc(u) * np.sinc(u / a), 0.0)


def normalize_profile(w, stride, dilation, direction):
    """Normalise 1-D weights: sum 1 (down) or sum 1 per output phase (up)."""
    w = np.asarray(w, dtype=np.float64)
    if direction == "down":
        total = w.sum()
        if total == 0:
            raise ValueError("kernel weights sum to zero and cannot be normalised")
        return w / total
    phase = (dilation * np.arange(w.size)) % stride
    out = w.copy()
    for r in np.unique(phase):
        sel = phase == r
        total = w[sel].sum()
        if total != 0:
            out[sel] = w[sel] / total
    return out


#: Most taps a preset kernel may have (1 GiB of float64 weights): a larger one
#: (a stride in the tens of thousands) is a typo, refused before it is built.
MAX_KERNEL_TAPS = 1 << 27


def make_kernel(
    name,
    size=None,
    *,
    ndim=1,
    stride=2,
    dilation=1,
    direction="down",
    sigma=None,
    a=3,
):
    """Return a normalised preset kernel as a float64 array.

    Parameters
    ----------
    name : {'box', 'gaussian', 'binomial', 'bilinear', 'lanczos'}
        The preset (formulas in DESIGN §5).
    size : int or sequence of int, optional
        Taps per axis. ``None`` picks :func:`natural_size` for each axis.
    ndim : int
        Number of spatial axes; ignored when a per-axis sequence fixes it.
    stride, dilation : int or sequence of int
        Resampling factor and tap spacing (pixels) per axis. Stride sets the
        default gaussian sigma and the lanczos scale; for ``direction='up'``
        stride and dilation define the phases that are normalised.
    direction : {'down', 'up'}
        Which normalisation to apply.
    sigma : float or sequence of float, optional
        Gaussian sigma in taps; default ``2 * stride / 6`` (scikit-image).
    a : int
        Lanczos order.

    Returns
    -------
    numpy.ndarray
        Kernel of shape ``size`` (one entry per spatial axis).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
    _check_name(name)
    if name == "lanczos":
        _check_lanczos_order(a)
    for value in (size, stride, dilation, sigma):
        if value is not None and not np.isscalar(value):
            ndim = len(value)
            break
    stride = per_axis_ints(stride, ndim, "stride")
    dilation = per_axis_ints(dilation, ndim, "dilation")
    sigmas = (sigma,) * ndim if sigma is None or np.isscalar(sigma) else tuple(sigma)
    if len(sigmas) != ndim:
        raise ValueError(f"sigma={sigma!r} has {len(sigmas)} values but there are {ndim} axes")
    if size is None:
        size = tuple(natural_size(name, s, sigma=sg, a=a) for s, sg in zip(stride, sigmas))
    size = per_axis_ints(size, ndim, "size")
    taps = math.prod(size)
    if taps > MAX_KERNEL_TAPS:
        raise ValueError(
            f"a {name} kernel of size={size} (stride={stride}) has {taps} taps, more than "
            f"{MAX_KERNEL_TAPS}: choose a smaller size or stride"
        )
    kernel = np.ones((), dtype=np.float64)
    for k, s, d, sg in zip(size, stride, dilation, sigmas):
        w = normalize_profile(kernel_profile(name, k, s, sigma=sg, a=a), s, d, direction)
        kernel = np.multiply.outer(kernel, w)
    return kernel


def kernel_array(kernel):
    """``kernel`` (not a preset name) as a real NumPy array; a TypeError
    naming ``kernel`` for anything else (ragged lists, None, text, complex)."""
    if type(kernel).__module__.split(".")[0] == "cupy":
        kernel = kernel.get()  # the weights are tiny: keep them on the host
    try:
        w = np.asarray(kernel)
    except ValueError:  # ragged nested lists
        w = None
    if w is None or w.dtype.kind not in "biuf":
        raise TypeError(
            "kernel must be a preset name or a real numeric array (same length "
            f"per axis), got {kernel!r}"[:300]
        )
    return w


def resolve_kernel(kernel, size, stride, dilation, direction, n_axes):
    """Turn the ``kernel`` argument of an operator into a float64 weight array.

    A preset name becomes :func:`make_kernel` with ``size``/``stride``/
    ``dilation``; an array is used exactly as given (PyTorch's weight
    orientation, cross-correlation), so ``size`` is ignored for it.
    """
    if isinstance(kernel, str):
        return make_kernel(
            kernel,
            size,
            ndim=n_axes,
            stride=stride,
            dilation=dilation,
            direction=direction,
        )
    w = kernel_array(kernel)
    if w.ndim == 0 or w.size == 0:
        raise ValueError(f"kernel array must have at least one tap per axis, got shape {w.shape}")
    if w.ndim != n_axes:
        raise ValueError(
            f"kernel has {w.ndim} dimensions (shape {w.shape}) but there are {n_axes} spatial axes"
        )
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        # A NaN or infinite weight would turn every output it touches into NaN.
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(w))[0])
        raise ValueError(f"kernel weights must be finite, got {w[bad]} at index {bad}")
    return w
