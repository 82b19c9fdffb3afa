"""Fused CuPy engine: one GPU thread per output pixel gathers every tap.

One ``RawKernel`` launch per call, for down and for up, any number of spatial
axes. The kernel source is generated per (number of axes, input type, compute
type) and cached. Each thread walks the kernel's taps in the reference
engine's order (``np.ndindex``) and accumulates with ``__fmul_rn`` /
``__fadd_rn`` (no fused multiply-add), so results equal the reference
engine's rounding (the NumPy engine's too for kernels whose weights are all
distinct; it sums taps sharing a weight before one multiply). Integer
input is read and converted inside the kernel: no
converted, padded or zero-stuffed copy of the image is ever made; the output
is the only large allocation.

* down: ``y[o] = sum_t w[t] * x[map(s*o + d*t - p_lo)]`` with the border mode
  applied per axis (``zeros`` skips the tap);
* up (gather form of the transpose): ``z[j] = sum_t w[t] * y[i]`` over the
  taps with ``j + p_lo - d*t = s*i`` and ``0 <= i < L_in``.

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

_TEMPLATE = r"""
#define NDIM {ndim}
#define NSP {nsp}
typedef {in_t} in_t;
typedef {out_t} out_t;

__device__ __forceinline__ out_t mul_rn(out_t a, out_t b) {{ return {mul}(a, b); }}
__device__ __forceinline__ out_t add_rn(out_t a, out_t b) {{ return {add}(a, b); }}

// Source index of padded position p on an axis of length n; -1 reads zero.
__device__ __forceinline__ long long border(long long p, long long n, int mode) {{
    if (p >= 0 && p < n) return p;
    if (mode == 0) return -1;                       // zeros
    if (mode == 2) return p < 0 ? 0 : n - 1;        // replicate
    if (mode == 3) {{ p %= n; return p < 0 ? p + n : p; }}  // circular
    if (n == 1) return 0;                           // reflect (edge not repeated)
    long long period = 2 * (n - 1);
    p %= period;
    if (p < 0) p += period;
    return p >= n ? period - p : p;
}}

__device__ __forceinline__ void next_tap(long long* tap, const long long* ks) {{
    for (int a = NSP - 1; a >= 0; --a) {{
        if (++tap[a] < ks[a]) return;
        tap[a] = 0;
    }}
}}

// info: out_shape[NDIM], x_strides[NDIM], y_strides[NDIM] (in elements),
//       x_shape[NSP], ksize[NSP], stride[NSP], dilation[NSP], pad_lo[NSP];
//       axes in canonical order (spatial axes last).
extern "C" __global__ void {name}(const in_t* __restrict__ x, out_t* __restrict__ y,
                                  const out_t* __restrict__ w,
                                  const long long* __restrict__ info,
                                  long long n_out, long long n_taps, int up, int mode) {{
    const long long* oshape = info;
    const long long* xstr = info + NDIM;
    const long long* ystr = info + 2 * NDIM;
    const long long* xshape = info + 3 * NDIM;
    const long long* ks = xshape + NSP;
    const long long* st = ks + NSP;
    const long long* dl = st + NSP;
    const long long* plo = dl + NSP;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n_out;
         i += (long long)blockDim.x * gridDim.x) {{
        long long coord[NDIM];
        long long rem = i;
        for (int a = NDIM - 1; a >= 0; --a) {{ coord[a] = rem % oshape[a]; rem /= oshape[a]; }}
        long long base = 0, yoff = 0;
        for (int a = 0; a < NDIM - NSP; ++a) base += coord[a] * xstr[a];
        for (int a = 0; a < NDIM; ++a) yoff += coord[a] * ystr[a];
        out_t acc = 0;
        long long tap[NSP];  // tap index per axis, advanced like an odometer (C order)
        for (int a = 0; a < NSP; ++a) tap[a] = 0;
        for (long long t = 0; t < n_taps; ++t, next_tap(tap, ks)) {{
            long long off = base;
            bool skip = false;
            for (int a = 0; a < NSP; ++a) {{
                long long ta = tap[a];
                long long o = coord[NDIM - NSP + a], src;
                if (up) {{
                    long long num = o + plo[a] - dl[a] * ta;
                    if (num % st[a] != 0) {{ skip = true; break; }}
                    src = num / st[a];
                    if (src < 0 || src >= xshape[a]) {{ skip = true; break; }}
                }} else {{
                    src = border(st[a] * o + dl[a] * ta - plo[a], xshape[a], mode);
                    if (src < 0) {{ skip = true; break; }}
                }}
                off += src * xstr[NDIM - NSP + a];
            }}
            if (!skip) acc = add_rn(acc, mul_rn(w[t], (out_t)x[off]));
        }}
        y[yoff] = acc;
    }}
}}
"""


def kernel_source(ndim, nsp, in_dtype, out_dtype):
    """CUDA source and entry name for ``ndim`` axes, ``nsp`` of them spatial (last)."""
    in_dtype, out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
    name = f"conv_resample_{ndim}d{nsp}s_{in_dtype.name}_{out_dtype.name}"
    f64 = out_dtype == np.float64
    src = _TEMPLATE.format(
        ndim=ndim,
        nsp=nsp,
        in_t=_CTYPES[in_dtype.name],
        out_t=_CTYPES[out_dtype.name],
        mul="__dmul_rn" if f64 else "__fmul_rn",
        add="__dadd_rn" if f64 else "__fadd_rn",
        name=name,
    )
    return src, name


@functools.lru_cache(maxsize=64)
def _kernel(ndim, nsp, in_name, out_name):
    import cupy

    src, name = kernel_source(ndim, nsp, in_name, out_name)
    return cupy.RawKernel(src, name)


def canonical_order(spec, ndim):
    """Axis order putting the spatial axes last (non-spatial ones first, in order)."""
    return [a for a in range(ndim) if a not in spec.axes] + list(spec.axes)


def kernel_arguments(spec, x_c, out_c, dtype, xp):
    """Launch arguments after ``(x_c, out_c)``: weights, info, counts, op and mode.

    ``x_c`` and ``out_c`` are views with the spatial axes last; ``xp`` is
    ``cupy`` (or NumPy, to run the source on the CPU in tests).
    """
    nsp = len(spec.axes)
    weights = np.array([dtype.type(v) for v in spec.weights.ravel()], dtype=dtype)
    info = np.array(
        [
            *out_c.shape,
            *[s // x_c.itemsize for s in x_c.strides],
            *[s // out_c.itemsize for s in out_c.strides],
            *x_c.shape[x_c.ndim - nsp :],
            *spec.weights.shape,
            *spec.stride,
            *spec.dilation,
            *spec.pad_lo,
        ],
        dtype=np.int64,
    )
    return (
        xp.asarray(weights),
        xp.asarray(info),
        np.int64(out_c.size),
        np.int64(spec.weights.size),
        np.int32(spec.op == "up"),
        np.int32(MODE_CODES[spec.mode]),
    )


def run(spec, x, dtype, threads_per_block=256):
    """Compute ``spec`` on the CuPy array ``x`` in one fused kernel launch."""
    import cupy

    dtype = np.dtype(dtype)
    x = cupy.asarray(x)
    if x.dtype.name not in _CTYPES:  # float16 and the like: convert first
        x = x.astype(dtype)
    order = canonical_order(spec, x.ndim)
    x_c = x.transpose(order)  # a view with the spatial axes last
    need = int(np.prod(spec.output_shape, dtype=np.int64)) * dtype.itemsize
    try:
        out = cupy.empty(spec.output_shape, dtype=dtype)
    except cupy.cuda.memory.OutOfMemoryError:
        free, _total = cupy.cuda.runtime.memGetInfo()
        raise MemoryError(
            f"the output of shape {tuple(spec.output_shape)} ({dtype.name}) needs {need} bytes "
            f"on the GPU but only {free} are free; process the image in chunks "
            "(conv-resample batch tool) or use backend='numpy'"
        ) from None
    if out.size:
        out_c = out.transpose(order)
        kernel = _kernel(x_c.ndim, len(spec.axes), x_c.dtype.name, dtype.name)
        blocks = min(-(-out.size // threads_per_block), 1 << 20)  # grid-stride loop
        args = kernel_arguments(spec, x_c, out_c, dtype, cupy)
        kernel((blocks,), (threads_per_block,), (x_c, out_c, *args))
    return out
