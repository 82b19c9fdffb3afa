"""Masks that show which pixels a resampling reads and writes.

All of them come from the operators' own adjoints (DESIGN §2), never from a
second copy of the index logic:

* :func:`sampled_mask`: the adjoint of a downsample applied to a one-hot
  output pixel, on the input grid;
* :func:`coverage_map`: the adjoint applied to an all-ones output: how often
  each input pixel is read (0 = never);
* :func:`overlap_map`: a transpose upsample of an all-ones input: how many
  taps land on each output pixel (the checkerboard).

Shapes here are spatial only: every axis of ``input_shape`` is spatial.
Counts use a kernel of ones, so they count (output pixel, tap) pairs.
"""

from __future__ import annotations

import numpy as np

from ._reference_engine import correlate_padded, transpose_correlate
from ._validation import check_image, per_axis_ints, shape_ints
from .geometry import resolve_spec
from .padding import fold_padding


def ones_kernel(size, n):
    """A kernel of ones with ``size`` taps (int or per axis) on ``n`` axes."""
    return np.ones(per_axis_ints(size, n, "size"), dtype=np.float64)


def adjoint_down(y, spec):
    """Adjoint of the downsample ``spec`` applied to ``y`` (NumPy, float64).

    Border modes are honoured: what a reflect or circular pad reads outside
    the image is folded back onto the pixels it really reads.
    """
    pads = spec.padding
    padded_shape = list(spec.input_shape)
    for a, (lo, hi) in zip(spec.axes, pads):
        padded_shape[a] += lo + hi
    z = transpose_correlate(
        np.asarray(y, dtype=np.float64),
        spec.weights,
        spec.axes,
        spec.stride,
        spec.dilation,
        (0,) * len(spec.axes),
        tuple(padded_shape),
    )
    return fold_padding(z, spec.axes, pads, spec.mode)


def adjoint_up(z, spec):
    """Adjoint of the transpose upsample ``spec`` applied to ``z`` (NumPy, float64)."""
    z = np.asarray(z, dtype=np.float64)
    width = [(0, 0)] * z.ndim
    for a, k, s, d, lo in zip(spec.axes, spec.size, spec.stride, spec.dilation, spec.pad_lo):
        full = (spec.input_shape[a] - 1) * s + d * (k - 1) + 1
        width[a] = (lo, max(0, full - lo - z.shape[a]))
    return correlate_padded(
        np.pad(z, width),
        spec.weights,
        spec.axes,
        spec.stride,
        spec.dilation,
        spec.input_shape,
    )


def adjoint(y, spec):
    """Adjoint of ``spec`` (down or up) applied to ``y``."""
    return adjoint_down(y, spec) if spec.op == "down" else adjoint_up(y, spec)


def one_hot(shape, index, name="out_index"):
    """Float64 array of ``shape`` with a single 1 at ``index`` (negative allowed)."""
    index = shape_ints(index, name, minimum=-(1 << 62))
    if len(index) != len(shape):
        raise ValueError(f"{name}={index!r} needs {len(shape)} entries for shape {shape}")
    for i, n in zip(index, shape):
        if not -n <= i < n:
            raise ValueError(f"{name}={index!r} is outside the output of shape {shape}")
    y = np.zeros(shape, dtype=np.float64)
    y[index] = 1.0
    return y


def _down_spec(input_shape, size, stride, dilation, padding, mode):
    input_shape = shape_ints(input_shape)
    n = len(input_shape)
    return resolve_spec(
        "down",
        input_shape,
        kernel=ones_kernel(size, n),
        stride=stride,
        dilation=dilation,
        padding=padding,
        mode=mode,
    )


def _as_counts(a):
    return np.rint(a).astype(np.int64)


def sampled_mask(input_shape, out_index, *, size, stride=1, dilation=1, padding=0, mode="zeros"):
    """Input pixels that output pixel ``out_index`` of a downsample reads.

    Parameters
    ----------
    input_shape : tuple of int
        Spatial shape of the input.
    out_index : tuple of int
        The output pixel (negative indices count from the end).
    size, stride, dilation, padding, mode
        As for :func:`dilated_downsample` (``padding='same'`` allowed), but
        defaulting to the bare kernel (stride 1, padding 0, ``'zeros'``):
        pass ``padding='same', mode='reflect'`` (and the stride) to see what
        the operator with its defaults reads. With ``mode='zeros'`` taps in
        the padding read nothing; with other modes they read the in-bounds
        pixel the border rule names.

    Returns
    -------
    numpy.ndarray of bool
        ``True`` exactly at the in-bounds input pixels read.
    """
    spec = _down_spec(input_shape, size, stride, dilation, padding, mode)
    return adjoint_down(one_hot(spec.output_shape, out_index), spec) > 0


def coverage_map(input_shape, *, size, stride=1, dilation=1, padding=0, mode="zeros"):
    """How many (output pixel, tap) pairs of a downsample read each input pixel.

    Zeros are input pixels the downsample never reads: ``size=3, stride=2,
    dilation=2`` reads only every other pixel. Parameters as for
    :func:`sampled_mask` (the bare kernel's defaults, not the operator's).

    Returns
    -------
    numpy.ndarray of int64
        Counts on the input grid.
    """
    spec = _down_spec(input_shape, size, stride, dilation, padding, mode)
    return _as_counts(adjoint_down(np.ones(spec.output_shape), spec))


def overlap_map(input_shape, *, size, stride=1, dilation=1, padding=0, output_padding=0):
    """How many kernel taps land on each pixel of a transpose upsample.

    In the interior the count depends on ``(o + padding) mod stride``:
    ``size=3, stride=2`` gives the 2,1,2,1 checkerboard, ``size=3, stride=2,
    dilation=2`` gives 3,0 (pixels that receive nothing).

    Returns
    -------
    numpy.ndarray of int64
        Counts on the upsampled grid.
    """
    input_shape = shape_ints(input_shape)
    spec = resolve_spec(
        "up",
        input_shape,
        kernel=ones_kernel(size, len(input_shape)),
        stride=stride,
        dilation=dilation,
        padding=padding,
        output_padding=output_padding,
    )
    ones = np.ones(input_shape, dtype=np.float64)
    return _as_counts(
        transpose_correlate(
            ones,
            spec.weights,
            spec.axes,
            spec.stride,
            spec.dilation,
            spec.pad_lo,
            spec.output_shape,
        )
    )


def zero_inserted(image, *, size, stride=2, dilation=1, padding=None, output_padding=0):
    """The fractionally strided view of a transpose upsample of ``image``.

    ``stride - 1`` zeros between input pixels and ``dilation*(size-1) - p``
    zeros of padding at each end (plus ``output_padding`` at the high end),
    so that a stride-1 correlation with the flipped kernel gives the
    upsample (Dumoulin & Visin 2016). Padding larger than that view crops it.

    Returns
    -------
    numpy.ndarray
        The zero-inserted, padded image (float64).
    """
    image = np.asarray(check_image(image), dtype=np.float64)
    spec = resolve_spec(
        "up",
        image.shape,
        kernel=ones_kernel(size, image.ndim),
        stride=stride,
        dilation=dilation,
        padding=padding,
        output_padding=output_padding,
    )
    shape, src, dst = [], [], []
    for a, k, s, d, lo, hi, op in zip(
        spec.axes,
        spec.size,
        spec.stride,
        spec.dilation,
        spec.pad_lo,
        spec.pad_hi,
        spec.output_padding,
    ):
        n = image.shape[a]
        before, after = d * (k - 1) - lo, d * (k - 1) - hi + op
        length = (n - 1) * s + 1 + before + after
        idx = before + s * np.arange(n)
        keep = (idx >= 0) & (idx < length)
        shape.append(length)
        src.append(np.flatnonzero(keep))
        dst.append(idx[keep])
    out = np.zeros(shape)
    out[np.ix_(*dst)] = image[np.ix_(*src)]
    return out


def bounding_box(mask):
    """Slices of the smallest box holding every non-zero element of ``mask``.

    ``None`` if there is none. Found from one projection per axis, not from
    the coordinates of every element (a 2048^2 receptive field: a few ms
    instead of ~60).
    """
    mask = np.asarray(mask)
    if mask.ndim == 0:
        return () if mask else None
    box = []
    for a in range(mask.ndim):
        others = tuple(b for b in range(mask.ndim) if b != a)
        hit = np.flatnonzero(mask.any(axis=others) if others else mask)
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)
