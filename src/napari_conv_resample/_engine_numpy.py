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

The output is cut into blocks (all phases of a block together). Per block the
input region is converted and border-padded once into a contiguous slab, the
phase groups are split off it (float32 pairs of a stride-2 last axis are moved
as uint64 words, :func:`_split_copies`), and every tap is one contiguous 1-D window of
a group buffer (the flat layout of :func:`_run_block`), so NumPy runs long
SIMD inner loops on cache-resident data. Blocks of large calls run on a
thread pool (NumPy releases the GIL); calls up to :data:`PARALLEL_MIN_BYTES`
run on the calling thread, where they are faster. Working memory is a few
blocks per thread, never a whole-image copy: all threads' blocks together
fit :data:`MAX_EXTRA_FRACTION` of the input (from inputs of a few MiB up),
each thread with at least :data:`PARALLEL_MIN_CAP_BYTES`; each thread keeps its buffers
and block plans for the next call (:data:`KEEP_BUFFERS_S`).

How taps are summed, and exactness. Taps that share a weight (every
symmetric kernel: all presets) are summed first and multiplied once,
``w*(a+b+...)``, which saves one pass per shared tap (a 3x3 gaussian takes
11 array operations instead of 17, a 3x3x3 one 30 instead of 53); groups are
taken in order of their first tap in the reference engine's order
(``np.ndindex`` over the kernel). When most weights are distinct and the
block was split into phases, taps of different phases that start at the
same place are the rows of one strided matrix and are summed by BLAS
matrix-vector products (:func:`_phase_rows`: each row read once, one write,
instead of a multiply and an add pass per tap; 3-D 3x3x3 stride 2: 53
passes become 9 products and one sum). The reference order is kept only by
the per-tap path with distinct weights (bit for bit); otherwise results
agree with :mod:`~napari_conv_resample._reference_engine` to rounding:
tests allow rtol 1e-6 float32 / 1e-12 float64 relative to
``sum |w| * max |x|``.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .padding import map_index

#: Target working set in bytes of one block: accumulator, product buffer and
#: gathered sources (about one source element per phase group per sub-grid
#: point). Blocks never go below :data:`MIN_BLOCK_ELEMENTS` sub-grid points,
#: so each NumPy call is long enough to hide its Python overhead.
#: Tuned on a 2-core EPYC (1 MiB L2 per core, 32 MiB L3).
BLOCK_BYTES = 4 << 20
MIN_BLOCK_ELEMENTS = 1 << 14
#: The blocks of the threads sharing the last-level cache fill at most this
#: fraction of it (the rest holds the rows streaming in and out), but each at
#: least MIN_CACHE_BLOCK_BYTES. Measured on two hosts of the same 2-core VM
#: type, two threads: with a 32 MiB L3, 4 MiB blocks were best (1-2 MiB: 97-160
#: ms, 4 MiB: 73 ms on the 3-D case); with an 8 MiB L3, 2 MiB blocks (2-D down
#: 16.4 ms against 25.7 with 4 MiB, 2-D up 35.9 / 38.6, 3-D down 143.5 / 146.5).
CACHE_FRACTION = 0.5
MIN_CACHE_BLOCK_BYTES = 1 << 20
#: The working sets of all threads together (every buffer, with the halo,
#: the gaps between phases and the spare elements) stay below this fraction
#: of the input's bytes (issue 5: peak extra memory <= 25% of the input; the
#: rest of the margin is block plans and other Python objects, 30-80 KiB).
MAX_EXTRA_FRACTION = 0.2
#: Calls whose input and output together are at most this size run on the
#: calling thread only. Two threads take the GIL back from each other after
#: every NumPy call, and each hand-over costs a wake-up (~20 us on this VM: a
#: 3-D 16x512x512 down made 774 context switches and took 25.9 ms on two
#: threads, 12.9 ms on one). Measured here (one thread / two): 2-D 2048^2 f32
#: down 5.2 / 6.2 ms, 3-D 32x512^2 u16 down 14.9 / 31.8 ms, 16x1024^2 u16
#: (40 MiB) 25 / 30 ms; from ~40-60 MiB two win: 2-D 3072^2 f32 down
#: 11.0 / 8.2 ms, 24x1024^2 u16 gaussian 37 / 31 ms, 4096^2 f32 1.37x. (3-D
#: random kernels on uint16 gain only from ~60 MiB.)
PARALLEL_MIN_BYTES = 40 << 20
#: Each thread's share of the memory cap (MAX_EXTRA_FRACTION of the input)
#: is at least this: an up call of a small input has a large output but
#: little room for blocks, and smaller blocks on more threads were slower
#: (3-D 21x288x347 uint16 up, 64 MiB out: 129 ms on two threads with 0.4 MiB
#: each, 89 ms on one with 0.8 MiB; from 8 MiB inputs two threads win:
#: 73-128 ms against 81-151).
PARALLEL_MIN_CAP_BYTES = 512 << 10

_pool = None
_pool_lock = threading.Lock()


def workers():
    """Threads used for large calls (``os.cpu_count()``)."""
    return max(1, os.cpu_count() or 1)


def _forget_pool():
    # A forked child inherits the pool object but not its threads: start afresh.
    global _pool, _pool_lock, _kept_lock, _calls, _timer
    _pool, _pool_lock = None, threading.Lock()
    _kept.clear()
    _kept_lock, _calls, _timer = threading.RLock(), 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


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

    def groups(self):
        """``{base: (lowest offset, highest offset, tap count)}`` per source phase."""
        out = {}
        for _, base, offset in self.taps:
            old = out.get(base)
            if old is None:
                out[base] = (offset, offset, 1)
            else:
                lo = tuple(min(a, b) for a, b in zip(old[0], offset))
                hi = tuple(max(a, b) for a, b in zip(old[1], offset))
                out[base] = (lo, hi, old[2] + 1)
        return out

    def permuted(self, perm):
        """This program with its spatial axes reordered by ``perm`` (taps keep their order)."""

        def p(values):
            return tuple(values[i] for i in perm)

        taps = tuple((w, p(b), p(q)) for w, b, q in self.taps)
        return _Program(p(self.phase), p(self.step), p(self.length), p(self.src_step), taps)

    def with_dtype(self, dtype):
        """This program with its weights as ``dtype`` scalars (rounded as the reference does)."""
        taps = tuple((dtype.type(w), b, q) for w, b, q in self.taps)
        return _Program(self.phase, self.step, self.length, self.src_step, taps)


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
    # Per axis and phase f: the taps t with s | f + p - d*t, and their input
    # offsets. A phase's taps are their product, in np.ndindex order (t
    # ascending): the same order, so the same sums, as walking every tap.
    per_axis = [
        [
            [(t, (f + p - dd * t) // ss) for t in range(k) if (f + p - dd * t) % ss == 0]
            for f in range(ss)
        ]
        for k, ss, dd, p in zip(spec.weights.shape, s, d, lo)
    ]
    programs = []
    for phi in np.ndindex(*s):
        length = tuple(len(range(f, L, ss)) for f, L, ss in zip(phi, out_len, s))
        if 0 in length:
            continue
        taps = tuple(
            (spec.weights[tuple(t for t, _ in combo)], (0,) * n, tuple(o for _, o in combo))
            for combo in itertools.product(*(per_axis[a][f] for a, f in enumerate(phi)))
        )
        programs.append(_Program(phi, s, length, (1,) * n, taps))
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


def _cache_bytes(text):
    """Bytes of a sysfs cache size such as ``"8192K"``."""
    text = text.strip()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KkMmGg")) * scale


def _cpu_count(cpu_list):
    """Number of CPUs in a sysfs list such as ``"0-7,64-71"``."""
    count = 0
    for part in cpu_list.strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


@functools.cache
def last_level_cache(root="/sys/devices/system/cpu/cpu0/cache"):
    """``(bytes, cpus sharing it)`` of the first CPU's largest cache, or ``None``.

    Read from Linux's sysfs; ``None`` where it is not available.
    """
    best = None
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(os.path.join(root, entry, "size")) as f:
                size = _cache_bytes(f.read())
            with open(os.path.join(root, entry, "shared_cpu_list")) as f:
                sharing = _cpu_count(f.read())
        except (OSError, ValueError):
            continue
        if best is None or size > best[0]:
            best = (size, sharing)
    return best


def block_budget(threads):
    """Working-set bytes of one thread's block: :data:`BLOCK_BYTES`, less on a small cache."""
    cache = last_level_cache()
    if cache is None:
        return BLOCK_BYTES
    size, sharing = cache
    share = size * CACHE_FRACTION / max(1, min(threads, sharing))
    return int(min(BLOCK_BYTES, max(MIN_CACHE_BLOCK_BYTES, share)))


def _block_extents(grid, elements):
    """Block extent per grid axis (batch first) with about ``elements`` points.

    The last axis is taken whole when it fits (long contiguous rows). The
    other spatial axes share the rest so that the halo every block re-reads
    stays small (a 3-D block of 10 x 11 x 512 re-reads ~20% of its input, one
    of 1 x 113 x 512 ~100%). The outermost of them gets half the extent of
    the others: its halo is only gathered, while the halo rows of the inner
    axes are also computed by every tap (the flat layout of
    :class:`_BlockPlan`). Each extent is then evened out so that the blocks
    along an axis are about equal (no thin last block). The batch axis takes
    what is left. (3-D 3x3x3 stride 2 on 64 x 1024 x 1024: 8 x 16 x 512
    blocks, ~7% faster than 11 x 11 x 512.)
    """
    ext = [1] * len(grid)
    last = max(1, min(grid[-1], elements))
    ext[-1] = last
    room = max(1, elements // last)
    rest = list(range(1, len(grid) - 1))  # spatial axes before the last
    while rest:
        weight = {a: 0.5 if a == 1 and len(rest) > 1 else 1.0 for a in rest}
        side = (room / math.prod(weight.values())) ** (1.0 / len(rest))
        whole = [a for a in rest if grid[a] <= weight[a] * side]
        if not whole:
            for a in rest:
                ext[a] = max(1, int(round(weight[a] * side)))
            room = max(1, room // math.prod(ext[a] for a in rest))
            break
        for a in whole:
            ext[a] = grid[a]
            room = max(1, room // grid[a])
            rest.remove(a)
    for a in range(1, len(grid)):
        ext[a] = -(-grid[a] // max(1, round(grid[a] / ext[a])))
    ext[0] = max(1, min(grid[0], room))
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
    """Source pixels of border positions ``step*u + base``, ``r0 <= u < r1``, under ``mode``.

    Only for modes that read pixels (not ``zeros``), and only for the runs
    outside the image, which are as short as the padding: the cache stays small.
    """
    idx = map_index(np.arange(r0, r1) * step + base, length, mode)
    idx.flags.writeable = False
    return idx


def _as_slice(idx):
    """``idx`` (a non-empty index array) as a slice when it steps evenly, else ``None``.

    A step of zero gives a one-pixel slice, which a copy broadcasts.
    """
    first, n = int(idx[0]), len(idx)
    step = int(idx[1]) - first if n > 1 else 1
    if n > 2 and (idx[1:] - idx[:-1] != step).any():
        return None
    if step == 0:
        return slice(first, first + 1)
    stop = first + step * n
    return slice(first, stop if stop >= 0 else None, step)


def _src_slices(ranges, src_step, base):
    return tuple(
        slice(st * u0 + b, st * (u1 - 1) + b + 1, st)
        for (u0, u1), st, b in zip(ranges, src_step, base)
    )


#: Working buffers are kept this many seconds after the last call ends, so
#: calls that follow each other (batch files, pyramid levels, time points)
#: neither allocate nor page-fault them again; then they are freed. They
#: hold at most the call's working set (<= ``MAX_EXTRA_FRACTION`` of the
#: largest input, ~4 MiB per thread).
KEEP_BUFFERS_S = 1.0

_kept = {}  # thread id -> _Kept
# Re-entrant: a signal handler may call the engine while its thread holds it.
_kept_lock = threading.RLock()
_calls = 0  # calls running now
_last_end = 0.0
_timer = None


def release_buffers():
    """Free the working buffers kept between calls (they are also freed when idle)."""
    with _kept_lock:
        _kept.clear()


def _call_started():
    global _calls
    with _kept_lock:
        _calls += 1


def _call_ended():
    global _calls, _last_end
    with _kept_lock:
        _calls -= 1
        _last_end = time.monotonic()
        if _timer is None and _kept:
            _arm_release(KEEP_BUFFERS_S)


def _arm_release(delay):
    # Called with _kept_lock held; one timer at a time.
    global _timer
    _timer = threading.Timer(delay, _release_when_idle)
    _timer.daemon = True
    try:
        _timer.start()
    except RuntimeError:  # no new threads (interpreter shutting down): free now
        _timer = None
        _kept.clear()


def _release_when_idle():
    global _timer
    with _kept_lock:
        _timer = None
        if _calls:
            return  # the running call arms a new timer when it ends
        idle = time.monotonic() - _last_end
        if idle >= KEEP_BUFFERS_S:
            _kept.clear()
        else:  # a call ended meanwhile: wait out its keep time
            _arm_release(KEEP_BUFFERS_S - idle)


#: Block plans each thread keeps with its buffers (most recently used).
KEEP_PLANS = 32


class _Kept:
    """One thread's kept buffers and block plans, and whether a block uses them now."""

    __slots__ = ("buffers", "plans", "busy")

    def __init__(self):
        self.buffers = {}  # role -> uint8 buffer
        self.plans = {}  # (call key, block key) -> _BlockPlan, oldest first
        self.busy = False


class _Scratch(threading.local):
    """Per-thread working buffers, reused block after block and call after call.

    Fresh allocations of a few hundred KiB are page-faulted in on every block
    (glibc serves them with ``mmap``), which cost more than the arithmetic;
    freeing them costs a TLB shootdown on every core. A block runs start to
    end on one thread and writes every buffer element it reads, so blocks of
    different calls can share a thread's buffers, one block at a time: a
    call that starts on a thread in the middle of a block there (a signal
    handler) gets buffers of its own.

    Block plans are kept too (``call_key`` says what they depend on besides
    the block shape: programs, weights, dtypes), so calls that repeat a
    resampling (batch files, time points, a re-run in the plugin) skip
    building them, which costs about as much as computing a small block.
    """

    def __init__(self, call_key):
        with _kept_lock:
            kept = _kept.setdefault(threading.get_ident(), _Kept())
            self.kept = None if kept.busy else kept
        self.buffers = {} if self.kept is None else self.kept.buffers
        self.plans = {}  # block key -> _BlockPlan, this call's
        self.call_key = call_key
        self._roles = None  # buffer roles the plan being built uses

    def get(self, role, shape, dtype):
        size = math.prod(shape) * dtype.itemsize
        buf = self.buffers.get(role)
        if buf is None or buf.nbytes < size:
            if buf is not None and self.kept is not None:
                # Kept plans viewing the buffer being replaced would keep it
                # alive for nothing: drop them.
                stale = [
                    k for k, p in self.kept.plans.items() if any(b is buf for _r, b in p.views)
                ]
                for k in stale:
                    del self.kept.plans[k]
            buf = self.buffers[role] = np.empty(max(size, 1), dtype=np.uint8)
        if self._roles is not None:
            self._roles.append(role)
        return buf[:size].view(dtype).reshape(shape)

    def plan(self, key, build):
        """The block plan for block ``key``: this call's, a kept one, or ``build()``."""
        plan = self.plans.get(key)
        if plan is not None:
            return plan
        saved = None if self.kept is None else self.kept.plans
        full = (self.call_key, key)
        plan = None if saved is None else saved.pop(full, None)
        # A kept plan is used only while the buffers it views are still the
        # thread's (a larger block since may have replaced one).
        if plan is not None and all(self.buffers.get(r) is b for r, b in plan.views):
            plan.reset()
        else:
            self._roles = []
            try:
                plan = build()
            finally:
                roles, self._roles = self._roles, None
            plan.views = [(r, self.buffers[r]) for r in dict.fromkeys(roles)]
        if saved is not None:
            saved[full] = plan  # most recent last
            while len(saved) > KEEP_PLANS:
                saved.pop(next(iter(saved)))
        self.plans[key] = plan
        return plan


def _gather(x, bsl, ranges, src_step, base, mode, buf):
    """Fill ``buf`` with ``x[b, step*u + base]`` for ``u`` in ``ranges`` (converting).

    Run by run: the interior by slicing, the border by zeros or by the border
    mode's index map.
    """
    lengths = x.shape[1:]
    runs = [
        _segments(u0, u1, st, b, L) for (u0, u1), st, b, L in zip(ranges, src_step, base, lengths)
    ]
    if mode == "zeros" and any(len(r) > 1 for r in runs):
        # One copy of the in-bounds box and at most two zero slabs per axis,
        # instead of one operation per combination of runs (up to 27 in 3-D,
        # ~25 us a block: as much as the sums of a 2K-point block).
        inside = [next((r for r in axis if r[2]), None) for axis in runs]
        if None in inside:
            buf[...] = 0
            return
        box = [slice(None)]
        for (r0, r1, _), (u0, u1) in zip(inside, ranges):
            before, after = buf[(*box, slice(0, r0 - u0))], buf[(*box, slice(r1 - u0, u1 - u0))]
            before[...] = 0
            after[...] = 0
            box.append(slice(r0 - u0, r1 - u0))
        src = x[(bsl,) + _src_slices([r[:2] for r in inside], src_step, base)]
        np.copyto(buf[tuple(box)], src, casting="unsafe")
        return
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
            # In-bounds axes by slicing; each border axis by its mode's index
            # map, taken from the few pixels it spans (so no copy is larger
            # than the border run, and no map is built for a long interior run).
            # A map that is a progression (one reflection, a wrap, a repeated
            # edge pixel: every border no wider than the image) is a slice,
            # broadcast for a repeat, so the border is copied without a
            # temporary (thin images: the border runs are as long as the block).
            index = list(_src_slices([r[:2] for r in combo], src_step, base))
            maps = {}
            for k in outside:
                (r0, r1, _), st, b, L = combo[k], src_step[k], base[k], lengths[k]
                idx = _mapped(r0, r1, st, b, L, mode)
                index[k] = _as_slice(idx)
                if index[k] is None:
                    lo = int(idx.min())
                    index[k] = slice(lo, int(idx.max()) + 1)
                    maps[k] = idx - lo
            part = x[(bsl, *index)]
            for k, idx in maps.items():
                part = np.take(part, idx, axis=k + 1)
            np.copyto(target, part, casting="unsafe")


#: Sum taps reading different phase buffers with BLAS matrix-vector products.
BLAS_ROWS = True
#: Elements (rows x columns) per matrix-vector product: under OpenBLAS's
#: threshold for starting its own threads (9216), which would fight the
#: engine's thread pool; one ``matmul`` call runs the whole stack of them.
BLAS_ELEMENTS = 8192


def _batch_columns(k):
    """Columns per product of ``k`` rows: a multiple of 64, ``k * c <= BLAS_ELEMENTS``."""
    return max(64, BLAS_ELEMENTS // k // 64 * 64)


def _batched_products(weights, buffer, pos, step, n, out):
    """``out[:n] = weights @ rows`` for the ``len(weights)`` rows ``buffer[pos + i*step:][:n]``.

    The columns are cut into blocks of ``c`` (:func:`_batch_columns`) so that
    one ``matmul`` call runs a stack of small matrix-vector products. The last
    block is filled up past ``n`` (``buffer`` and ``out`` have ``c`` spare
    elements; what lands past ``n`` is never read): every output is then
    computed by the same full-size product, so its rounding does not depend
    on where the block starts, and results are the same whatever the block
    layout (thread count, chunked or whole).
    """
    item = buffer.itemsize
    k = len(weights)
    c = _batch_columns(k)
    blocks = -(-n // c)
    rows = np.lib.stride_tricks.as_strided(
        buffer[pos:], (blocks, k, c), (c * item, step * item, item), writeable=False
    )
    return [(weights[None, :], rows, out[: blocks * c].reshape(blocks, 1, c))]


def _phase_rows(windows, stack, phase_size, n, acc, tmp):
    """Plan ``acc = sum(w * window)`` as matrix-vector products over the phase buffers.

    ``stack`` holds the phase buffers one after another, ``phase_size``
    apart. Taps of different phases that start at the same place in their
    phase are rows of a matrix with one row stride, so ``weights @ rows``
    sums them in one BLAS call that reads each row once and writes once,
    instead of a multiply and an add pass per tap. The first run's sum goes
    to ``acc``, each other one to ``tmp`` and is added (no buffer per run).
    Returns the operations for :func:`_sum_rows`.
    """
    # Grouped by the offset in the phase, not by the flat start, so the runs
    # (and so the rounding) are the same whatever the block's layout.
    by_offset = {}
    for w, _flat, phase, rel, start in windows:
        by_offset.setdefault(rel, (start, []))[1].append((phase, w))
    runs = []
    for start, taps in by_offset.values():
        taps.sort()
        i = 0
        while i < len(taps):
            # The longest run from tap i whose phases are equally spaced.
            j, step = i + 1, 0
            if j < len(taps):
                step = taps[j][0] - taps[i][0]
                while j + 1 < len(taps) and taps[j + 1][0] - taps[j][0] == step:
                    j += 1
                j += 1
            runs.append((taps[i][0] * phase_size + start, step * phase_size, taps[i:j]))
            i = j
    ops = []
    for r, (pos, step, taps) in enumerate(runs):
        weights = np.array([w for _p, w in taps], dtype=stack.dtype)
        part = acc if r == 0 else tmp
        if len(taps) == 1:
            ops.append((np.multiply, stack[pos : pos + n], weights[0], part[:n]))
        else:
            for w, rows, out in _batched_products(weights, stack, pos, step, n, part):
                ops.append((np.matmul, w, rows, out))
        if r:
            ops.append((np.add, acc[:n], tmp[:n], acc[:n]))
    return ops


def _sum_rows(ops):
    """Run the products and additions planned by :func:`_phase_rows`."""
    for op, a, b, out in ops:
        op(a, b, out=out)


def _sum_by_weight(windows, acc, tmp):
    """``acc = sum(w * (a + b + ...))``: taps sharing a weight are summed first."""
    for i, (w, views) in enumerate(windows):
        part = acc if i == 0 else tmp
        if len(views) == 1:
            np.multiply(views[0], w, out=part)
        else:
            np.add(views[0], views[1], out=part)
            for v in views[2:]:
                np.add(part, v, out=part)
            np.multiply(part, w, out=part)
        if i:
            np.add(acc, part, out=acc)


def _split_copies(raw_flat, raw_shape, half, st, phases):
    """``(destination, source)`` copies that split ``raw`` into its polyphase parts.

    ``raw`` (the first elements of ``raw_flat``, shape ``raw_shape``) is cut
    along every spatial axis into ``st`` phases of ``half`` points, laid out
    as ``phases[(*phase, batch, *half)]``. Splitting the outer axes only
    reorders whole rows; the last axis is a de-interleave, which NumPy copies
    element by element (~0.48 ns each here). For float32 with stride 2 on
    the last axis, each pair of floats is read as one uint64 instead, and a
    casting copy to uint32 keeps its low half, i.e. the first float of the
    pair on a little-endian machine: contiguous on both sides, about half the
    time, bit for bit the same values. The second float of each pair is the
    low half of the pairs starting one element later.
    """
    nsp = len(st)
    nb = raw_shape[0]
    if not (raw_flat.dtype == np.float32 and st[-1] == 2 and sys.byteorder == "little"):
        split = raw_flat[: math.prod(raw_shape)].reshape(
            (nb, *[v for h, s in zip(half, st) for v in (h, s)])
        )
        return [(phases, split.transpose([*range(2, 2 * nsp + 1, 2), 0, *range(1, 2 * nsp, 2)]))]
    k = nsp - 1  # outer spatial axes
    pairs = (nb, *[v for h, s in zip(half[:k], st[:k]) for v in (h, s)], half[-1])
    order = [*range(2, 2 * k + 1, 2), 0, *range(1, 2 * k, 2), 2 * k + 1]
    size = math.prod(raw_shape)
    narrow = phases.view(np.uint32)
    return [
        (
            narrow[(slice(None),) * k + (px,)],
            raw_flat[px : px + size].view(np.uint64).reshape(pairs).transpose(order),
        )
        for px in (0, 1)
    ]


def _reach(groups, st):
    """Per axis: the halo (source points a block spans beyond its own) and the
    spread of the groups' first source indices (the raw slab's extra width).

    ``groups`` is ``{base: (lowest offset, highest offset)}``.
    """
    n = len(st)
    halo = [max((hi[a] - lo[a] for lo, hi in groups.values()), default=0) for a in range(n)]
    first = [[s * q + b for q, s, b in zip(lo, st, base)] for base, (lo, _hi) in groups.items()]
    spread = [
        max((f[a] for f in first), default=0) - min((f[a] for f in first), default=0)
        for a in range(n)
    ]
    return halo, spread


def _phase_shape(spread, st, extent):
    """Points per axis of each polyphase part of a block spanning ``extent`` source points."""
    return [-(-(d + s * (e - 1) + 1) // s) for d, s, e in zip(spread, st, extent)]


def _splits(groups, convert, st):
    """Whether blocks are split into polyphase parts of one converted, padded slab."""
    return len(groups) > 1 and (convert or any(s > 1 for s in st))


def _uses_blas(prog, dtype):
    """Whether a split block sums ``prog``'s taps by BLAS products (most weights distinct)."""
    distinct = len({w for w, _b, _q in prog.taps})
    return dtype.char in "fd" and BLAS_ROWS and 2 * distinct > len(prog.taps)


def _blas_columns(blas):
    """Columns of the widest BLAS product (two rows), or 0 without BLAS products.

    With BLAS products the phases lie at least this far apart, so rows of
    different phases always form a matrix BLAS takes (else NumPy would sum
    them its own way, rounding differently), and the phase stack,
    accumulator and product buffer have this many spare elements: the last
    product of a window runs past its end (:func:`_batched_products`).
    """
    return _batch_columns(2) if blas else 0


def _phase_stride(per_phase, spare):
    """Elements from one phase's start to the next in the phase stack: a
    multiple of 64, and at least a BLAS product's columns where they are used."""
    return max(-(-per_phase // 64) * 64, spare)


def _block_bytes(reach, st, n_groups, split, blas, itemsize, nb, block):
    """Bytes of the buffers a :class:`_BlockPlan` of this block allocates (halo and spares too)."""
    halo, spread = reach
    extent = [n + h for n, h in zip(block, halo)]
    if not split:
        return (2 + n_groups) * nb * math.prod(extent) * itemsize
    per_phase = nb * math.prod(_phase_shape(spread, st, extent))
    spare = _blas_columns(blas)
    stack = math.prod(st) * _phase_stride(per_phase, spare) + spare
    # The raw slab shares its buffer with the accumulator and product buffer.
    raw = math.prod(st) * per_phase + 2
    return (stack + max(raw, 2 * (per_phase + spare))) * itemsize


class _BlockPlan:
    """The buffers and views one thread needs for blocks of one shape.

    Everything that depends only on the block's shape (buffer layouts, the
    polyphase split view, every tap's flat window, the accumulator's grid
    view) is built once per shape and reused block after block, so the
    per-block Python work is the NumPy calls themselves.
    """

    def __init__(self, programs, groups, dtype, convert, scratch, nb, block, exts):
        # groups: {base: (lowest offset, highest offset)} over all programs.
        st = programs[0].src_step
        halo, spread = _reach(groups, st)
        extent = [n + h for n, h in zip(block, halo)]
        # First source index of each group relative to s*m0 (the block start).
        first = {
            base: [s * q + b for q, s, b in zip(lo, st, base)]
            for base, (lo, _hi) in groups.items()
        }
        self.split = _splits(groups, convert, st)
        # Spare elements and phase gaps only where BLAS products read them.
        blas = self.split and any(_uses_blas(p, dtype) for p in programs)
        self.st = st
        self.zeroed = []
        self.views = []  # (role, buffer): the kept buffers this plan views
        sources = {}
        if self.split:
            # Polyphase split of the block's input region: convert and pad
            # the region once, contiguously (``raw``), then split it into its
            # ``prod(s)`` phases, all of one shape (:func:`_split_copies`).
            # Each group is a phase starting ``o`` points in; every raw value
            # is copied once.
            self.r0 = [min(f[a] for f in first.values()) for a in range(len(st))]
            half = _phase_shape(spread, st, extent)
            layout = (nb, *half)
            raw_shape = (nb, *[h * s for h, s in zip(half, st)])
            # Two spare elements: the odd-phase pair view reads one past the end.
            raw_size = math.prod(raw_shape) + 2
            self.raw_len = raw_shape[1:]
            # The phases lie one after another, ``phase_size`` apart (a
            # multiple of 64, and far enough apart for BLAS products), plus
            # spare elements at the end (:func:`_blas_columns`).
            per_phase = math.prod(layout)
            spare = _blas_columns(blas)
            self.phase_size = _phase_stride(per_phase, spare)
            count = math.prod(st) * self.phase_size
            stack = scratch.get("phases", (count + spare,), dtype)
            slots = stack[:count].reshape((*st, self.phase_size))
            # Gaps and spare end: read, never used; zeroed for every call
            # (other plans share the buffer), :meth:`reset`.
            self.zeroed = [slots[..., per_phase:], stack[count:]]
            self.reset()
            self.stack = stack
            phases = slots[..., :per_phase].reshape((*st, *layout))
            for base, (lo, _hi) in groups.items():
                phase = tuple((f - a) % s for f, a, s in zip(first[base], self.r0, st))
                shift = [(f - a) // s for f, a, s in zip(first[base], self.r0, st)]
                sources[base] = (
                    phases[phase].reshape(-1),
                    [q - o for q, o in zip(lo, shift)],
                    int(np.ravel_multi_index(phase, st)),
                )
        else:
            layout = (nb, *extent)
            raw_size = 0
            self.gathers = []
            for i, (base, (lo, _hi)) in enumerate(groups.items()):
                buf = scratch.get(("src", i), layout, dtype)
                self.gathers.append((buf, lo, extent, base))
                sources[base] = (buf.reshape(-1), lo, None)
        strides = [math.prod(layout[a + 1 :]) for a in range(len(layout))]
        size = strides[0] * nb
        spare = _blas_columns(blas)  # BLAS products write whole blocks
        # The accumulator and the product buffer share one buffer with the raw
        # slab, which is split into the phases before either is written.
        work = scratch.get("work", (max(raw_size, 2 * (size + spare)),), dtype)
        acc, tmp = work[: size + spare], work[size + spare : 2 * (size + spare)]
        if self.split:
            raw_flat = work[:raw_size]
            self.raw = raw_flat[: raw_size - 2].reshape(raw_shape)
            self.copies = _split_copies(raw_flat, raw_shape, half, st, phases)
        self.steps = []
        for prog, ext in zip(programs, exts):
            if min(ext) <= 0:
                continue
            grid = acc[:size].reshape(layout)[(slice(None),) + tuple(slice(0, e) for e in ext)]
            if not prog.taps:
                self.steps.append((prog, ext, None, None, grid))
                continue
            # Flat length covering every needed output of this program.
            n = 1 + sum((e - 1) * k for e, k in zip((nb, *ext), strides))
            windows = []  # (weight, source buffer, phase index or None, offset in it, start)
            for w, base, offset in prog.taps:
                flat, lo, phase = sources[base]
                rel = tuple(q - q0 for q, q0 in zip(offset, lo))
                start = sum(v * k for v, k in zip(rel, strides[1:]))
                windows.append((w, flat, phase, rel, start))
            if self.split and _uses_blas(prog, dtype):
                ops = _phase_rows(windows, self.stack, self.phase_size, n, acc, tmp)
                self.steps.append((prog, ext, _sum_rows, (ops,), grid))
                continue
            # Windows grouped by weight (first occurrence first): w*(a+b+...).
            by_weight = {}
            for w, flat, _phase, _rel, start in windows:
                by_weight.setdefault(w, []).append(flat[start : start + n])
            payload = (list(by_weight.items()), acc[:n], tmp[:n])
            self.steps.append((prog, ext, _sum_by_weight, payload, grid))

    def reset(self):
        """Zero the buffer parts that are read but never written (done once per call)."""
        for part in self.zeroed:
            part[...] = 0

    def run(self, xo, oo, bsl, mranges, mode):
        """Gather one block's input (``mranges`` of the sub-grid) and write its outputs."""
        st = self.st
        if self.split:
            ranges = [
                (s * m0 + r, s * m0 + r + n)
                for (m0, _m1), s, r, n in zip(mranges, st, self.r0, self.raw_len)
            ]
            ones = (1,) * len(st)
            _gather(xo, bsl, ranges, ones, (0,) * len(st), mode, self.raw)
            for dst, src in self.copies:
                np.copyto(dst, src, casting="unsafe")
        else:
            for buf, lo, extent, base in self.gathers:
                ranges = [(m0 + q, m0 + q + e) for (m0, _m1), q, e in zip(mranges, lo, extent)]
                _gather(xo, bsl, ranges, st, base, mode, buf)
        for prog, ext, kind, payload, grid in self.steps:
            out_block = oo[
                (bsl,)
                + tuple(
                    slice(f + s * m0, f + s * (m0 + e - 1) + 1, s)
                    for (m0, _m1), e, f, s in zip(mranges, ext, prog.phase, prog.step)
                )
            ]
            if kind is None:
                out_block[...] = 0
                continue
            kind(*payload)
            out_block[...] = grid


def _run_block(x, out, programs, groups, mode, dtype, scratch, outer, brange, mranges):
    """Compute every program on one block: batch ``brange``, sub-grid ``mranges``.

    Every phase group's source is gathered once into a buffer of one common
    shape ``(batch, *extent)``; programs (output phases) share them. In the
    flattened buffers a tap's window is then one contiguous 1-D range, so each
    NumPy call runs one long inner loop however short the image rows are; the
    accumulator has the buffers' layout (its last rows and columns are
    scratch) and is copied into the output at the end.
    """
    nb = brange[1] - brange[0]
    block = tuple(m1 - m0 for m0, m1 in mranges)
    exts = tuple(
        tuple(min(m1, L) - m0 for (m0, m1), L in zip(mranges, prog.length)) for prog in programs
    )
    key = (nb, block, exts)
    kept = scratch.kept
    if kept is not None:
        kept.busy = True
    try:
        convert = x.dtype != dtype
        plan = scratch.plan(
            key, lambda: _BlockPlan(programs, groups, dtype, convert, scratch, nb, block, exts)
        )
        plan.run(x[outer], out[outer], slice(*brange), mranges, mode)
    finally:
        if kept is not None:
            kept.busy = False


class _ProgramKey:
    """Hashable stand-in for what :func:`programs_for` reads of a spec (``lru_cache`` key)."""

    __slots__ = ("key", "spec")

    def __init__(self, spec):
        w = spec.weights
        self.spec = spec
        lengths = tuple(spec.output_shape[a] for a in spec.axes)
        self.key = (spec.op, w.tobytes(), w.shape, w.dtype.str, spec.stride)
        self.key += (spec.dilation, spec.pad_lo, lengths)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _ProgramKey) and self.key == other.key


@functools.lru_cache(maxsize=64)
def _prepared(program_key, perm, dtype):
    """The programs of a call (spatial axes in memory order, weights as ``dtype``),
    the offsets each phase group's taps span over all of them, and what a block
    plan depends on: their layout and weights' bytes.

    Kept for repeated calls: building them costs ~0.3 ms, as much as
    computing a small block.
    """
    dtype = np.dtype(dtype)
    programs = [p.permuted(perm).with_dtype(dtype) for p in programs_for(program_key.spec)]
    union = {}
    for p in programs:
        for base, (lo, hi, _n) in p.groups().items():
            old = union.get(base, (lo, hi))
            union[base] = (
                tuple(min(a, b) for a, b in zip(old[0], lo)),
                tuple(max(a, b) for a, b in zip(old[1], hi)),
            )
    weights = np.array([w for p in programs for w, _b, _q in p.taps], dtype=dtype)
    layout = tuple(
        (p.phase, p.step, p.length, p.src_step, tuple(t[1:] for t in p.taps)) for p in programs
    )
    return tuple(programs), union, layout, weights.tobytes()


def _count(grid, extents):
    return int(np.prod([-(-g // e) for g, e in zip(grid, extents)]))


def run(spec, x, dtype):
    """Compute ``spec`` on the NumPy array ``x``; the result is a new ``dtype`` array.

    ``x`` may be any real dtype, non-contiguous or read-only; it is converted
    to ``dtype`` block by block, never as a whole. The result's memory layout
    follows the input's spatial axes (C order for C-ordered input).
    """
    dtype = np.dtype(dtype)
    x = np.asarray(x)
    if tuple(x.shape) != tuple(spec.input_shape):
        raise ValueError(f"input shape {x.shape} does not match the spec's {spec.input_shape}")
    # Walk the spatial axes in the input's memory order (largest stride
    # first), so a transposed or Fortran-ordered image is read along its rows;
    # the output then gets the same layout. Taps keep the reference's order.
    perm = sorted(range(len(spec.axes)), key=lambda i: -abs(x.strides[spec.axes[i]]))
    axes = tuple(spec.axes[i] for i in perm)
    order = [a for a in range(x.ndim) if a not in axes] + list(axes)
    out = np.empty(tuple(spec.output_shape[a] for a in order), dtype=dtype)
    out = out.transpose(np.argsort(order))
    if out.size == 0:
        return out
    programs, union, layout, weights = _prepared(_ProgramKey(spec), tuple(perm), dtype.str)
    xc, oc = _canonical(x, axes), _canonical(out, axes)
    n = len(spec.axes)
    outer_shape = oc.shape[: oc.ndim - n - 1]
    grid = (oc.shape[-n - 1],) + tuple(max(p.length[i] for p in programs) for i in range(n))
    n_groups = len(union)
    # Working-set elements per sub-grid point (the block size for the cache
    # budget; the cap below counts the real buffers): the accumulator and the
    # product buffer (shared by the programs), one source element per phase
    # group, and the raw slab when the groups are split off one.
    per_point = 2 + n_groups
    if n_groups > 1:
        per_point += math.prod(programs[0].src_step)
    threads = workers() if x.nbytes + out.nbytes > PARALLEL_MIN_BYTES else 1
    if threads > 1 and PARALLEL_MIN_CAP_BYTES:
        # No more threads than the memory cap has room for (up calls of small inputs).
        room = int(x.nbytes * MAX_EXTRA_FRACTION // PARALLEL_MIN_CAP_BYTES)
        threads = max(1, min(threads, room))
    st = programs[0].src_step
    split = _splits(union, x.dtype != dtype, st)
    blas = split and any(_uses_blas(p, dtype) for p in programs)
    cap = x.nbytes * MAX_EXTRA_FRACTION / threads
    budget = min(block_budget(threads), cap)
    elements = max(int(budget // (dtype.itemsize * per_point)), MIN_BLOCK_ELEMENTS)
    extents = _block_extents(grid, elements)

    reach = _reach(union, st)

    def fits(ext):
        size = _block_bytes(reach, st, n_groups, split, blas, dtype.itemsize, ext[0], ext[1:])
        return size <= cap

    # The budget leaves out the halo, the gaps between phases and the spare
    # elements. Where they take the real working set over the cap (thin
    # blocks, whose halo is as large as the block; 3-D up), blocks get
    # smaller: the largest that fits, to within 10% (bisection on a log
    # scale), but not below MIN_BLOCK_ELEMENTS. Smaller blocks cost more in
    # calls than they save in memory (100-150 us of Python and NumPy calls
    # per block: a 1 MiB 3-D down took 2.7-4.2x as long with 1K-point
    # blocks), so inputs under a few MiB keep a fixed working set above the
    # cap (benchmarks/memory_sweep.py).
    if not fits(extents) and elements > MIN_BLOCK_ELEMENTS:
        lo, hi = MIN_BLOCK_ELEMENTS, elements
        extents = _block_extents(grid, lo)
        while hi > 1.1 * lo:
            mid = int((lo * hi) ** 0.5)
            if not lo < mid < hi:  # tiny blocks: the log-scale midpoint rounds to an end
                break
            ext = _block_extents(grid, mid)
            if fits(ext):
                lo, extents = mid, ext
            else:
                hi = mid
    n_outer = int(np.prod(outer_shape, dtype=np.int64))
    if threads > 1:
        # Enough blocks to keep every thread busy to the end.
        while n_outer * _count(grid, extents) < 4 * threads:
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

    # What a block plan depends on besides its block: the programs (weights
    # by their bytes, so -0.0 and NaN weights match only themselves), the
    # dtypes and the tap-summing settings.
    call_key = (layout, weights, dtype.str, x.dtype.str, BLAS_ROWS, BLAS_ELEMENTS)
    scratch = _Scratch(call_key)

    def work(task):
        _run_block(xc, oc, programs, union, spec.mode, dtype, scratch, *task)

    _call_started()
    try:
        if len(tasks) == 1 or threads == 1:
            for task in tasks:
                work(task)
        else:
            for _ in _executor().map(work, tasks):
                pass
    finally:
        _call_ended()
    return out
