"""Out-of-core resampling: each output chunk from the input region it needs.

A chain of resolved stages (:class:`~napari_conv_resample.geometry.ResampleSpec`)
is applied to one output chunk at a time. Going backwards through the stages,
the chunk's index range on every spatial axis becomes the set of input
pixels it reads (the halo): for a downsample the padded positions
``s*o + d*t`` mapped to source pixels by
:func:`~napari_conv_resample.padding.map_index` (so border padding - zeros,
reflect, replicate, circular - is applied only at the true image border, with
the true image's pixels), for a transposed upsample the inputs ``i`` with
``s*i + d*t - p`` inside the chunk. Going forwards, every stage gathers its
padded block from the pixels computed so far and runs the library's own
engine (:func:`~napari_conv_resample.operators.run_spec`) with padding 0 (down)
or the cropping that lands exactly on the chunk (up). Every output pixel sums
the same products in the same order as the in-memory call, so chunked results
equal the in-memory results bit for bit.

Chunks are cut on the output grid, so the input cut points ``s*o0 - p`` sit
on the stride grid, and they are whole chunks of the output store: chunks
can be written in any order, by any worker, without locks.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..geometry import dilated_extent, resolve_spec
from ..operators import cast_result, compute_dtype, run_spec
from ..padding import map_index

#: Needed index runs closer than this are read as one (the gap is read and
#: ignored): dilated kernels read every other pixel, and one read is cheaper.
MERGE_GAP = 256


def _runs(indices):
    """Sorted unique ints -> list of ``[start, stop)`` runs merged across small gaps."""
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    if indices.size == 0:
        return []
    breaks = np.nonzero(np.diff(indices) > MERGE_GAP)[0]
    starts = np.concatenate([[indices[0]], indices[breaks + 1]])
    stops = np.concatenate([indices[breaks] + 1, [indices[-1] + 1]])
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def _merge(runs):
    out = []
    for a, b in sorted(runs):
        if out and a <= out[-1][1] + MERGE_GAP:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _down_padded(o0, o1, k, s, d):
    """Padded positions read by down outputs ``o0 <= o < o1``."""
    return np.arange(s * o0, s * (o1 - 1) + dilated_extent(k, d))


def _up_inputs(j0, j1, length, k, s, d, lo):
    """Input interval ``[i0, i1)`` whose taps can land on up outputs ``[j0, j1)``.

    ``i0`` is rounded down to the stride grid so the block's crop is >= 0.
    """
    ext = dilated_extent(k, d)
    i0 = max(0, (j0 + lo - (ext - 1)) // s)
    i1 = min(length, (j1 - 1 + lo) // s + 1)
    return i0, max(i0, i1)


def needed_runs(spec, axis_pos, out_runs):
    """Input runs of spatial axis ``spec.axes[axis_pos]`` needed for ``out_runs``."""
    a = spec.axes[axis_pos]
    length = spec.input_shape[a]
    k, s, d = spec.size[axis_pos], spec.stride[axis_pos], spec.dilation[axis_pos]
    lo = spec.pad_lo[axis_pos]
    runs = []
    if spec.op == "down":
        for o0, o1 in out_runs:
            idx = map_index(_down_padded(o0, o1, k, s, d) - lo, length, spec.mode)
            runs.extend(_runs(idx[idx >= 0]))
    else:
        for j0, j1 in out_runs:
            i0, i1 = _up_inputs(j0, j1, length, k, s, d, lo)
            if i1 > i0:
                runs.append((i0, i1))
    return _merge(runs)


def _index_of(runs):
    if not runs:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b) for a, b in runs])


def plan(specs, region):
    """Per stage, the input index runs of every axis needed for output ``region``.

    ``region`` is a tuple of ``(start, stop)`` per axis of the final output.
    Returns a list (one per stage, plus the final output) of per-axis run lists.
    """
    ndim = len(region)
    need = [[tuple(r)] for r in region]
    plans = [need]
    for spec in reversed(specs):
        prev = [list(r) for r in need]
        for pos, a in enumerate(spec.axes):
            prev[a] = needed_runs(spec, pos, need[a])
        need = prev
        plans.append(need)
    plans.reverse()
    assert all(len(p) == ndim for p in plans)
    return plans


def _take(x, axis, positions):
    """``x`` gathered along ``axis``; ``-1`` positions give zeros."""
    if positions.size and positions.min() < 0:
        shape = list(x.shape)
        shape[axis] = 1
        x = np.concatenate([x, np.zeros(shape, dtype=x.dtype)], axis=axis)
        positions = np.where(positions < 0, x.shape[axis] - 1, positions)
    if positions.size and np.array_equal(
        positions, np.arange(positions[0], positions[0] + positions.size)
    ):
        index = [slice(None)] * x.ndim
        index[axis] = slice(int(positions[0]), int(positions[0]) + positions.size)
        return x[tuple(index)]
    return np.take(x, positions, axis=axis)


def _stage_block(spec, x, x_index, out_runs, combo, xp_run):
    """Outputs of ``spec`` on the run ``combo`` (one run per spatial axis).

    ``x`` holds the stage input at indices ``x_index[a]`` of every axis.
    """
    block = x
    out_len = []
    pads, extra = [], []
    for pos, a in enumerate(spec.axes):
        o0, o1 = combo[pos]
        k, s, d = spec.size[pos], spec.stride[pos], spec.dilation[pos]
        lo = spec.pad_lo[pos]
        length = spec.input_shape[a]
        index = x_index[a]
        if spec.op == "down":
            src = map_index(_down_padded(o0, o1, k, s, d) - lo, length, spec.mode)
            positions = np.searchsorted(index, src)
            positions = np.where(src < 0, -1, positions)
            ok = src >= 0
            assert np.array_equal(index[positions[ok]], src[ok]), "halo plan missed pixels"
        else:
            i0, i1 = _up_inputs(o0, o1, length, k, s, d, lo)
            if i1 <= i0:
                return None
            p0 = int(np.searchsorted(index, i0))
            positions = np.arange(p0, p0 + (i1 - i0))
            assert np.array_equal(index[positions], np.arange(i0, i1)), "halo plan missed"
            full = (i1 - i0 - 1) * s + dilated_extent(k, d)
            p_lo = o0 + lo - s * i0
            p_hi = full - p_lo - (o1 - o0)
            if full - p_lo < 1:
                return None
            pads.append((p_lo, max(0, p_hi)))
            extra.append(max(0, -p_hi))
        block = _take(block, a, positions)
        out_len.append(o1 - o0)
    dtype = compute_dtype(x.dtype)
    if spec.op == "down":
        bspec = resolve_spec(
            "down",
            block.shape,
            kernel=spec.weights,
            stride=spec.stride,
            dilation=spec.dilation,
            padding=0,
            mode="zeros",
            axes=spec.axes,
        )
    else:
        bspec = resolve_spec(
            "up",
            block.shape,
            kernel=spec.weights,
            stride=spec.stride,
            dilation=spec.dilation,
            padding=pads,
            output_padding=0,
            axes=spec.axes,
        )
    out = xp_run(bspec, block, dtype)
    if spec.op == "up" and any(extra):
        width = [(0, 0)] * out.ndim
        for a, e in zip(spec.axes, extra):
            width[a] = (0, e)
        out = np.pad(out, width)
    for pos, a in enumerate(spec.axes):
        assert out.shape[a] == out_len[pos], (out.shape, out_len)
    return out


def _numpy_run(spec, block, dtype):
    return run_spec(spec, block, dtype, np)


def backend_runner(backend):
    """``run(spec, block, dtype)`` on ``backend`` (NumPy in, NumPy out)."""
    if backend in (None, "auto", "numpy"):
        return _numpy_run
    from ..backends import get_array_module, to_backend

    xp = get_array_module(backend)

    def run(spec, block, dtype):
        out = run_spec(spec, to_backend(block, xp), dtype, xp)
        return out.get() if hasattr(out, "get") else np.asarray(out)

    return run


def compute_region(
    specs, read, region, *, in_dtype, preserve_dtype=False, backend=None, rounded=()
):
    """The final output of ``specs`` on ``region`` (``(start, stop)`` per axis).

    ``read(index)`` returns the input image at ``index`` (a tuple of slices).
    Intermediate stages run in the operators' compute dtype, those in
    ``rounded`` are rounded to the input's dtype after (``Pipeline.rounded``:
    pointwise, so halos are unchanged); the result is cast like the
    in-memory call (``preserve_dtype``: the input's dtype).
    """
    xp_run = backend_runner(backend)
    plans = plan(specs, region)
    ndim = len(region)
    # Read the input runs (usually one box; circular borders add a few).
    in_runs = plans[0]
    x_index = [_index_of(r) for r in in_runs]
    x = np.empty(tuple(len(i) for i in x_index), dtype=np.dtype(in_dtype))
    offsets = [np.cumsum([0] + [b - a for a, b in runs])[:-1] for runs in in_runs]
    for combo in itertools.product(*[range(len(r)) for r in in_runs]):
        src = tuple(slice(*in_runs[a][c]) for a, c in enumerate(combo))
        dst = tuple(
            slice(int(offsets[a][c]), int(offsets[a][c]) + in_runs[a][c][1] - in_runs[a][c][0])
            for a, c in enumerate(combo)
        )
        x[dst] = read(src)
    for stage, spec in enumerate(specs):
        out_runs = plans[stage + 1]
        out_index = [_index_of(r) for r in out_runs]
        out_shape = tuple(len(i) for i in out_index)
        # Zeros where no block lands (a chunk whose outputs no input reaches).
        y = np.zeros(out_shape, dtype=compute_dtype(x.dtype))
        out_offsets = [np.cumsum([0] + [b - a for a, b in runs])[:-1] for runs in out_runs]
        spatial_runs = [out_runs[a] for a in spec.axes]
        for combo_ix in itertools.product(*[range(len(r)) for r in spatial_runs]):
            combo = [spatial_runs[p][c] for p, c in enumerate(combo_ix)]
            block = _stage_block(spec, x, x_index, out_runs, combo, xp_run)
            if block is None:
                continue
            dst = [slice(None)] * ndim
            for p, a in enumerate(spec.axes):
                start = int(out_offsets[a][combo_ix[p]])
                dst[a] = slice(start, start + combo[p][1] - combo[p][0])
            y[tuple(dst)] = block
        if stage in rounded:
            y = cast_result(y, in_dtype, True)  # as Pipeline.round_between
        x, x_index = y, out_index
    return cast_result(x, in_dtype, preserve_dtype)


def chunk_grid(shape, chunks):
    """Regions (``(start, stop)`` per axis) tiling ``shape`` by ``chunks``."""
    ranges = [[(i, min(i + c, n)) for i in range(0, n, c)] for n, c in zip(shape, chunks)]
    return list(itertools.product(*ranges))


def auto_chunks(shape, spatial_axes, axes_letters=None, target_elements=1 << 21):
    """Output chunk shape: non-spatial axes 1 (RGB samples whole), spatial axes cubic."""
    n = max(1, len(spatial_axes))
    edge = max(16, int(round(target_elements ** (1.0 / n))))
    edge = 1 << int(math.floor(math.log2(edge)))
    chunks = []
    for a, length in enumerate(shape):
        if a in spatial_axes:
            chunks.append(min(length, edge))
        elif axes_letters is not None and axes_letters[a] == "S":
            chunks.append(length)
        else:
            chunks.append(1)
    return tuple(chunks)


def parse_chunks(value, shape, spatial_axes, axes_letters=None):
    """``--chunks``: ``'auto'``, one int for every spatial axis, or one per spatial axis."""
    if value is None or value == "auto":
        return auto_chunks(shape, spatial_axes, axes_letters)
    if isinstance(value, int):
        value = (value,) * len(spatial_axes)
    value = tuple(int(v) for v in value)
    if len(value) != len(spatial_axes):
        raise ValueError(
            f"--chunks {','.join(map(str, value))}: give one size or one per spatial axis "
            f"({len(spatial_axes)})"
        )
    base = list(auto_chunks(shape, spatial_axes, axes_letters))
    for a, c in zip(spatial_axes, value):
        base[a] = max(1, min(c, shape[a]))
    return tuple(base)


def resample_chunked(
    specs,
    read,
    out,
    *,
    in_dtype,
    chunks,
    preserve_dtype=False,
    backend=None,
    progress=None,
    rounded=(),
):
    """Compute every chunk of ``out`` (an array-like with ``__setitem__``) in turn."""
    regions = chunk_grid(tuple(out.shape), chunks)
    for region in regions:
        index = tuple(slice(a, b) for a, b in region)
        out[index] = compute_region(
            specs,
            read,
            region,
            in_dtype=in_dtype,
            preserve_dtype=preserve_dtype,
            backend=backend,
            rounded=rounded,
        )
        if progress is not None:
            progress(1)
    return out
