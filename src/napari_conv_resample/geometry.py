"""Output shapes, padding and world placement of resampled images.

This module is the one place that knows how long an output axis is and where
an output pixel sits. The operators, masks, napari widgets and the batch tool
all call :func:`resolve_spec` / :func:`output_geometry`.

Per spatial axis, with ``k`` taps, stride ``s``, dilation ``d`` (DESIGN §2):

* down: ``y[o] = sum_t w[t] * xpad[s*o + d*t - p_lo]``,
  ``L_out = floor((L_in + p_lo + p_hi - d*(k-1) - 1) / s) + 1``
* up: ``z[s*i + d*t - p_lo] += w[t] * y[i]``,
  ``L_out = (L_in - 1)*s - p_lo - p_hi + d*(k-1) + output_padding + 1``

World placement (napari pixel-centre convention, DESIGN §3): with
``c = d*(k-1)/2 - p_lo``, output ``o`` of a downsample is centred on input
coordinate ``s*o + c``; input ``i`` of an upsample sits on output coordinate
``s*i + c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import int_tuple, is_int, normalize_axes, per_axis_ints, shape_ints
from .kernels import kernel_array, resolve_kernel

OPS = ("down", "up")
MODES = ("zeros", "reflect", "replicate", "circular")

#: Defaults of the operators' keywords; the operators' signatures repeat them
#: (a test checks they agree) and recipes, widgets and the CLI fill from here.
DEFAULTS = {
    "down": {
        "kernel": "gaussian",
        "size": 3,
        "stride": 2,
        "dilation": 1,
        "padding": "same",
        "mode": "reflect",
        "axes": None,
    },
    "up": {
        "kernel": "bilinear",
        "size": None,
        "stride": 2,
        "dilation": 1,
        "padding": None,
        "output_padding": 0,
        "output_size": None,
        "axes": None,
    },
}


def dilated_extent(size, dilation):
    """Pixels spanned by a kernel of ``size`` taps spread ``dilation`` apart."""
    return dilation * (size - 1) + 1


def down_length(length, size, stride, dilation, pad_lo, pad_hi):
    """Output length of a strided, dilated correlation (PyTorch ``conv``)."""
    return (length + pad_lo + pad_hi - dilated_extent(size, dilation)) // stride + 1


def up_length(length, size, stride, dilation, pad_lo, pad_hi, output_padding=0):
    """Output length of a transposed convolution (PyTorch ``conv_transpose``)."""
    return (
        (length - 1) * stride - pad_lo - pad_hi + dilated_extent(size, dilation) + output_padding
    )


def same_padding(length, size, stride, dilation):
    """``(lo, hi)`` padding for ``padding='same'``: output length ``ceil(L / s)``.

    At stride 1 this is PyTorch's 'same' (total ``d*(k-1)``, ``lo = total // 2``);
    at stride > 1 it is TensorFlow's SAME.
    """
    out = -(-length // stride)
    total = max(0, (out - 1) * stride + dilated_extent(size, dilation) - length)
    return total // 2, total - total // 2


def natural_up_padding(size, stride, dilation):
    """Symmetric padding and output padding giving exactly ``stride * L`` outputs."""
    crop = dilated_extent(size, dilation) - stride
    if crop <= 0:
        return 0, -crop
    pad = -(-crop // 2)
    return pad, 2 * pad - crop


def parse_padding(padding, n):
    """Normalise an explicit padding to ``n`` ``(lo, hi)`` pairs of ints >= 0.

    Accepts an int, one int per axis, or one ``(lo, hi)`` pair per axis; a
    single pair in a sequence (``((lo, hi),)``, the command line's ``lo:hi``)
    is used for every axis, as a single int is.
    """
    if is_int(padding):
        pairs = [(int(padding), int(padding))] * n
    else:
        try:
            items = list(padding)
        except TypeError:
            raise TypeError(
                f"padding must be an int, 'same', 'valid', one int per axis or one "
                f"(lo, hi) pair per axis, got {padding!r}"
            ) from None
        if len(items) == 1 and n > 1 and not is_int(items[0]):
            items = items * n
        if len(items) != n:
            raise ValueError(
                f"padding={padding!r} has {len(items)} entries but there are {n} spatial axes"
            )
        pairs = []
        for item in items:
            if is_int(item):
                pairs.append((int(item), int(item)))
            else:
                try:
                    lo, hi = item
                except (TypeError, ValueError):
                    raise ValueError(
                        f"padding={padding!r}: each entry must be an int or a (lo, hi) pair"
                    ) from None
                if not (is_int(lo) and is_int(hi)):
                    raise TypeError(f"padding={padding!r} must contain integers")
                pairs.append((int(lo), int(hi)))
    for lo, hi in pairs:
        if lo < 0 or hi < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
    return tuple(pairs)


@dataclass(frozen=True)
class ResampleSpec:
    """Fully resolved parameters of one down or up resampling of one image.

    Per-axis tuples follow ``axes`` (sorted spatial axes of the full image).
    """

    op: str
    input_shape: tuple
    output_shape: tuple
    axes: tuple
    weights: np.ndarray
    stride: tuple
    dilation: tuple
    pad_lo: tuple
    pad_hi: tuple
    output_padding: tuple
    mode: str

    @property
    def size(self):
        """Taps per spatial axis."""
        return tuple(self.weights.shape)

    @property
    def padding(self):
        """``(lo, hi)`` padding per spatial axis (the operators' explicit form)."""
        return tuple(zip(self.pad_lo, self.pad_hi))

    @property
    def center_offset(self):
        """``c = d*(k-1)/2 - p_lo`` per spatial axis, in pixels of the finer grid."""
        return tuple(
            d * (k - 1) / 2.0 - p for k, d, p in zip(self.size, self.dilation, self.pad_lo)
        )


def resolve_spec(op, input_shape, **params):
    """Validate the parameters of a resampling and resolve them per axis.

    ``params`` are the keywords of :func:`~napari_conv_resample.dilated_downsample`
    (``op='down'``) or :func:`~napari_conv_resample.transpose_upsample`
    (``op='up'``) other than ``backend`` and ``preserve_dtype``; missing ones
    take the operator's defaults (:data:`DEFAULTS`). ``input_shape`` is the
    full image shape.

    Returns
    -------
    ResampleSpec
    """
    if op not in OPS:
        raise ValueError(f"op must be 'down' or 'up', got {op!r}")
    unknown = set(params) - set(DEFAULTS[op])
    if unknown:
        raise TypeError(f"unknown parameter(s) for op={op!r}: {', '.join(sorted(unknown))}")
    return _resolve(op, input_shape, **{**DEFAULTS[op], **params})


def _in_axis_order(value, perm):
    """``value``, one entry per given axis, put in the order ``perm``;
    anything else (a scalar, a word, another length, one broadcast padding
    pair) as it is, for the checks to report."""
    if value is None or isinstance(value, (str, bytes)) or is_int(value):
        return value
    try:
        items = list(value)
    except TypeError:
        return value
    if len(items) != len(perm):
        return value
    return tuple(items[i] for i in perm)


def _resolve(
    op,
    input_shape,
    *,
    kernel,
    size,
    stride,
    dilation,
    padding,
    axes,
    mode="zeros",
    output_padding=0,
    output_size=None,
):
    input_shape = shape_ints(input_shape, minimum=0)
    ndim = len(input_shape)
    if not isinstance(kernel, str):
        kernel = kernel_array(kernel)
    n_kernel = None if isinstance(kernel, str) else kernel.ndim
    given = axes
    axes = normalize_axes(axes, ndim, n_kernel)
    n = len(axes)
    if given is not None and n > 1:
        # Per-axis values (and an array kernel's axes) follow the axes in the
        # order given; the spec holds them in increasing axis order.
        order = [a % ndim for a in int_tuple(given, "axes")]
        perm = [order.index(a) for a in axes]
        if perm != sorted(perm):
            size, stride, dilation, padding, output_padding, output_size = (
                _in_axis_order(v, perm)
                for v in (size, stride, dilation, padding, output_padding, output_size)
            )
            if not isinstance(kernel, str):
                kernel = np.transpose(kernel, perm)
    for a in axes:
        if input_shape[a] < 1:
            raise ValueError(f"input_shape={input_shape} has no pixels along spatial axis {a}")
    stride = per_axis_ints(stride, n, "stride")
    dilation = per_axis_ints(dilation, n, "dilation")
    if isinstance(kernel, str) and size is not None:
        size = per_axis_ints(size, n, "size")
    weights = resolve_kernel(kernel, size, stride, dilation, op, n)
    size = weights.shape
    lengths = [input_shape[a] for a in axes]
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if op == "down":
        pads = _down_padding(padding, lengths, size, stride, dilation)
        out_len, opad = (
            _down_lengths(lengths, size, stride, dilation, pads, mode),
            (0,) * n,
        )
    else:
        if mode != "zeros":
            raise ValueError(
                f"mode={mode!r}: transpose upsampling pads with zeros only (like PyTorch)"
            )
        pads, opad, out_len = _up_lengths(
            lengths, size, stride, dilation, padding, output_padding, output_size
        )
    out_shape = list(input_shape)
    for a, L in zip(axes, out_len):
        out_shape[a] = L
    return ResampleSpec(
        op=op,
        input_shape=input_shape,
        output_shape=tuple(out_shape),
        axes=axes,
        weights=weights,
        stride=stride,
        dilation=dilation,
        pad_lo=tuple(p[0] for p in pads),
        pad_hi=tuple(p[1] for p in pads),
        output_padding=opad,
        mode=mode,
    )


def _down_padding(padding, lengths, size, stride, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * len(lengths)
        if padding == "same":
            return tuple(
                same_padding(L, k, s, d) for L, k, s, d in zip(lengths, size, stride, dilation)
            )
        raise ValueError(f"padding must be 'same', 'valid' or integers, got {padding!r}")
    if padding is None:
        return ((0, 0),) * len(lengths)
    return parse_padding(padding, len(lengths))


def _down_lengths(lengths, size, stride, dilation, pads, mode):
    out = []
    for i, (L, k, s, d, (lo, hi)) in enumerate(zip(lengths, size, stride, dilation, pads)):
        span = dilated_extent(k, d)
        if L + lo + hi < span:
            raise ValueError(
                f"image spatial axis {i} has {L} pixels ({L + lo + hi} with padding) but the "
                f"dilated kernel spans {span} pixels (size={k}, dilation={d})"
            )
        if mode == "reflect" and max(lo, hi) >= L:
            raise ValueError(
                f"mode='reflect' needs padding smaller than the axis: padding ({lo}, {hi}) "
                f"on spatial axis {i} of {L} pixels"
            )
        if mode == "circular" and max(lo, hi) > L:
            raise ValueError(
                f"mode='circular' needs padding no larger than the axis: padding ({lo}, {hi}) "
                f"on spatial axis {i} of {L} pixels"
            )
        out.append(down_length(L, k, s, d, lo, hi))
    return tuple(out)


def _up_lengths(lengths, size, stride, dilation, padding, output_padding, output_size):
    n = len(lengths)
    natural = [natural_up_padding(k, s, d) for k, s, d in zip(size, stride, dilation)]
    if padding is None or padding == "same":
        pads, default_opad = [], []
        for (p, op), s, d in zip(natural, stride, dilation):
            if op < max(s, d):
                pads.append((p, p))
                default_opad.append(op)
            else:  # stride and dilation 1, even kernel: crop one less at the end
                pads.append((p, p - op))
                default_opad.append(0)
        pads, default_opad = tuple(pads), tuple(default_opad)
    elif padding == "valid":
        pads, default_opad = ((0, 0),) * n, (0,) * n
    elif isinstance(padding, str):
        raise ValueError(f"padding must be None, 'same', 'valid' or integers, got {padding!r}")
    else:
        pads, default_opad = parse_padding(padding, n), (0,) * n
    limits = [max(s, d) for s, d in zip(stride, dilation)]
    if output_size is not None:
        output_size = per_axis_ints(output_size, n, "output_size")
        opad = []
        for i, (L, k, s, d, (lo, hi), want, lim) in enumerate(
            zip(lengths, size, stride, dilation, pads, output_size, limits)
        ):
            base = up_length(L, k, s, d, lo, hi)
            if not base <= want < base + lim:
                raise ValueError(
                    f"output_size={want} cannot be reached on spatial axis {i}: with "
                    f"stride={s}, dilation={d}, size={k}, padding=({lo}, {hi}) the output "
                    f"length is between {base} and {base + lim - 1}"
                )
            opad.append(want - base)
        opad = tuple(opad)
    else:
        opad = per_axis_ints(output_padding or 0, n, "output_padding", minimum=0)
        # The natural padding brings its own output padding on every axis
        # where none (0) is given: 0 and (0, 1) agree on axis 0.
        opad = tuple(p or dflt for p, dflt in zip(opad, default_opad))
    for i, (p, lim) in enumerate(zip(opad, limits)):
        if p >= lim:
            raise ValueError(
                f"output_padding={p} on spatial axis {i} must be smaller than "
                f"max(stride, dilation)={lim}"
            )
    out = []
    for i, (L, k, s, d, (lo, hi), p) in enumerate(
        zip(lengths, size, stride, dilation, pads, opad)
    ):
        length = up_length(L, k, s, d, lo, hi, p)
        if length < 1:
            raise ValueError(
                f"padding ({lo}, {hi}) on spatial axis {i} crops away the whole output "
                f"({L} pixels upsampled by stride={s} with a {k}-tap kernel)"
            )
        out.append(length)
    return pads, opad, tuple(out)


@dataclass(frozen=True)
class OutputGeometry:
    """Shape and world placement (napari ``scale``/``translate``) of a result."""

    shape: tuple
    scale: tuple
    translate: tuple
    spec: ResampleSpec


def _floats(values, name):
    """``values`` (a sequence of numbers) as a tuple of floats; an error naming ``name``."""
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{name} must be a sequence of numbers, one per image axis, got {values!r}"
        )
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(
            f"{name} must be a sequence of numbers, one per image axis, got {values!r}"
        ) from None


def place_output(spec, scale=None, translate=None, linear=None):
    """World ``scale`` and ``translate`` of ``spec``'s output from its input's.

    ``scale`` and ``translate`` have one entry per axis of the full image
    (default 1 and 0); non-spatial axes keep theirs. Units are whatever the
    input's are (e.g. µm). ``linear`` is the input's rotation and shear as
    one ``(ndim, ndim)`` matrix (napari maps data to world as
    ``translate + rotate @ shear @ (scale * index)``; default identity): the
    output keeps them, and the shift of its grid within the input's is
    turned by them.
    """
    ndim = len(spec.input_shape)
    scale = (1.0,) * ndim if scale is None else _floats(scale, "scale")
    translate = (0.0,) * ndim if translate is None else _floats(translate, "translate")
    if not all(np.isfinite(v) and v != 0 for v in scale):
        raise ValueError(f"scale={scale!r} must be finite and non-zero on every axis")
    if not all(np.isfinite(v) for v in translate):
        raise ValueError(f"translate={translate!r} must be finite on every axis")
    if len(scale) != ndim:
        raise ValueError(f"scale={scale!r} must have one entry per image axis ({ndim})")
    if len(translate) != ndim:
        raise ValueError(f"translate={translate!r} must have one entry per image axis ({ndim})")
    new_scale = list(scale)
    # The output grid's first pixel, in the input's scaled data coordinates.
    shift = np.zeros(ndim)
    for a, s, c in zip(spec.axes, spec.stride, spec.center_offset):
        if spec.op == "down":
            new_scale[a] = scale[a] * s
            shift[a] = scale[a] * c
        else:
            new_scale[a] = scale[a] / s
            shift[a] = -scale[a] * c / s
    new_translate = tuple(float(t + d) for t, d in zip(translate, _turned(shift, linear)))
    return tuple(new_scale), new_translate


def _turned(shift, linear):
    """``shift`` (scaled data units) in world units: turned by ``linear``
    (rotate @ shear, one row and column per entry of ``shift``) if given."""
    if linear is None:
        return shift
    n = len(shift)
    try:
        matrix = np.asarray(linear, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"linear must be a ({n}, {n}) matrix of numbers (rotate @ shear), got {linear!r}"
        ) from None
    if matrix.shape != (n, n):
        raise ValueError(
            f"linear must be a ({n}, {n}) matrix (rotate @ shear), got shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"linear must be finite, got {linear!r}")
    return matrix @ shift


def output_geometry(op, input_shape, *, scale=None, translate=None, linear=None, **params):
    """Output shape, ``scale`` and ``translate`` of a down or up resampling.

    Takes the keywords of the operators (``op='down'`` or ``'up'``, missing
    ones at the operators' defaults) plus the input's world ``scale`` and
    ``translate`` (one entry per image axis, in the input's physical units,
    e.g. µm) and, for a rotated or sheared input, its ``linear`` matrix
    (:func:`place_output`). This is the one function that says where
    results sit.

    Returns
    -------
    OutputGeometry
        ``shape``, ``scale``, ``translate`` and the resolved ``spec``.

    Examples
    --------
    >>> g = output_geometry("down", (64, 64), kernel="box", size=2, padding=0)
    >>> g.shape, g.scale, g.translate
    ((32, 32), (2.0, 2.0), (0.5, 0.5))
    """
    spec = resolve_spec(op, input_shape, **params)
    new_scale, new_translate = place_output(spec, scale, translate, linear)
    return OutputGeometry(spec.output_shape, new_scale, new_translate, spec)


def zero_inserted_placement(spec, scale_out, translate_out, linear=None):
    """World ``scale``/``translate`` of :func:`~napari_conv_resample.masks.zero_inserted`.

    ``spec`` is an upsample; ``scale_out``/``translate_out`` are its output's
    (from :func:`place_output`, with the same ``linear``: the input's rotate
    @ shear over the spatial axes). Each input pixel lands on its own world
    position in the view.

    In the zero-inserted view a stride-1 correlation with the (dilated)
    flipped kernel gives the upsample, so output pixel ``o`` is the centre of
    view pixels ``o .. o + d*(k-1)``: the view is the output grid shifted by
    ``d*(k-1)/2`` output pixels (``spec.center_offset + spec.pad_lo``).
    """
    shift = np.array(
        [s * (c + lo) for s, c, lo in zip(scale_out, spec.center_offset, spec.pad_lo)]
    )
    translate = tuple(float(t - d) for t, d in zip(translate_out, _turned(shift, linear)))
    return tuple(scale_out), translate


__all__ = [
    "DEFAULTS",
    "OutputGeometry",
    "ResampleSpec",
    "dilated_extent",
    "down_length",
    "natural_up_padding",
    "output_geometry",
    "place_output",
    "resolve_spec",
    "same_padding",
    "up_length",
    "zero_inserted_placement",
]
