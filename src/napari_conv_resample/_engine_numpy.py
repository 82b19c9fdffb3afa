"""Cache-aware CPU engine for strided, dilated correlation and its transpose.

Both operators are rewritten as *stride-1* correlations of decimated sources
(DESIGN §6):

* down, per axis: tap ``t`` reads ``xpad[s*o + d*t - p_lo]``; writing
  ``d*t = s*q + r`` this is ``D_r[o + q]`` with the decimated source
  ``D_r[m] = x[s*m + r - p_lo]`` (border mode applied). Taps are grouped by
  their phase ``r``; each group's source is gathered once per block into a
  small contiguous buffer (this is also where padding and integer-to-float
  conversion happen) and every tap is then a stride-1 window of it.
* up (polyphase): output phase ``phi`` (``j = phi + s*m``) receives only the
  taps with ``d*t = phi + p_lo (mod s)``, each reading ``y[m + c_t]`` with
  ``c_t = (phi + p_lo - d*t) / s`` (zero outside ``y``). Every output pixel is
  written once; nothing is zero-stuffed or scattered.

The output is cut into blocks (all phases of a block together) small enough
that the accumulator, the product buffer and the gathered sources stay in
L2; blocks run on a thread pool (NumPy releases the GIL). Interior blocks of
stride-1 float sources read views of the input directly.

Exactness: within each output pixel the taps are summed in the reference
engine's order (``np.ndindex`` over the kernel), each product rounded to the
compute dtype before it is added, so results equal
:mod:`~napari_conv_resample._reference_engine` bit for bit on the same
platform (tests allow rtol 1e-6 float32 / 1e-12 float64 in case a SIMD
path differs).
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .padding import source_index

#: Target size in bytes of one block's output. The working set is about three
#: times this (accumulator, product buffer, gathered sources) and stays in the
#: last-level cache; bigger blocks mean fewer, longer NumPy calls, which beat
#: L2-sized blocks on a 2-core EPYC (1 MiB L2 per core, 32 MiB L3).
BLOCK_BYTES = 1 << 20
#: Below this many output elements a call runs on the calling thread only.
PARALLEL_MIN_ELEMENTS = 1 << 18

_pool = None
_pool_lock = threading.Lock()


def workers():
    """Threads used for large calls (``os.cpu_count()``)."""
    return max(1, os.cpu_count() or 1)


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="conv-resample")
        return _pool


@dataclass(frozen=True)
class _Program:
    """One output sub-grid and the stride-1 taps that fill it.

    ``phase``/``step`` select the sub-grid ``phase + step*m`` of each spatial
    output axis, of ``length`` points. Tap ``(w, base, offset)`` reads source
    index ``src_step*(m + offset) + base`` on every spatial axis.
    """

    phase: tuple
    step: tuple
    length: tuple
    src_step: tuple
    taps: tuple


def _down_program(spec):
    s, d, lo = spec.stride, spec.dilation, spec.pad_lo
    taps = []
    for t in np.ndindex(spec.weights.shape):
        base = tuple((dd * tt) % ss - p for tt, ss, dd, p in zip(t, s, d, lo))
        offset = tuple((dd * tt) // ss for tt, ss, dd in zip(t, s, d))
        taps.append((spec.weights[t], base, offset))
    n = len(spec.axes)
    length = tuple(spec.output_shape[a] for a in spec.axes)
    return [_Program((0,) * n, (1,) * n, length, s, tuple(taps))]


def _up_programs(spec):
    s, d, lo = spec.stride, spec.dilation, spec.pad_lo
    n = len(spec.axes)
    out_len = [spec.output_shape[a] for a in spec.axes]
    programs = []
    for phi in np.ndindex(*s):
        length = tuple(len(range(f, L, ss)) for f, L, ss in zip(phi, out_len, s))
        if 0 in length:
            continue
        taps = []
        for t in np.ndindex(spec.weights.shape):
            num = [f + p - dd * tt for f, p, dd, tt in zip(phi, lo, d, t)]
            if all(v % ss == 0 for v, ss in zip(num, s)):
                offset = tuple(v // ss for v, ss in zip(num, s))
                taps.append((spec.weights[t], (0,) * n, offset))
        programs.append(_Program(phi, s, length, (1,) * n, tuple(taps)))
    return programs


def programs_for(spec):
    """The :class:`_Program` list computing ``spec`` (one for down, one per phase for up)."""
    return _down_program(spec) if spec.op == "down" else _up_programs(spec)


def _canonical(a, axes):
    """View of ``a`` as ``(*outer, batch, *spatial)``, spatial axes last."""
    n = len(axes)
    moved = np.moveaxis(a, axes, range(a.ndim - n, a.ndim))
    if moved.ndim == n:
        moved = moved[np.newaxis]
    return moved


def _block_extents(grid, elements):
    """Block extent per grid axis (batch first): last axes full, ~``elements`` in all."""
    ext = [1] * len(grid)
    room = max(1, elements)
    for i in range(len(grid) - 1, -1, -1):
        ext[i] = max(1, min(grid[i], room))
        room = max(1, room // ext[i])
        if room == 1:
            break
    return ext


def _segments(u0, u1, step, base, length):
    """Split source positions ``step*u + base`` (``u0 <= u < u1``) into in/out-of-bounds runs."""
    lo_in = max(u0, -(base // step))
    hi_in = min(u1, (length - 1 - base) // step + 1)
    if lo_in >= hi_in:
        return [(u0, u1, False)]
    runs = [(u0, lo_in, False), (lo_in, hi_in, True), (hi_in, u1, False)]
    return [r for r in runs if r[0] < r[1]]


@functools.lru_cache(maxsize=4096)
def _mapped(r0, r1, step, base, length, mode):
    """Source pixels of positions ``step*u + base``, ``r0 <= u < r1``, under ``mode``.

    Returns ``(index, zero)``: indices safe to gather with, and a mask (or
    ``None``) of the positions that read zero padding.
    """
    raw = np.arange(r0, r1) * step + base
    lo = max(0, -int(raw.min()))
    hi = max(0, int(raw.max()) - length + 1)
    idx = source_index(length, lo, hi, mode)[raw + lo]
    zero = idx < 0
    idx.flags.writeable = False
    if not zero.any():
        return idx, None
    idx = np.maximum(idx, 0)
    idx.flags.writeable = False
    zero.flags.writeable = False
    return idx, zero


def _src_slices(ranges, src_step, base):
    return tuple(
        slice(st * u0 + b, st * (u1 - 1) + b + 1, st)
        for (u0, u1), st, b in zip(ranges, src_step, base)
    )


def _gather(x, bsl, ranges, src_step, base, mode, dtype, allow_view):
    """Source buffer ``x[b, step*u + base]`` for ``u`` in ``ranges``, in ``dtype``.

    A view of ``x`` when allowed and entirely inside the image; otherwise a new
    array filled run by run: the interior by slicing (converting to ``dtype``),
    the border by zeros or by the border mode's index map.
    """
    lengths = x.shape[1:]
    runs = [
        _segments(u0, u1, st, b, L) for (u0, u1), st, b, L in zip(ranges, src_step, base, lengths)
    ]
    if allow_view and all(len(r) == 1 and r[0][2] for r in runs):
        return x[(bsl,) + _src_slices(ranges, src_step, base)]
    shape = (bsl.stop - bsl.start,) + tuple(u1 - u0 for u0, u1 in ranges)
    buf = np.empty(shape, dtype=dtype)
    for combo in itertools.product(*runs):
        target = buf[
            (slice(None),)
            + tuple(slice(r0 - u0, r1 - u0) for (r0, r1, _), (u0, _u1) in zip(combo, ranges))
        ]
        outside = [k for k, run in enumerate(combo) if not run[2]]
        if not outside:
            src = x[(bsl,) + _src_slices([r[:2] for r in combo], src_step, base)]
            np.copyto(target, src, casting="unsafe")
        elif mode == "zeros":
            target[...] = 0
        else:
            maps = [
                _mapped(r0, r1, st, b, L, mode)[0]
                for (r0, r1, _), st, b, L in zip(combo, src_step, base, lengths)
            ]
            if len(outside) == 1:  # one index array among slices: a cheap gather
                index = list(_src_slices([r[:2] for r in combo], src_step, base))
                index[outside[0]] = maps[outside[0]]
                part = x[(bsl, *index)]
            else:
                part = x[(bsl,) + np.ix_(*maps)]
            np.copyto(target, part, casting="unsafe")
    return buf


def _run_block(x, out, programs, mode, dtype, outer, brange, mranges):
    """Compute every program on one block: batch ``brange``, sub-grid ``mranges``.

    Sources are gathered once per block and shared by all programs (phases).
    """
    xo, oo = x[outer], out[outer]
    bsl = slice(*brange)
    jobs, need = [], {}
    for prog in programs:
        ranges = [(m0, min(m1, L)) for (m0, m1), L in zip(mranges, prog.length)]
        if any(m0 >= m1 for m0, m1 in ranges):
            continue
        out_block = oo[
            (bsl,)
            + tuple(
                slice(f + st * m0, f + st * (m1 - 1) + 1, st)
                for (m0, m1), f, st in zip(ranges, prog.phase, prog.step)
            )
        ]
        jobs.append((prog, ranges, out_block))
        for _, base, offset in prog.taps:
            lo_hi = [(m0 + q, m1 + q) for (m0, m1), q in zip(ranges, offset)]
            old = need.get(base)
            if old is not None:
                lo_hi = [(min(a0, b0), max(a1, b1)) for (a0, a1), (b0, b1) in zip(old[0], lo_hi)]
            need[base] = (lo_hi, (old[1] if old else 0) + 1)
    same_dtype = xo.dtype == dtype
    sources = {}
    for base, (src_ranges, count) in need.items():
        st = programs[0].src_step
        allow_view = same_dtype and (all(v == 1 for v in st) or count == 1)
        buf = _gather(xo, bsl, src_ranges, st, base, mode, dtype, allow_view)
        sources[base] = (buf, [u0 for u0, _ in src_ranges])
    for prog, ranges, out_block in jobs:
        _accumulate(out_block, prog, ranges, sources, dtype)


def _accumulate(out_block, prog, ranges, sources, dtype):
    """``out_block = sum_t w[t] * source window of t``, in the reference's order."""
    if not prog.taps:
        out_block[...] = 0
        return
    acc = out_block if out_block.flags.c_contiguous else np.empty(out_block.shape, dtype)
    tmp = np.empty(out_block.shape, dtype) if len(prog.taps) > 1 else None
    scalar = dtype.type
    for i, (w, base, offset) in enumerate(prog.taps):
        buf, start = sources[base]
        view = buf[
            (slice(None),)
            + tuple(
                slice(m0 + q - u0, m1 + q - u0) for (m0, m1), q, u0 in zip(ranges, offset, start)
            )
        ]
        if i == 0:
            np.multiply(view, scalar(w), out=acc)
        else:
            np.multiply(view, scalar(w), out=tmp)
            np.add(acc, tmp, out=acc)
    if acc is not out_block:
        out_block[...] = acc


def _count(grid, extents):
    return int(np.prod([-(-g // e) for g, e in zip(grid, extents)]))


def run(spec, x, dtype):
    """Compute ``spec`` on the NumPy array ``x``; the result is a new ``dtype`` array.

    ``x`` may be any real dtype, non-contiguous or read-only; it is converted
    to ``dtype`` block by block, never as a whole.
    """
    dtype = np.dtype(dtype)
    x = np.asarray(x)
    if tuple(x.shape) != tuple(spec.input_shape):
        raise ValueError(f"input shape {x.shape} does not match the spec's {spec.input_shape}")
    out = np.empty(spec.output_shape, dtype=dtype)
    if out.size == 0:
        return out
    programs = programs_for(spec)
    xc, oc = _canonical(x, spec.axes), _canonical(out, spec.axes)
    n = len(spec.axes)
    outer_shape = oc.shape[: oc.ndim - n - 1]
    grid = (oc.shape[-n - 1],) + tuple(max(p.length[i] for p in programs) for i in range(n))
    per_point = len(programs)  # output pixels per sub-grid point
    extents = _block_extents(grid, BLOCK_BYTES // (dtype.itemsize * per_point))
    n_outer = int(np.prod(outer_shape, dtype=np.int64))
    if out.size >= PARALLEL_MIN_ELEMENTS:
        # Enough blocks to keep every thread busy to the end.
        while n_outer * _count(grid, extents) < 4 * workers():
            big = [i for i, e in enumerate(extents) if e > 1]
            if not big:
                break
            extents[big[0]] = -(-extents[big[0]] // 2)
    tasks = [
        (outer, (b0, min(b0 + extents[0], grid[0])), block)
        for outer in np.ndindex(*outer_shape)
        for b0 in range(0, grid[0], extents[0])
        for block in itertools.product(
            *[
                [(m0, min(m0 + e, g)) for m0 in range(0, g, e)]
                for e, g in zip(extents[1:], grid[1:])
            ]
        )
    ]

    def work(task):
        _run_block(xc, oc, programs, spec.mode, dtype, *task)

    if len(tasks) == 1 or workers() == 1 or out.size < PARALLEL_MIN_ELEMENTS:
        for task in tasks:
            work(task)
    else:
        for _ in _executor().map(work, tasks):
            pass
    return out
