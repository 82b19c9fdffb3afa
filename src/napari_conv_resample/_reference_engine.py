"""Array-namespace reference engine: strided correlation and its transpose.

Written once against ``xp`` (NumPy or CuPy). Each tap adds one strided view
of the input to the output, so nothing is zero-stuffed and no sliding window
is materialised. The faster engines must agree with this one (tests say so).
"""

from __future__ import annotations

import numpy as np


def _tap_view_slices(ndim, axes, tap, stride, dilation, out_lengths):
    """Slices of the padded input read by tap ``tap`` for every output pixel."""
    sl = [slice(None)] * ndim
    for a, t, s, d, n in zip(axes, tap, stride, dilation, out_lengths):
        start = d * t
        sl[a] = slice(start, start + s * (n - 1) + 1, s)
    return tuple(sl)


def correlate_padded(xpad, weights, axes, stride, dilation, out_shape, xp=np):
    """``y[o] = sum_t w[t] * xpad[s*o + d*t]`` on already padded input.

    ``xpad`` must already be in the output dtype; ``weights`` is a host array
    with one axis per entry of ``axes``.
    """
    dtype = xpad.dtype
    out = xp.zeros(out_shape, dtype=dtype)
    tmp = xp.empty(out_shape, dtype=dtype)
    out_lengths = [out_shape[a] for a in axes]
    for tap in np.ndindex(weights.shape):
        view = xpad[_tap_view_slices(xpad.ndim, axes, tap, stride, dilation, out_lengths)]
        xp.multiply(view, dtype.type(weights[tap]), out=tmp)
        out += tmp
    return out


def transpose_correlate(y, weights, axes, stride, dilation, pad_lo, out_shape, xp=np):
    """``z[s*i + d*t - p_lo] += w[t] * y[i]``, keeping ``0 <= z index < out_shape``.

    The adjoint of :func:`correlate_padded` on a zero-padded input; any
    ``pad_lo`` and output length are allowed (masks use lengths that public
    ``output_padding`` limits would refuse). ``y`` must be in the output dtype.
    """
    dtype = y.dtype
    out = xp.zeros(out_shape, dtype=dtype)
    for tap in np.ndindex(weights.shape):
        src = [slice(None)] * y.ndim
        dst = [slice(None)] * y.ndim
        empty = False
        for a, t, s, d, lo in zip(axes, tap, stride, dilation, pad_lo):
            n_in, n_out = y.shape[a], out_shape[a]
            shift = d * t - lo  # output index of input 0
            i0 = max(0, -(shift // s))  # first i with s*i + shift >= 0
            i1 = min(n_in - 1, (n_out - 1 - shift) // s)  # last i landing inside
            if i1 < i0:
                empty = True
                break
            src[a] = slice(i0, i1 + 1)
            j0 = s * i0 + shift
            dst[a] = slice(j0, j0 + s * (i1 - i0) + 1, s)
        if empty:
            continue
        view = out[tuple(dst)]
        view += dtype.type(weights[tap]) * y[tuple(src)]
    return out
