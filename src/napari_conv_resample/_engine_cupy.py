"""Fused CuPy engine: one GPU thread per output pixel gathers every tap.

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
  applied per axis (``zeros`` skips the tap);
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

_PRELUDE = r"""
typedef {in_t} in_t;
typedef {out_t} out_t;
typedef {idx_t} idx_t;

__device__ __forceinline__ out_t mul_rn(out_t a, out_t b) {{ return {mul}(a, b); }}
__device__ __forceinline__ out_t add_rn(out_t a, out_t b) {{ return {add}(a, b); }}

// Floor division by a positive divisor.
__device__ __forceinline__ idx_t floor_div(idx_t a, idx_t b) {{
    idx_t q = a / b;
    return (q * b > a) ? q - 1 : q;
}}

// Source index of padded position p on an axis of length n; -1 reads zero.
__device__ __forceinline__ idx_t border(idx_t p, idx_t n, int mode) {{
    if (p >= 0 && p < n) return p;
    if (mode == 0) return -1;                       // zeros
    if (mode == 2) return p < 0 ? 0 : n - 1;        // replicate
    if (mode == 3) {{ p %= n; return p < 0 ? p + n : p; }}  // circular
    if (n == 1) return 0;                           // reflect (edge not repeated)
    idx_t period = 2 * (n - 1);
    p %= period;
    if (p < 0) p += period;
    return p >= n ? period - p : p;
}}
"""


def _axis_loop(spec, a, ndim, nsp, mode, unroll):
    """Opening lines of the tap loop of spatial axis ``a`` (setting ``off{a}``)."""
    k, s, d = spec.size[a], spec.stride[a], spec.dilation[a]
    c = ndim - nsp + a  # canonical axis
    prev = "base" if a == 0 else f"off{a - 1}"
    lines = [
        "#pragma unroll" if unroll or a == nsp - 1 else "#pragma unroll 1",
        f"for (int t{a} = 0; t{a} < {k}; ++t{a}) {{",
    ]
    if spec.op == "down":
        if mode == 0:
            lines += [
                f"    const idx_t s{a} = b{a} + {d} * t{a};",
                f"    if (s{a} < 0 || s{a} >= xn{a}) continue;",
            ]
        else:
            lines.append(f"    const idx_t s{a} = border(b{a} + {d} * t{a}, xn{a}, {mode});")
    else:
        lines += [
            f"    if (r{a} != ({d} * t{a}) % {s}) continue;",
            f"    const idx_t s{a} = q{a} - ({d} * t{a}) / {s};",
            f"    if (s{a} < 0 || s{a} >= xn{a}) continue;",
        ]
    lines.append(f"    const idx_t off{a} = {prev} + s{a} * xs{c};")
    return lines


def kernel_source(spec, ndim, in_dtype, out_dtype, idx_bits=32):
    """CUDA source and entry name of ``spec`` on ``ndim`` canonical axes.

    The spatial axes are the last ``len(spec.axes)`` ones. Launch arguments:
    ``x, y, w, n_out``, then the output shape, the input strides, the output
    strides (elements, every axis) and the input lengths of the spatial axes,
    all of the index type (``idx_bits``).
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
        f"{in_dtype.name}_{out_dtype.name}_i{idx_bits}"
    )
    f64 = out_dtype == np.float64
    src = [
        _PRELUDE.format(
            in_t=_CTYPES[in_dtype.name],
            out_t=_CTYPES[out_dtype.name],
            idx_t="int" if idx_bits == 32 else "long long",
            mul="__dmul_rn" if f64 else "__fmul_rn",
            add="__dadd_rn" if f64 else "__fadd_rn",
        )
    ]
    params = ["idx_t n_out"]
    params += [f"idx_t os{a}" for a in range(ndim)]
    params += [f"idx_t xs{a}" for a in range(ndim)]
    params += [f"idx_t ys{a}" for a in range(ndim)]
    params += [f"idx_t xn{a}" for a in range(nsp)]
    src.append(
        f'extern "C" __global__ void {name}(const in_t* __restrict__ x, '
        "out_t* __restrict__ y, const out_t* __restrict__ w, " + ", ".join(params) + ") {"
    )
    body = [
        "for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out;",
        "     i += (idx_t)blockDim.x * gridDim.x) {",
        "    idx_t rem = i;",
    ]
    for a in range(ndim - 1, 0, -1):
        body.append(f"    const idx_t c{a} = rem % os{a}; rem /= os{a};")
    body.append("    const idx_t c0 = rem;")
    body.append(
        "    const idx_t base = 0" + "".join(f" + c{a} * xs{a}" for a in range(ndim - nsp)) + ";"
    )
    body.append("    const idx_t yoff = " + " + ".join(f"c{a} * ys{a}" for a in range(ndim)) + ";")
    for a in range(nsp):
        c, s, p = ndim - nsp + a, spec.stride[a], spec.pad_lo[a]
        if spec.op == "down":
            body.append(f"    const idx_t b{a} = {s} * c{c} - ({p});")
        else:
            body.append(f"    const idx_t q{a} = floor_div(c{c} + ({p}), {s});")
            body.append(f"    const idx_t r{a} = c{c} + ({p}) - q{a} * {s};")
    body.append("    out_t acc = 0;")
    unroll = int(np.prod(spec.size)) <= UNROLL_TAPS
    depth = 1
    for a in range(nsp):
        body += ["    " * depth + line for line in _axis_loop(spec, a, ndim, nsp, mode, unroll)]
        depth += 1
    tap = "t0"
    for a in range(1, nsp):
        tap = f"({tap}) * {spec.size[a]} + t{a}"
    body.append("    " * depth + f"acc = add_rn(acc, mul_rn(w[{tap}], (out_t)x[off{nsp - 1}]));")
    for a in range(nsp, 0, -1):
        body.append("    " * a + "}")
    body += ["    y[yoff] = acc;", "}"]
    src += ["    " + line for line in body]
    src.append("}")
    return "\n".join(src) + "\n", name


@functools.lru_cache(maxsize=128)
def _kernel(spec_key, ndim, in_name, out_name, idx_bits):
    import cupy

    src, name = kernel_source(spec_key.spec, ndim, in_name, out_name, idx_bits)
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


def index_bits(x_c, out_c):
    """32 when every element offset of ``x_c`` and ``out_c`` fits a 32-bit index, else 64."""
    spans = [out_c.size]
    for arr in (x_c, out_c):
        spans.append(sum(abs(s // arr.itemsize) * (n - 1) for s, n in zip(arr.strides, arr.shape)))
    return 32 if max(spans) <= INT32_LIMIT else 64


def scalar_arguments(spec, x_c, out_c, bits):
    """Launch arguments after ``(x, y, w)``, as NumPy scalars of the index type."""
    nsp = len(spec.axes)
    t = np.int32 if bits == 32 else np.int64
    values = [
        out_c.size,
        *out_c.shape,
        *[s // x_c.itemsize for s in x_c.strides],
        *[s // out_c.itemsize for s in out_c.strides],
        *x_c.shape[x_c.ndim - nsp :],
    ]
    return [t(v) for v in values]


def weight_values(spec, dtype):
    """The kernel's weights in ``dtype``, C order (the taps' order)."""
    return np.array([dtype.type(v) for v in spec.weights.ravel()], dtype=dtype)


@functools.lru_cache(maxsize=64)
def _device_weights(raw, dtype_str, device_id):
    """Weights copied to the GPU once per (weights, dtype, device)."""
    import cupy

    return cupy.asarray(np.frombuffer(raw, dtype=np.dtype(dtype_str)))


def run(spec, x, dtype, threads_per_block=256):
    """Compute ``spec`` on the CuPy array ``x`` in one fused kernel launch."""
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
    if out.size:
        out_c = out.transpose(order)
        bits = index_bits(x_c, out_c)
        kernel = _kernel(_SpecKey(spec), x_c.ndim, x_c.dtype.name, dtype.name, bits)
        w = _device_weights(weight_values(spec, dtype).tobytes(), dtype.str, x.device.id)
        blocks = min(-(-out.size // threads_per_block), 1 << 20)  # grid-stride loop
        args = scalar_arguments(spec, x_c, out_c, bits)
        kernel((blocks,), (threads_per_block,), (x_c, out_c, w, *args))
    return out
