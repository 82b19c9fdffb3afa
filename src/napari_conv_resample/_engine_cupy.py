"""Fused CuPy engine: each GPU thread gathers every tap of a few outputs.

One ``RawKernel`` launch per call, for down and for up, any number of spatial
axes. The CUDA source is generated per resampling geometry: taps, stride,
dilation, low padding, border mode and types are compile-time constants, so
the tap loops unroll, divisions by the stride become multiplies and the
border code of unused modes disappears; shapes and strides are launch
arguments, so one compiled kernel serves every image size. Indices are
32-bit when every offset fits (64-bit otherwise). Each thread walks the
kernel's taps in the reference engine's order (``np.ndindex``) and
accumulates with ``__fmul_rn`` / ``__fadd_rn`` (no fused multiply-add), so
results equal the reference engine's rounding (the NumPy engine's too for
kernels whose weights are all distinct; it sums taps sharing a weight before
one multiply). Integer input is read and converted inside the kernel: no
converted, padded or zero-stuffed copy of the image is ever made; the output
is the only large allocation.

* down: ``y[o] = sum_t w[t] * x[map(s*o + d*t - p_lo)]`` with the border mode
  applied per axis (``zeros``: a pixel outside the image adds ``w[t] * 0``
  on the last axis, as the reference's padded copy does, and is skipped on
  the others);
* up (gather form of the transpose): ``z[j] = sum_t w[t] * y[i]`` over the
  taps with ``j + p_lo - d*t = s*i`` and ``0 <= i < L_in``: with
  ``j + p_lo = q*s + r``, tap ``t`` contributes when ``d*t mod s == r``
  (a constant per tap), from ``i = q - floor(d*t / s)``.

Compiling a new geometry takes NVRTC a fraction of a second (CuPy keeps the
result on disk); the first call of each geometry pays it.

Only imported by :func:`napari_conv_resample.operators.run_spec` for CuPy
arrays.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

MODE_CODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}

_CTYPES = {
    "bool": "bool",
    "int8": "signed char",
    "uint8": "unsigned char",
    "int16": "short",
    "uint16": "unsigned short",
    "int32": "int",
    "uint32": "unsigned int",
    "int64": "long long",
    "uint64": "unsigned long long",
    "float32": "float",
    "float64": "double",
}

#: Largest element offset (and output count) run with 32-bit indices; the
#: margin keeps the grid-stride step (at most 2**28 threads) from overflowing.
INT32_LIMIT = 2**31 - 2**28 - 1
#: Kernels with at most this many taps are unrolled completely.
UNROLL_TAPS = 128
#: Most 32-bit registers the accumulators of an ``outer_block`` thread may take
#: (a thread has at most 255; past that they spill to local memory):
#: launch_config lowers the block until they fit, or drops it.
MAX_BLOCK_ACC_REGISTERS = 128
#: Outputs of the last axis per thread: down, consecutive outputs; up,
#: periods of ``stride`` outputs (one per phase, so a warp never diverges).
#: Measured on an H200 (``benchmarks/gpu_kernel_variants.py``, README): down 1 -> 2 took 8192^2
#: from 2.56 to 3.40 TB/s (4 was slower); up 1 -> 4 periods with float4
#: stores took 4096^2 -> 8192^2 from 1.67 to 3.02 TB/s.
PER_THREAD = {"down": 2, "up": 4}
#: CUDA vector types by (element dtype, elements): float stores, and loads of
#: every input dtype (an aligned vector is one memory instruction instead of
#: one per element).
_VECTOR_TYPES = {
    ("float32", 2): "float2",
    ("float32", 4): "float4",
    ("float64", 2): "double2",
    ("int8", 2): "char2",
    ("int8", 4): "char4",
    ("uint8", 2): "uchar2",
    ("uint8", 4): "uchar4",
    ("int16", 2): "short2",
    ("int16", 4): "short4",
    ("uint16", 2): "ushort2",
    ("uint16", 4): "ushort4",
    ("int32", 2): "int2",
    ("int32", 4): "int4",
    ("uint32", 2): "uint2",
    ("uint32", 4): "uint4",
    ("int64", 2): "longlong2",
    ("uint64", 2): "ulonglong2",
}

_PRELUDE = r"""
typedef {in_t} in_t;
typedef {out_t} out_t;
typedef {idx_t} idx_t;
typedef {uidx_t} uidx_t;

__device__ __forceinline__ out_t mul_rn(out_t a, out_t b) {{ return {mul}(a, b); }}
__device__ __forceinline__ out_t add_rn(out_t a, out_t b) {{ return {add}(a, b); }}

// Floor division by a positive divisor.
__device__ __forceinline__ idx_t floor_div(idx_t a, idx_t b) {{
    idx_t q = a / b;
    return (q * b > a) ? q - 1 : q;
}}

// Source index of padded position p on an axis of length n, for the modes
// reflect (1), replicate (2) and circular (3); zero padding is a range check.
// 64-bit arithmetic: the reflect period 2*(n-1) of an axis over 2**30 pixels
// overflows a 32-bit index.
__device__ __forceinline__ idx_t border(idx_t p, idx_t n, int mode) {{
    if (p >= 0 && p < n) return p;
    if (mode == 2) return p < 0 ? 0 : n - 1;        // replicate
    long long q = p;
    if (mode == 3) {{ q %= n; return (idx_t)(q < 0 ? q + n : q); }}  // circular
    if (n == 1) return 0;                           // reflect (edge not repeated)
    long long period = 2 * ((long long)n - 1);
    q %= period;
    if (q < 0) q += period;
    return (idx_t)(q >= n ? period - q : q);
}}
"""


def _input_row(name, at, a, mode):
    """``(statements, inside)``: input index ``name`` of position ``at`` on spatial axis ``a``.

    A border mode maps the position into the image (``inside`` is ``None``);
    zero padding keeps it and ``inside`` is the C condition that it lies in
    the image (a tap outside adds nothing).
    """
    if mode != 0:
        return [f"const idx_t {name} = border({at}, xn{a}, {mode});"], None
    return [f"const idx_t {name} = {at};"], f"{name} >= 0 && {name} < xn{a}"


def _outer_axis_loop(spec, a, ndim, nsp, mode, unroll):
    """Opening lines of the tap loop of outer spatial axis ``a`` (setting ``off{a}``)."""
    k, s, d = spec.size[a], spec.stride[a], spec.dilation[a]
    c = ndim - nsp + a  # canonical axis
    prev = "base" if a == 0 else f"off{a - 1}"
    lines = [
        "#pragma unroll" if unroll else "#pragma unroll 1",
        f"for (int t{a} = 0; t{a} < {k}; ++t{a}) {{",
    ]
    if spec.op == "down":
        row, inside = _input_row(f"s{a}", f"b{a} + {d} * t{a}", a, mode)
    else:
        lines.append(f"    if (r{a} != ({d} * t{a}) % {s}) continue;")
        row, inside = _input_row(f"s{a}", f"q{a} - ({d} * t{a}) / {s}", a, 0)
    lines += ["    " + line for line in row]
    if inside:
        lines.append(f"    if (!({inside})) continue;")
    lines.append(f"    const idx_t off{a} = {prev} + s{a} * xs{c};")
    return lines


@dataclass(frozen=True)
class Variant:
    """Compile-time choices of one kernel besides the geometry."""

    bits: int  # index width, 32 or 64
    per_thread: int
    unit: bool  # the last axis is contiguous in the input (stride 1 element)
    store_width: int  # outputs per vector store, 1 for scalar stores
    outer_fast: bool  # see _traversal
    load_width: int = 1  # input elements per aligned vector load, 1 for scalar loads
    outer_block: int = 0  # outputs per thread along the outer spatial axes, see _outer_block


@dataclass(frozen=True)
class Launch:
    """How one call runs: index width, outputs per thread, threads, scalar arguments.

    Each thread computes ``per_thread`` consecutive outputs of the last
    spatial axis (for up, ``per_thread`` periods of ``stride`` outputs, one
    of each phase), reading the input segment they share once.
    """

    variant: Variant
    n_threads: int
    scalars: tuple


def _last_axis_plan(spec, per_thread):
    """Outputs per thread ``V``, input segment span, segment start offset, tap map.

    A thread computes outputs ``j0 .. j0+V-1`` of the last axis with
    ``j0 = g*V``. It reads the input segment ``lo .. lo+span-1`` with
    ``lo = a*g + lo0``; ``taps[v]`` lists ``(t, u)``: tap ``t`` of output
    ``v`` reads segment element ``u``, in tap order.
    """
    k, s, d, p = spec.size[-1], spec.stride[-1], spec.dilation[-1], spec.pad_lo[-1]
    if spec.op == "down":
        # outputs j read inputs s*j + d*t - p: lo = s*V*g - p
        v_count = per_thread
        taps = [[(t, s * v + d * t) for t in range(k)] for v in range(v_count)]
        return v_count, s * (v_count - 1) + d * (k - 1) + 1, s * v_count, -p, taps
    # up: with V a multiple of s, j0 + p = s*(g*per_thread) + p, so output v
    # has phase (p + v) mod s and quotient g*per_thread + (p + v) // s, both
    # constants but for g; tap t contributes when d*t = phase (mod s), from
    # input quotient - (d*t) // s.
    v_count = s * per_thread
    reach = (d * (k - 1)) // s
    q_lo, q_hi = p // s, (p + v_count - 1) // s
    lo0 = q_lo - reach
    taps = [
        [(t, (p + v) // s - (d * t) // s - lo0) for t in range(k) if (d * t) % s == (p + v) % s]
        for v in range(v_count)
    ]
    return v_count, q_hi - lo0 + 1, per_thread, lo0, taps


def _pointer(arr):
    """Address of ``arr``'s first element (CuPy or NumPy)."""
    return arr.data.ptr if hasattr(arr.data, "ptr") else arr.ctypes.data


def _store_width(per_thread_outputs, out_c, dtype):
    """Outputs per vector store (1: scalar stores) for a contiguous, aligned output row."""
    if out_c.strides[-1] != out_c.itemsize:
        return 1
    ptr = _pointer(out_c)
    for width in (4, 2):
        fits = (dtype.name, width) in _VECTOR_TYPES and per_thread_outputs % width == 0
        if fits and ptr % (width * dtype.itemsize) == 0:
            return width
    return 1


def _load_width(segment_step, x_c):
    """Input elements per vector load (1: scalar loads) of the threads' segments.

    A vector load must be aligned for every thread, so it is used only where
    the last axis is contiguous, the first element is aligned, every other
    stride and the step between the segments of neighbouring threads are
    multiples of the width; the kernel then knows at compile time which
    segment elements start an aligned vector.
    """
    itemsize = x_c.itemsize
    if x_c.strides[-1] != itemsize:
        return 1
    for width in (4, 2):
        aligned = (
            (x_c.dtype.name, width) in _VECTOR_TYPES
            and segment_step % width == 0
            and _pointer(x_c) % (width * itemsize) == 0
            and all((s // itemsize) % width == 0 for s in x_c.strides[:-1])
        )
        if aligned:
            return width
    return 1


def _quotient_range(spec, a, n_out):
    """First input quotient and count of quotients ``(o + p_lo) // s`` of up axis ``a``."""
    s, p = spec.stride[a], spec.pad_lo[a]
    first = p // s
    return first, (n_out - 1 + p) // s - first + 1


def _block_acc_registers(spec, block, per_thread, dtype):
    """32-bit registers of the accumulators of one ``outer_block`` thread."""
    members = 1
    for a in range(len(spec.axes) - 1):
        members *= block * (spec.stride[a] if spec.op == "up" else 1)
    v_count = _last_axis_plan(spec, per_thread)[0]
    return members * v_count * max(1, np.dtype(dtype).itemsize // 4)


def launch_config(
    spec,
    x_c,
    out_c,
    per_thread=None,
    vector_stores=True,
    outer_fast=True,
    vector_loads=False,
    outer_block=0,
):
    """The :class:`Launch` of ``spec`` for the views ``x_c`` / ``out_c`` (spatial axes last).

    ``outer_block`` (see :func:`_outer_block`) applies where there are outer
    spatial axes and the taps are unrolled (elsewhere it is ignored), lowered
    until a thread's accumulators fit :data:`MAX_BLOCK_ACC_REGISTERS`.
    """
    if per_thread is None:
        per_thread = PER_THREAD[spec.op]
    nsp = len(spec.axes)
    if nsp == 1 or int(np.prod(spec.size)) > UNROLL_TAPS:
        outer_block = 0
    while outer_block and _block_acc_registers(spec, outer_block, per_thread, out_c.dtype) > (
        MAX_BLOCK_ACC_REGISTERS
    ):
        outer_block -= 1
    spans = [out_c.size]
    for arr in (x_c, out_c):
        spans.append(sum(abs(s // arr.itemsize) * (n - 1) for s, n in zip(arr.strides, arr.shape)))
    bits = 32 if max(spans) <= INT32_LIMIT else 64
    v_count, _span, segment_step, _lo0, _taps = _last_axis_plan(spec, per_thread)
    groups = -(-out_c.shape[-1] // v_count)
    # Threads per axis but the last: one per output row, or per block of
    # rows along the outer spatial axes.
    grid = list(out_c.shape[:-1])
    if outer_block:
        for a in range(nsp - 1):
            c = out_c.ndim - nsp + a
            rows = out_c.shape[c]
            if spec.op == "up":
                rows = _quotient_range(spec, a, rows)[1]
            grid[c] = -(-rows // outer_block)
    n_threads = int(np.prod(grid, dtype=np.int64)) * groups
    t = np.int32 if bits == 32 else np.int64
    values = [
        n_threads,
        groups,
        *out_c.shape,
        *[s // x_c.itemsize for s in x_c.strides],
        *[s // out_c.itemsize for s in out_c.strides],
        *x_c.shape[x_c.ndim - nsp :],
        *grid,
    ]
    unit = x_c.strides[-1] == x_c.itemsize
    width = _store_width(v_count, out_c, out_c.dtype) if vector_stores else 1
    loads = _load_width(segment_step, x_c) if vector_loads else 1
    variant = Variant(bits, per_thread, unit, width, outer_fast and nsp > 2, loads, outer_block)
    return Launch(variant, n_threads, tuple(t(val) for val in values))


def _segment_loads(spec, ndim, mode, variant, row, in_name):
    """Statements reading the thread's input segment of the row at offset ``row``.

    ``e{u}`` is segment element ``u`` converted to the output type; interior
    threads read without border checks (``load_width`` > 1: aligned vector
    loads where the segment allows), border threads map or zero each element.
    """
    nsp = len(spec.axes)
    _v, span, _a, lo0, taps = _last_axis_plan(spec, variant.per_thread)
    c = ndim - 1
    xs = "" if variant.unit else f" * xs{c}"
    used = sorted({u for per_v in taps for _t, u in per_v})

    def checked(u):
        pos = f"(lo + {u})"
        if spec.op == "down" and mode != 0:
            return f"x[{row} + border({pos}, xn{nsp - 1}, {mode}){xs}]"
        return f"({pos} >= 0 && {pos} < xn{nsp - 1}) ? x[{row} + {pos}{xs}] : (in_t)0"

    width = variant.load_width
    if width == 1:
        return [
            f"const out_t e{u} = (out_t)(inside ? x[{row} + (lo + {u}){xs}] : {checked(u)});"
            for u in used
        ]
    # (lo + u) % width == (lo0 + u) % width: segments start a multiple of
    # the width apart (launch_config), so the aligned elements are known here.
    vectors = {}
    for u in used:
        first = u - (lo0 + u) % width
        if first >= 0 and first + width <= span:
            vectors.setdefault(first, []).append(u)
    vec = _VECTOR_TYPES[(in_name, width)]
    lines = ["out_t " + ", ".join(f"e{u}" for u in used) + ";", "if (inside) {"]
    for first, members in sorted(vectors.items()):
        address = f"x + {row} + lo + {first}"
        lines.append(f"    const {vec} v{first} = *reinterpret_cast<const {vec}*>({address});")
        lines += [f"    e{u} = (out_t)v{first}.{'xyzw'[u - first]};" for u in members]
    in_vectors = {u for members in vectors.values() for u in members}
    lines += [f"    e{u} = (out_t)x[{row} + lo + {u}];" for u in used if u not in in_vectors]
    lines.append("} else {")
    lines += [f"    e{u} = (out_t)({checked(u)});" for u in used]
    lines.append("}")
    return lines


def _segment_sums(spec, variant, outer_tap, acc="acc"):
    """Statements adding the taps of the segment to the accumulators ``{acc}{v}``.

    ``outer_tap`` is the flat index of the outer axes' taps (a C expression,
    ``None`` for 1-D): tap ``t`` of the last axis is weight ``outer * k + t``.
    """
    k = spec.size[-1]
    taps = _last_axis_plan(spec, variant.per_thread)[4]
    lines = []
    for v, per_v in enumerate(taps):
        for t, u in per_v:
            tap = t if outer_tap is None else f"({outer_tap}) * {k} + {t}"
            lines.append(f"{acc}{v} = add_rn({acc}{v}, mul_rn(w[{tap}], e{u}));")
    return lines


def _last_axis_code(spec, ndim, mode, variant, in_name):
    """Statements loading the last axis' input segment and accumulating every output."""
    nsp = len(spec.axes)
    row = "base" if nsp == 1 else f"off{nsp - 2}"
    outer = None
    for a in range(nsp - 1):
        outer = f"({outer}) * {spec.size[a]} + t{a}" if a else f"t{a}"
    loads = _segment_loads(spec, ndim, mode, variant, row, in_name)
    return loads + _segment_sums(spec, variant, outer)


def _outer_block(spec, a, block):
    """Members, taps and input rows of a block of ``block`` along outer spatial axis ``a``.

    A thread with ``outer_block = B`` computes, along each outer spatial axis,
    B consecutive outputs (down) or every phase of B consecutive input
    quotients ``q = (o + p_lo) // s`` (up: B*s outputs). Those outputs share
    input rows: each row is read once and added to every output reading it.
    Returns ``(members, uses)``: the block's outputs as ``(j, r)`` (down:
    ``(j, 0)``, output ``B*c + j``; up: output ``(q0 + j)*s + r - p_lo``), and
    ``uses[key]`` the ``(member, tap)`` pairs reading the row of ``key``
    (down: row ``s*B*c - p_lo + key``; up: row ``q0 - key``). For each
    member the key grows with the tap, so walking the keys in order adds
    every output's taps in the reference order.
    """
    k, s, d = spec.size[a], spec.stride[a], spec.dilation[a]
    uses = {}
    if spec.op == "down":
        members = [(j, 0) for j in range(block)]
        for j, t in itertools.product(range(block), range(k)):
            uses.setdefault(s * j + d * t, []).append((members.index((j, 0)), t))
    else:
        members = [(j, r) for j in range(block) for r in range(s)]
        for j, t in itertools.product(range(block), range(k)):
            member = members.index((j, (d * t) % s))
            uses.setdefault((d * t) // s - j, []).append((member, t))
    return members, dict(sorted(uses.items()))


def _outer_block_code(spec, ndim, mode, variant, in_name, out_name):
    """Sums and stores of a thread's block of outputs along the outer spatial axes.

    See :func:`_outer_block`; every member's accumulators ``acc{m}_{v}`` add
    their taps in the reference order, so the results equal the row-per-thread
    kernel's bit for bit.
    """
    nsp = len(spec.axes)
    outer = range(nsp - 1)
    canon = [ndim - nsp + a for a in outer]
    k, s, p = spec.size, spec.stride, spec.pad_lo
    block = variant.outer_block
    v_count = _last_axis_plan(spec, variant.per_thread)[0]
    plans = [_outer_block(spec, a, block) for a in outer]
    lines = []
    # Input row of every key per axis, and whether it is inside the image
    # (border modes of down map it instead).
    for a, (_members, uses) in zip(outer, plans):
        c = canon[a]
        if spec.op == "down":
            lines.append(f"const idx_t b{a} = {s[a] * block} * c{c} - ({p[a]});")
        else:
            lines.append(f"const idx_t q{a} = {block} * c{c} + ({p[a] // s[a]});")
        for n, key in enumerate(uses):
            at = f"b{a} + ({key})" if spec.op == "down" else f"q{a} - ({key})"
            row, inside = _input_row(f"i{a}_{n}", at, a, mode)
            lines += row
            if inside:
                lines.append(f"const bool in{a}_{n} = {inside};")
    members = list(itertools.product(*[range(len(plan[0])) for plan in plans]))
    for m in range(len(members)):
        lines += [f"out_t acc{m}_{v} = 0;" for v in range(v_count)]
    for keys in itertools.product(*[range(len(plan[1])) for plan in plans]):
        if mode == 0:  # zero padding (and every up kernel): rows outside add nothing
            lines.append("if (" + " && ".join(f"in{a}_{keys[a]}" for a in outer) + ") {")
        else:
            lines.append("{")
        offset = "".join(f" + i{a}_{keys[a]} * xs{canon[a]}" for a in outer)
        lines.append(f"    const idx_t row = base{offset};")
        lines += [
            "    " + line for line in _segment_loads(spec, ndim, mode, variant, "row", in_name)
        ]
        per_axis = [list(plan[1].values())[n] for plan, n in zip(plans, keys)]
        for pairs in itertools.product(*per_axis):
            m = members.index(tuple(member for member, _t in pairs))
            flat = int(np.ravel_multi_index([t for _m, t in pairs], k[:-1]))
            lines += ["    " + line for line in _segment_sums(spec, variant, flat, f"acc{m}_")]
        lines.append("}")
    for m, combo in enumerate(members):
        valid = []
        for a, n in zip(outer, combo):
            j, r = plans[a][0][n]
            if spec.op == "down":
                lines.append(f"const idx_t o{m}_{a} = {block} * c{canon[a]} + {j};")
                valid.append(f"o{m}_{a} < os{canon[a]}")
            else:
                lines.append(f"const idx_t o{m}_{a} = (q{a} + {j}) * {s[a]} + ({r - p[a]});")
                valid.append(f"o{m}_{a} >= 0 && o{m}_{a} < os{canon[a]}")
        lines.append("if (" + " && ".join(valid) + ") {")
        row = "yrow" + "".join(f" + o{m}_{a} * ys{canon[a]}" for a in outer)
        lines.append(f"    const idx_t yrow{m} = {row};")
        store = _store_code(
            v_count, ndim - 1, variant.store_width, out_name, f"yrow{m}", f"acc{m}_"
        )
        lines += ["    " + line for line in store]
        lines.append("}")
    return lines


def _store_code(v_count, last, width, out_name, row="yrow", acc="acc"):
    """Statements writing the thread's outputs ``{acc}{v}`` to the output row at ``row``.

    Vector stores where the row allows, scalar stores otherwise.
    """
    scalar = [
        f"    if (j0 + {v} < os{last}) y[{row} + (j0 + {v}) * ys{last}] = {acc}{v};"
        for v in range(v_count)
    ]
    if width == 1:
        return scalar
    vec = _VECTOR_TYPES[(out_name, width)]
    fields = "xyzw"
    lines = [f"    if (j0 + {v_count} <= os{last} && ({row} + j0) % {width} == 0) {{"]
    for chunk in range(0, v_count, width):
        lines.append(f"        {vec} vec{chunk};")
        lines += [f"        vec{chunk}.{fields[i]} = {acc}{chunk + i};" for i in range(width)]
        lines.append(f"        *reinterpret_cast<{vec}*>(y + {row} + j0 + {chunk}) = vec{chunk};")
    lines.append("    } else {")
    lines += ["    " + line for line in scalar]
    lines.append("    }")
    return lines


def _traversal(ndim, nsp, outer_fast):
    """Axes but the last, from the fastest varying thread coordinate to the slowest.

    C order (``outer_fast`` false) walks a 3-D image plane by plane, so the
    input plane two output planes share is read again a plane (tens of MiB)
    later; ``outer_fast`` steps the outermost spatial axis right after the
    row's groups, so every re-read input row is still in the L2 cache.
    """
    outer = list(range(ndim - nsp))
    spatial = list(range(ndim - nsp, ndim - 1))
    if outer_fast:
        return spatial + outer[::-1]
    return (outer + spatial)[::-1]


def kernel_source(spec, ndim, in_dtype, out_dtype, variant):
    """CUDA source and entry name of ``spec`` on ``ndim`` canonical axes.

    The spatial axes are the last ``len(spec.axes)`` ones. Launch arguments:
    ``x, y, w``, then :attr:`Launch.scalars`: the thread count, the groups per
    output row, the output shape, the input strides, the output strides
    (elements, every axis), the input lengths of the spatial axes and the
    threads along each axis but the last, all of the index type.
    """
    in_dtype, out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
    nsp = len(spec.axes)
    mode = MODE_CODES[spec.mode] if spec.op == "down" else 0
    geometry = "_".join(
        f"k{k}s{s}d{d}p{p}".replace("-", "m")
        for k, s, d, p in zip(spec.size, spec.stride, spec.dilation, spec.pad_lo)
    )
    name = (
        f"conv_resample_{spec.op}_{ndim}d_{geometry}_m{mode}_"
        f"{in_dtype.name}_{out_dtype.name}_i{variant.bits}_v{variant.per_thread}"
        f"{'u' if variant.unit else ''}w{variant.store_width}{'o' if variant.outer_fast else ''}"
        f"l{variant.load_width}b{variant.outer_block}"
    )
    f64 = out_dtype == np.float64
    src = [
        _PRELUDE.format(
            in_t=_CTYPES[in_dtype.name],
            out_t=_CTYPES[out_dtype.name],
            idx_t="int" if variant.bits == 32 else "long long",
            uidx_t="unsigned int" if variant.bits == 32 else "unsigned long long",
            mul="__dmul_rn" if f64 else "__fmul_rn",
            add="__dadd_rn" if f64 else "__fadd_rn",
        )
    ]
    params = ["idx_t n_threads", "idx_t groups"]
    params += [f"idx_t os{a}" for a in range(ndim)]
    params += [f"idx_t xs{a}" for a in range(ndim)]
    params += [f"idx_t ys{a}" for a in range(ndim)]
    params += [f"idx_t xn{a}" for a in range(nsp)]
    params += [f"idx_t gn{a}" for a in range(ndim - 1)]
    src.append(
        f'extern "C" __global__ void {name}(const in_t* __restrict__ x, '
        "out_t* __restrict__ y, const out_t* __restrict__ w, " + ", ".join(params) + ") {"
    )
    v_count, span, a_step, lo0, _taps = _last_axis_plan(spec, variant.per_thread)
    last = ndim - 1
    body = [
        "for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_threads;",
        "     i += (idx_t)blockDim.x * gridDim.x) {",
        "    uidx_t rem = (uidx_t)i;",
        "    const idx_t g = (idx_t)(rem % (uidx_t)groups); rem /= (uidx_t)groups;",
    ]
    order = _traversal(ndim, nsp, variant.outer_fast)
    for pos, a in enumerate(order):
        if pos == len(order) - 1:
            body.append(f"    const idx_t c{a} = (idx_t)rem;")
        else:
            body.append(
                f"    const idx_t c{a} = (idx_t)(rem % (uidx_t)gn{a}); rem /= (uidx_t)gn{a};"
            )
    body.append(
        "    const idx_t base = 0" + "".join(f" + c{a} * xs{a}" for a in range(ndim - nsp)) + ";"
    )
    # With outer_block the outer spatial coordinates number blocks, and each
    # output row of a block is added to yrow later.
    row_axes = ndim - nsp if variant.outer_block else ndim - 1
    body.append(
        "    const idx_t yrow = 0" + "".join(f" + c{a} * ys{a}" for a in range(row_axes)) + ";"
    )
    for a in range(0 if variant.outer_block else nsp - 1):
        c, s, p = ndim - nsp + a, spec.stride[a], spec.pad_lo[a]
        if spec.op == "down":
            body.append(f"    const idx_t b{a} = {s} * c{c} - ({p});")
        else:
            body.append(f"    const idx_t q{a} = floor_div(c{c} + ({p}), {s});")
            body.append(f"    const idx_t r{a} = c{c} + ({p}) - q{a} * {s};")
    body.append(f"    const idx_t j0 = g * {v_count};")
    body.append(f"    const idx_t lo = g * {a_step} + ({lo0});")
    body.append(f"    const bool inside = lo >= 0 && lo + {span} <= xn{nsp - 1};")
    if variant.outer_block:
        code = _outer_block_code(spec, ndim, mode, variant, in_dtype.name, out_dtype.name)
        body += ["    " + line for line in code] + ["}"]
        src += ["    " + line for line in body] + ["}"]
        return "\n".join(src) + "\n", name
    body += [f"    out_t acc{v} = 0;" for v in range(v_count)]
    unroll = int(np.prod(spec.size)) <= UNROLL_TAPS
    depth = 1
    for a in range(nsp - 1):
        body += [
            "    " * depth + line for line in _outer_axis_loop(spec, a, ndim, nsp, mode, unroll)
        ]
        depth += 1
    code = _last_axis_code(spec, ndim, mode, variant, in_dtype.name)
    body += ["    " * depth + line for line in code]
    for a in range(nsp - 1, 0, -1):
        body.append("    " * a + "}")
    body += _store_code(v_count, last, variant.store_width, out_dtype.name)
    body.append("}")
    src += ["    " + line for line in body]
    src.append("}")
    return "\n".join(src) + "\n", name


@functools.lru_cache(maxsize=128)
def _kernel(spec_key, ndim, in_name, out_name, variant):
    import cupy

    src, name = kernel_source(spec_key.spec, ndim, in_name, out_name, variant)
    return cupy.RawKernel(src, name)


class _SpecKey:
    """Hashable stand-in for the compile-time part of a spec (``lru_cache`` key)."""

    __slots__ = ("key", "spec")

    def __init__(self, spec):
        self.spec = spec
        self.key = (
            spec.op,
            spec.size,
            spec.stride,
            spec.dilation,
            spec.pad_lo,
            spec.mode if spec.op == "down" else "zeros",
        )

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _SpecKey) and self.key == other.key


def canonical_order(spec, ndim):
    """Axis order putting the spatial axes last (non-spatial ones first, in order)."""
    return [a for a in range(ndim) if a not in spec.axes] + list(spec.axes)


def weight_values(spec, dtype):
    """The kernel's weights in ``dtype``, C order (the taps' order)."""
    return np.array([dtype.type(v) for v in spec.weights.ravel()], dtype=dtype)


@functools.lru_cache(maxsize=64)
def _device_weights(raw, dtype_str, device_id):
    """Weights copied to the GPU once per (weights, dtype, device)."""
    import cupy

    return cupy.asarray(np.frombuffer(raw, dtype=np.dtype(dtype_str)))


def run(spec, x, dtype, **options):
    """Compute ``spec`` on the CuPy array ``x`` in one fused kernel launch.

    ``options`` (``threads_per_block`` and :func:`launch_config`'s
    ``per_thread``, ``vector_stores``, ``outer_fast``, ``vector_loads``,
    ``outer_block``) choose a kernel variant; every variant gives the same
    numbers.
    """
    launch, out = prepared_launch(spec, x, dtype, **options)
    launch()
    return out


def prepared_launch(spec, x, dtype, threads_per_block=128, **options):
    """``(launch, out)``: a no-argument callable writing ``spec`` of ``x`` into ``out``.

    Everything but the launch itself (output allocation, compilation, the
    arguments) is done here, so benchmarks can time the kernel alone.
    """
    import cupy

    dtype = np.dtype(dtype)
    x = cupy.asarray(x)
    if x.dtype.name not in _CTYPES:  # float16 and the like: convert first
        x = x.astype(dtype)
    order = canonical_order(spec, x.ndim)
    x_c = x.transpose(order)  # a view with the spatial axes last
    try:
        out = cupy.empty(spec.output_shape, dtype=dtype)
    except cupy.cuda.memory.OutOfMemoryError:
        from ._validation import format_bytes

        need = int(np.prod(spec.output_shape, dtype=np.int64)) * dtype.itemsize
        free, _total = cupy.cuda.runtime.memGetInfo()
        raise MemoryError(
            f"the output of shape {tuple(spec.output_shape)} ({dtype.name}) needs "
            f"{format_bytes(need)} on the GPU but only {format_bytes(free)} are free; "
            "pass a NumPy image (processed in slabs), use the batch tool's chunks "
            "or backend='numpy'"
        ) from None
    if not out.size:
        return (lambda: None), out
    out_c = out.transpose(order)
    launch = launch_config(spec, x_c, out_c, **options)
    kernel = _kernel(_SpecKey(spec), x_c.ndim, x_c.dtype.name, dtype.name, launch.variant)
    w = _device_weights(weight_values(spec, dtype).tobytes(), dtype.str, x.device.id)
    # Grid-stride loop; at most 2**28 threads, the margin INT32_LIMIT leaves.
    blocks = min(-(-launch.n_threads // threads_per_block), (1 << 28) // threads_per_block)
    args = (x_c, out_c, w, *launch.scalars)

    def launch_kernel():
        kernel((blocks,), (threads_per_block,), args)

    return launch_kernel, out
