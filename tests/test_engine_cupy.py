"""The fused CuPy kernel equals the reference engine.

Two layers:

* the generated CUDA source, compiled for the CPU with ``g++`` (the few CUDA
  names defined as plain C++; one "thread" runs the grid-stride loop over all
  outputs) and run through the same argument packing as the GPU path: this
  checks the kernel's index, border and summation logic without a GPU
  (skipped without a C++ compiler);
* the real kernel on a CUDA device (skipped without CuPy and a device).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import shutil
import subprocess

import numpy as np
import pytest

from napari_conv_resample import _engine_cupy
from napari_conv_resample.geometry import MODES, resolve_spec
from napari_conv_resample.operators import run_spec_reference

RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

_CPU_PRELUDE = r"""
struct conv_resample_dim3 { long long x; };
static conv_resample_dim3 blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
#define __forceinline__ inline
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
#define VEC2(name, T) struct __attribute__((aligned(2 * sizeof(T)))) name { T x, y; };
#define VEC4(name, T) struct __attribute__((aligned(4 * sizeof(T)))) name { T x, y, z, w; };
VEC2(float2, float) VEC4(float4, float) VEC2(double2, double)
VEC2(char2, signed char) VEC4(char4, signed char)
VEC2(uchar2, unsigned char) VEC4(uchar4, unsigned char)
VEC2(short2, short) VEC4(short4, short) VEC2(ushort2, unsigned short) VEC4(ushort4, unsigned short)
VEC2(int2, int) VEC4(int4, int) VEC2(uint2, unsigned int) VEC4(uint4, unsigned int)
VEC2(longlong2, long long) VEC2(ulonglong2, unsigned long long)
"""


@functools.cache
def _alignment_checks():
    """g++ flags that abort on a misaligned vector access, where UBSan is installed."""
    flags = ["-fsanitize=alignment", "-fno-sanitize-recover=alignment"]
    probe = subprocess.run(
        ["g++", *flags, "-shared", "-fPIC", "-x", "c++", "-o", "/dev/null", "-"],
        input=b"int f(int* p) { return *p; }",
        capture_output=True,
    )
    return flags if probe.returncode == 0 else []


@functools.cache
def _cpu_kernel(tmp_dir, key, ndim, in_name, out_name, variant):
    src, name = _engine_cupy.kernel_source(key.spec, ndim, in_name, out_name, variant)
    path = f"{tmp_dir}/{name}"
    with open(path + ".cpp", "w") as f:
        f.write(_CPU_PRELUDE + src)
    subprocess.run(
        ["g++", "-shared", "-fPIC", "-O1", "-ffp-contract=off", "-Wno-unknown-pragmas"]
        + _alignment_checks()
        + ["-o", path + ".so", path + ".cpp"],
        check=True,
        capture_output=True,
    )
    return getattr(ctypes.CDLL(path + ".so"), name)


def _cpu_launch(spec, x, out, **launch_kw):
    """``(x_c, out_c, launch)`` as the GPU path makes them, for NumPy arrays."""
    order = _engine_cupy.canonical_order(spec, x.ndim)
    x_c, out_c = x.transpose(order), out.transpose(order)
    return x_c, out_c, _engine_cupy.launch_config(spec, x_c, out_c, **launch_kw)


def _run_on_cpu(tmp_dir, spec, x, dtype, bits=None, **launch_kw):
    """``_engine_cupy.run`` with NumPy arrays and the source compiled by g++."""
    dtype = np.dtype(dtype)
    out = np.full(spec.output_shape, np.nan, dtype=dtype)
    x_c, out_c, launch = _cpu_launch(spec, x, out, **launch_kw)
    if bits:
        launch = dataclasses.replace(
            launch,
            variant=dataclasses.replace(launch.variant, bits=bits),
            scalars=tuple(np.int64(v) for v in launch.scalars),
        )
    w = _engine_cupy.weight_values(spec, dtype)
    key = _engine_cupy._SpecKey(spec)
    fn = _cpu_kernel(tmp_dir, key, x_c.ndim, x_c.dtype.name, dtype.name, launch.variant)
    c_int = ctypes.c_int if launch.variant.bits == 32 else ctypes.c_longlong
    fn(
        ctypes.c_void_p(x_c.ctypes.data),
        ctypes.c_void_p(out_c.ctypes.data),
        ctypes.c_void_p(w.ctypes.data),
        *[c_int(int(v)) for v in launch.scalars],
    )
    return out


@pytest.fixture(scope="module")
def cpu_dir(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to compile the kernel source for the CPU")
    return str(tmp_path_factory.mktemp("kernels"))


def _check(got, spec, x, dtype):
    dtype = np.dtype(dtype)
    want = run_spec_reference(spec, np.asarray(x), dtype)
    assert got.shape == want.shape and got.dtype == dtype
    scale = np.abs(spec.weights).sum() * max(1.0, float(np.abs(np.asarray(x, float)).max()))
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def _random_cases(seed, count, n):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        shape = tuple(int(v) for v in rng.integers(2, 11 if n < 3 else 7, size=n))
        k = tuple(int(v) for v in rng.integers(1, 5, size=n))
        s = tuple(int(v) for v in rng.integers(1, 4, size=n))
        d = tuple(int(v) for v in rng.integers(1, 3, size=n))
        pad = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, size=(n, 2)))
        op = ("down", "up")[len(cases) % 2]
        mode = MODES[len(cases) // 2 % 4] if op == "down" else "zeros"
        try:
            kw = {"mode": mode} if op == "down" else {}
            spec = resolve_spec(
                op, shape, kernel=rng.normal(size=k), stride=s, dilation=d, padding=pad, **kw
            )
        except ValueError:
            continue
        cases.append((spec, rng.normal(size=shape) * 30))
    return cases


def test_border_map_of_axes_past_2_to_30_pixels_with_32_bit_indices(cpu_dir):
    # 32-bit indices serve offsets up to ~1.88e9; the reflect period 2*(n-1)
    # of such an axis does not fit in 32 bits and must not wrap.
    src = _engine_cupy._PRELUDE.format(
        in_t="float",
        out_t="float",
        idx_t="int",
        uidx_t="unsigned int",
        mul="__fmul_rn",
        add="__fadd_rn",
    )
    src += 'extern "C" int border_int(int p, int n, int mode) { return border(p, n, mode); }\n'
    path = f"{cpu_dir}/border_int"
    with open(path + ".cpp", "w") as f:
        f.write(_CPU_PRELUDE + src)
    subprocess.run(
        ["g++", "-shared", "-fPIC", "-O1", "-o", path + ".so", path + ".cpp"], check=True
    )
    border = ctypes.CDLL(path + ".so").border_int
    n = 1_200_000_000
    for p, mode, want in [
        (-1, 1, 1),  # reflect
        (-3, 1, 3),
        (n, 1, n - 2),
        (n + 1, 1, n - 3),
        (-1, 3, n - 1),  # circular
        (n + 2, 3, 2),
        (-5, 2, 0),  # replicate
        (n + 5, 2, n - 1),
    ]:
        got = border(ctypes.c_int(p), ctypes.c_int(n), ctypes.c_int(mode))
        assert got == want, (p, mode, got, want)
    for mode, np_mode in ((1, "reflect"), (2, "edge"), (3, "wrap")):  # and on a short axis
        padded = np.pad(np.arange(7), 20, mode=np_mode)
        for p in range(-20, 27):
            assert border(ctypes.c_int(p), ctypes.c_int(7), ctypes.c_int(mode)) == padded[p + 20]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_kernel_source_on_cpu_matches_reference(cpu_dir, n):
    for spec, x in _random_cases(n, 16, n):
        for in_dtype, dtype in (
            (np.float32, np.float32),
            (np.int16, np.float32),
            (np.float64,) * 2,
        ):
            xi = x.astype(in_dtype)
            _check(_run_on_cpu(cpu_dir, spec, xi, dtype), spec, xi, dtype)
        # 64-bit indices (images past 2**31 elements) and several outputs per
        # thread run the same arithmetic
        _check(_run_on_cpu(cpu_dir, spec, x, np.float64, bits=64), spec, x, np.float64)
        for kw in (
            {"per_thread": 1},
            {"per_thread": 3},
            {"outer_fast": False},
            {"outer_block": 1},
            {"outer_block": 2, "per_thread": 1, "vector_loads": True},
        ):
            _check(_run_on_cpu(cpu_dir, spec, x, np.float64, **kw), spec, x, np.float64)


#: Rows of a multiple of 4 elements, so interior threads can read their
#: segment with aligned vector loads; outer spatial axes for outer_block.
_ALIGNED_CASES = [
    ("down", (2, 6, 32), dict(size=(3, 3), stride=2, padding=1, mode="reflect", axes=(1, 2))),
    ("down", (20, 48), dict(size=(3, 3), stride=2, dilation=2, padding=2, mode="zeros")),
    ("down", (5, 6, 40), dict(size=(3, 3, 3), stride=2, padding=1, mode="circular")),
    ("down", (64,), dict(size=(5,), stride=2, dilation=3, padding=4, mode="replicate")),
    ("up", (6, 16), dict(size=(4, 4), stride=2, padding=1)),
    ("up", (3, 5, 8), dict(size=(4, 4, 4), stride=2, padding=1)),
    ("up", (4, 8, 12), dict(size=(3, 2, 5), stride=(3, 2, 2), dilation=(2, 3, 1), padding=2)),
    ("up", (2, 7, 8), dict(size=(1, 3), stride=(1, 3), dilation=(1, 2), axes=(1, 2))),
]
_DTYPES = (
    (np.float32, np.float32),
    (np.uint16, np.float32),
    (np.uint8, np.float32),
    (np.float64, np.float64),
    (np.int16, np.float64),
)
#: Variants that read rows with vector loads and compute blocks of outputs
#: along the outer axes; each must equal the default kernel bit for bit.
_LOAD_AND_BLOCK_VARIANTS = (
    {"vector_loads": True},
    {"vector_loads": True, "outer_block": 1},
    {"vector_loads": True, "outer_block": 2},
    {"outer_block": 3, "per_thread": 3},
)


def _aligned_cases():
    rng = np.random.default_rng(21)
    for op, shape, kw in _ALIGNED_CASES:
        kw = dict(kw)
        size = kw.pop("size")
        yield resolve_spec(op, shape, kernel=rng.normal(size=size), **kw), rng.random(shape) * 200


def test_kernel_source_on_cpu_vector_loads_and_outer_blocks(cpu_dir):
    # g++ aborts on a misaligned vector load where UBSan is installed.
    for spec, x in _aligned_cases():
        for in_dtype, dtype in _DTYPES:
            xi = x.astype(in_dtype)
            plain = _run_on_cpu(cpu_dir, spec, xi, dtype)
            _check(plain, spec, xi, dtype)
            # every variant on float32, the widest one on the other dtypes
            variants = (
                _LOAD_AND_BLOCK_VARIANTS
                if in_dtype is np.float32
                else _LOAD_AND_BLOCK_VARIANTS[2:3]
            )
            for options in variants:
                launch = _cpu_launch(spec, xi, np.empty(spec.output_shape, dtype), **options)[2]
                if options.get("vector_loads"):
                    assert launch.variant.load_width == (2 if in_dtype is np.float64 else 4)
                blocked = options.get("outer_block", 0) if len(spec.axes) > 1 else 0
                # lowered only where the accumulators would pass the register cap
                assert launch.variant.outer_block <= blocked
                if launch.variant.outer_block < blocked:
                    regs = _engine_cupy._block_acc_registers(
                        spec, blocked, launch.variant.per_thread, np.dtype(dtype)
                    )
                    assert regs > _engine_cupy.MAX_BLOCK_ACC_REGISTERS
                got = _run_on_cpu(cpu_dir, spec, xi, dtype, **options)
                assert np.array_equal(got, plain), (spec, in_dtype, options)


def test_vector_loads_only_where_every_segment_is_aligned():
    spec = resolve_spec("down", (8, 32), kernel=np.ones((3, 3)), stride=2, padding=1)
    x = np.zeros((8, 33), np.float32)
    assert _engine_cupy._load_width(4, x[:, :32]) == 1  # rows 33 elements apart
    assert _engine_cupy._load_width(4, x[:, 1:]) == 1  # first element not aligned
    y = np.zeros((8, 34), np.float32)
    assert _engine_cupy._load_width(4, y[:, :32]) == 2
    z = np.zeros((8, 32), np.float32)
    assert _engine_cupy._load_width(4, z) == 4
    assert _engine_cupy._load_width(6, z) == 2  # segments 6 elements apart
    assert _engine_cupy._load_width(4, z[:, ::2]) == 1  # not contiguous
    assert _engine_cupy._load_width(4, z.astype(bool)) == 1  # no vector type
    out = np.empty(spec.output_shape, np.float32)
    assert _cpu_launch(spec, z, out)[2].variant.load_width == 1  # off by default


def test_outer_block_lowered_to_fit_the_register_cap():
    # 3-D up, stride 2, 4 periods per thread: a block of B quotients holds
    # (2B)^2 * 8 accumulators (B=2: 128 floats, 256 registers in float64)
    spec = resolve_spec("up", (4, 6, 8), kernel=np.ones((4, 4, 4)), stride=2, padding=1)
    x = np.zeros(spec.input_shape, np.float32)
    for dtype, want in ((np.float32, 2), (np.float64, 1)):
        out = np.empty(spec.output_shape, dtype)
        assert _cpu_launch(spec, x, out, outer_block=2)[2].variant.outer_block == want
    out = np.empty(spec.output_shape, np.float32)
    assert _cpu_launch(spec, x, out, outer_block=3)[2].variant.outer_block == 2


def test_kernel_source_on_cpu_views_and_leading_axes(cpu_dir):
    rng = np.random.default_rng(9)
    base = rng.integers(0, 60000, size=(9, 4, 21, 3)).astype(np.uint16)
    x = base[::-1, 1, ::2, :].T  # (3, 11, 9), negative and non-unit strides
    x.flags.writeable = False
    w = rng.normal(size=(3, 2))
    for mode in MODES:
        spec = resolve_spec(
            "down",
            x.shape,
            kernel=w,
            stride=(2, 1),
            dilation=(1, 2),
            padding=1,
            mode=mode,
            axes=(0, 2),
        )
        _check(_run_on_cpu(cpu_dir, spec, x, np.float32), spec, x, np.float32)
    spec = resolve_spec("up", x.shape, kernel=w, stride=(2, 3), axes=(0, 2))
    _check(_run_on_cpu(cpu_dir, spec, x, np.float64), spec, x, np.float64)
    b = rng.random((2, 5, 6)) > 0.5
    spec = resolve_spec("down", b.shape, kernel="gaussian", size=3, stride=2, axes=(1, 2))
    _check(_run_on_cpu(cpu_dir, spec, b, np.float32), spec, b, np.float32)


# ---------------------------------------------------------------- real GPU


@pytest.fixture(scope="module")
def cupy():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # driver missing or broken
        pytest.skip(f"no usable CUDA device: {exc}")
    return cp


@pytest.mark.gpu
@pytest.mark.parametrize("n", [1, 2, 3])
def test_gpu_kernel_matches_reference(cupy, n):
    for spec, x in _random_cases(100 + n, 12, n):
        for in_dtype, dtype in (
            (np.float32, np.float32),
            (np.uint8, np.float32),
            (np.float64,) * 2,
        ):
            xi = np.abs(x).astype(in_dtype)
            got = _engine_cupy.run(spec, cupy.asarray(xi), dtype)
            _check(cupy.asnumpy(got), spec, xi, dtype)
            if in_dtype is not np.float32:
                continue
            # the same sums, whatever the outputs per thread, stores and traversal
            for kw in (
                {"per_thread": 1},
                {"per_thread": 3},
                {"vector_stores": False, "outer_fast": False},
                {"vector_loads": True, "outer_block": 2},
            ):
                more = _engine_cupy.run(spec, cupy.asarray(xi), dtype, **kw)
                assert bool(cupy.array_equal(more, got))


@pytest.mark.gpu
def test_gpu_vector_loads_and_outer_blocks(cupy):
    for spec, x in _aligned_cases():
        for in_dtype, dtype in _DTYPES:
            xi = x.astype(in_dtype)
            plain = _engine_cupy.run(spec, cupy.asarray(xi), dtype)
            _check(cupy.asnumpy(plain), spec, xi, dtype)
            for options in _LOAD_AND_BLOCK_VARIANTS:
                got = _engine_cupy.run(spec, cupy.asarray(xi), dtype, **options)
                assert bool(cupy.array_equal(got, plain)), (spec, in_dtype, options)


@pytest.mark.gpu
def test_gpu_views_and_public_api(cupy):
    from napari_conv_resample import dilated_downsample, transpose_upsample

    rng = np.random.default_rng(4)
    host = rng.integers(0, 4000, size=(3, 40, 50)).astype(np.uint16)
    dev = cupy.asarray(host)[:, ::-1, 1::2]
    view = host[:, ::-1, 1::2]
    got = dilated_downsample(dev, "gaussian", size=3, stride=2, dilation=2, axes=(1, 2))
    assert isinstance(got, cupy.ndarray)
    spec = resolve_spec(
        "down", view.shape, kernel="gaussian", size=3, stride=2, dilation=2, axes=(1, 2)
    )
    _check(cupy.asnumpy(got), spec, view, np.float32)
    up = transpose_upsample(got, stride=2, axes=(1, 2))
    spec_up = resolve_spec("up", got.shape, stride=2, axes=(1, 2))
    _check(cupy.asnumpy(up), spec_up, cupy.asnumpy(got), np.float32)
