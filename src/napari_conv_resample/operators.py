"""Public resampling operators: dilated downsampling and transpose upsampling.

Both agree with PyTorch's ``conv{1,2,3}d`` / ``conv_transpose{1,2,3}d``
(cross-correlation, PyTorch weight orientation) for any number of spatial
axes; every other axis (time, channel, batch) is carried through and each of
its slices filtered independently.
"""

from __future__ import annotations

import numpy as np

from . import _reference_engine
from ._validation import available_memory, check_image, check_memory
from .backends import get_array_module, is_cupy_array, like_input, to_backend
from .geometry import resolve_spec
from .padding import pad_axes


def compute_dtype(dtype):
    """Float dtype the arithmetic runs in: float64 (any byte order, or wider
    floats) stays float64, everything else float32."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize >= 8:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def cast_result(out, dtype, preserve_dtype, xp=np):
    """Return ``out`` in the input ``dtype`` when asked: rounded and clipped for ints."""
    dtype = np.dtype(dtype)
    if not preserve_dtype or out.dtype == dtype:
        return out
    if dtype.kind == "b":
        return out >= 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # The bounds as floats of ``out``'s dtype, inside the integer range:
        # float32(2**31 - 1) is 2**31, which would wrap to -2**31 when cast.
        ftype = out.dtype.type
        lo, hi = ftype(info.min), ftype(info.max)
        if int(hi) > info.max:
            hi = np.nextafter(hi, ftype(0))
        if int(lo) < info.min:
            lo = np.nextafter(lo, ftype(0))
        xp.rint(out, out=out)
        xp.clip(out, lo, hi, out=out)
    return out.astype(dtype)


#: A NumPy image sent to the GPU goes in slabs when it and its output need
#: more than this fraction of the GPU's free memory.
GPU_SLAB_FRACTION = 0.5


def _run(spec, image, backend, preserve_dtype):
    """Compute ``spec`` on ``image`` with the chosen backend; NumPy in, NumPy out."""
    xp = get_array_module(backend, image)
    dtype = compute_dtype(image.dtype)
    if xp is not np and not is_cupy_array(image):
        need = image.nbytes + int(np.prod(spec.output_shape)) * dtype.itemsize
        budget = int(GPU_SLAB_FRACTION * available_memory(xp))
        if need > budget:
            return run_in_slabs(spec, image, budget, "cupy", preserve_dtype)
    # The result; the engines' working buffers are a few cache-sized blocks.
    check_memory(spec.output_shape, dtype, "the output", xp, extra_bytes=0)
    x = to_backend(image, xp)
    result = run_spec(spec, x, dtype, xp)
    return like_input(cast_result(result, image.dtype, preserve_dtype, xp), image)


def slab_chunks(spec, image_nbytes, dtype, budget):
    """Output chunk shape whose slabs (input halo and output) fit ``budget`` bytes.

    The output is cut along its longest axis into equal slabs; each slab's
    input and output together take about ``image_nbytes + output bytes``
    over the number of slabs.
    """
    shape = tuple(spec.output_shape)
    need = image_nbytes + int(np.prod(shape)) * np.dtype(dtype).itemsize
    # Halo rows make a slab's input a little larger than its share; aim lower.
    n = max(1, -(-2 * need // max(1, budget)))
    axis = int(np.argmax(shape))
    chunks = list(shape)
    chunks[axis] = max(1, -(-shape[axis] // n))
    return tuple(chunks)


def run_in_slabs(spec, image, budget, backend, preserve_dtype=False):
    """``spec`` on the NumPy ``image`` in output slabs of about ``budget`` bytes each.

    Every slab reads only the input rows it needs (halo included) and runs on
    ``backend``; the result is assembled in a NumPy array and equals the
    one-piece call (bit for bit on the GPU, whose sums have one fixed order;
    to rounding on NumPy for views whose layout changes its block order; see
    :mod:`.batch.chunked`). Used when an image and its output do not fit on
    the GPU together.
    """
    from .batch.chunked import resample_chunked

    dtype = compute_dtype(image.dtype)
    out_dtype = np.dtype(image.dtype) if preserve_dtype else dtype
    check_memory(spec.output_shape, out_dtype, "the output", np)
    out = np.empty(spec.output_shape, dtype=out_dtype)
    image = np.asarray(image)
    return resample_chunked(
        [spec],
        image.__getitem__,
        out,
        in_dtype=image.dtype,
        chunks=slab_chunks(spec, image.nbytes, dtype, budget),
        preserve_dtype=preserve_dtype,
        backend=backend,
    )


def run_spec(spec, x, dtype, xp=np):
    """Apply a resolved :class:`~napari_conv_resample.geometry.ResampleSpec` to ``x``.

    ``x`` lives on ``xp``'s device, in any real dtype; the result is a new
    array in ``dtype``. NumPy runs the blocked, threaded CPU engine
    (:mod:`._engine_numpy`), CuPy the fused GPU kernel (:mod:`._engine_cupy`,
    imported only here); both equal :func:`run_spec_reference`.
    """
    if xp is np:
        from . import _engine_numpy

        return _engine_numpy.run(spec, x, dtype)
    from . import _engine_cupy

    return _engine_cupy.run(spec, x, dtype)


def run_spec_reference(spec, x, dtype, xp=np):
    """:func:`run_spec` by the simple array-namespace reference engine (tests' oracle).

    Converts and pads the whole image; use for small inputs only.
    """
    x = x.astype(dtype, copy=False)
    if spec.op == "down":
        pads = spec.padding
        xpad = pad_axes(x, spec.axes, pads, spec.mode, xp)
        return _reference_engine.correlate_padded(
            xpad,
            spec.weights,
            spec.axes,
            spec.stride,
            spec.dilation,
            spec.output_shape,
            xp,
        )
    return _reference_engine.transpose_correlate(
        x,
        spec.weights,
        spec.axes,
        spec.stride,
        spec.dilation,
        spec.pad_lo,
        spec.output_shape,
        xp,
    )


def dilated_downsample(
    image,
    kernel="gaussian",
    *,
    size=3,
    stride=2,
    dilation=1,
    padding="same",
    mode="reflect",
    axes=None,
    backend="auto",
    preserve_dtype=False,
):
    """Downsample ``image`` by a strided, dilated cross-correlation.

    ``y[o] = sum_t w[t] * xpad[stride*o + dilation*t - pad_lo]`` on every
    spatial axis, exactly PyTorch's ``conv{1,2,3}d`` (non-zero border modes:
    ``F.pad`` then conv).

    Parameters
    ----------
    image : array_like or cupy.ndarray
        N-D image of real numbers. Not modified; may be non-contiguous or
        read-only.
    kernel : str or array_like
        A preset (``'box'``, ``'gaussian'``, ``'binomial'``, ``'bilinear'``,
        ``'lanczos'``; normalised to sum 1) or an array of weights with one
        dimension per spatial axis, used exactly as given.
    size : int or sequence of int
        Taps per axis of a preset kernel (ignored for an array kernel);
        ``None`` picks the preset's natural size for the stride.
    stride : int or sequence of int
        Output pixel spacing, in input pixels.
    dilation : int or sequence of int
        Spacing of the kernel taps, in input pixels.
    padding : {'same', 'valid'} or int or sequence
        ``'same'`` gives ``ceil(L / stride)`` outputs (PyTorch's 'same' at
        stride 1, TensorFlow's SAME above); an int, one int per axis or one
        ``(lo, hi)`` pair per axis pads explicitly.
    mode : {'reflect', 'zeros', 'replicate', 'circular'}
        How the border is padded.
    axes : int or sequence of int, optional
        Spatial axes. Default: the last ``kernel.ndim`` axes for an array
        kernel, every axis for a preset.
    backend : {'auto', 'numpy', 'cupy'}
        Where to compute. NumPy input gives NumPy output, CuPy gives CuPy.
    preserve_dtype : bool
        Return the input dtype (integers rounded and clipped) instead of
        float32 (float64 input always gives float64).

    Returns
    -------
    ndarray
        The downsampled image; use :func:`output_geometry` for its world
        ``scale`` and ``translate``.
    """
    image = check_image(image)
    spec = resolve_spec(
        "down",
        image.shape,
        kernel=kernel,
        size=size,
        stride=stride,
        dilation=dilation,
        padding=padding,
        mode=mode,
        axes=axes,
    )
    return _run(spec, image, backend, preserve_dtype)


def transpose_upsample(
    image,
    kernel="bilinear",
    *,
    size=None,
    stride=2,
    dilation=1,
    padding=None,
    output_padding=0,
    output_size=None,
    axes=None,
    backend="auto",
    preserve_dtype=False,
):
    """Upsample ``image`` by a transposed ("fractionally strided") convolution.

    ``z[stride*i + dilation*t - pad] += w[t] * y[i]`` on every spatial axis,
    exactly PyTorch's ``conv_transpose{1,2,3}d``; the adjoint of
    :func:`dilated_downsample` with zero padding.

    Parameters
    ----------
    image : array_like or cupy.ndarray
        N-D image of real numbers. Not modified.
    kernel : str or array_like
        A preset (normalised to sum 1 within each output phase, so flat stays
        flat) or an array of weights used exactly as given.
    size : int or sequence of int, optional
        Taps per axis of a preset; ``None`` picks its natural size for the
        stride (bilinear: ``2*stride - stride % 2``).
    stride, dilation : int or sequence of int
        Upsampling factor and tap spacing (output pixels) per axis.
    padding : None, 'same', 'valid', int or sequence
        Pixels cropped from each end of the full transposed output. ``None``
        (or ``'same'``) picks the padding and output padding that give
        exactly ``stride * L`` outputs.
    output_padding : int or sequence of int
        Extra pixels at the high end, ``0 <= output_padding < max(stride,
        dilation)``. With ``padding=None``/``'same'``, 0 on an axis keeps
        that axis's natural output padding (use ``output_size`` for fewer).
    output_size : int or sequence of int, optional
        Wanted output length per spatial axis; chooses ``output_padding``.
    axes, backend, preserve_dtype
        As for :func:`dilated_downsample`.

    Returns
    -------
    ndarray
        The upsampled image.
    """
    image = check_image(image)
    spec = resolve_spec(
        "up",
        image.shape,
        kernel=kernel,
        size=size,
        stride=stride,
        dilation=dilation,
        padding=padding,
        output_padding=output_padding,
        output_size=output_size,
        axes=axes,
    )
    return _run(spec, image, backend, preserve_dtype)
