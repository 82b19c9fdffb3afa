"""The blocked, threaded NumPy engine equals the reference engine.

Where the engine sums taps in the reference order (distinct weights, one
multiply and add per tap) results are identical; taps sharing a weight are
summed before one multiply, and taps of different phases may be summed by
BLAS matrix-vector products, so those agree to rounding. The tolerance is
rtol 1e-6 float32, 1e-12 float64, relative to ``sum |w| * max |x|``.
No timing assertions here: speed is measured by ``benchmarks/run_benchmarks.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_conv_resample import _engine_numpy
from napari_conv_resample.geometry import MODES, resolve_spec
from napari_conv_resample.operators import (
    dilated_downsample,
    run_spec,
    run_spec_reference,
    transpose_upsample,
)

RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def assert_matches_reference(spec, x, dtype):
    dtype = np.dtype(dtype)
    got = run_spec(spec, x, dtype)
    want = run_spec_reference(spec, np.asarray(x), dtype)
    assert got.dtype == dtype
    assert got.shape == spec.output_shape == want.shape
    scale = np.abs(spec.weights).sum() * max(1.0, float(np.abs(want).max(initial=0)))
    scale = max(scale, float(np.abs(np.asarray(x, dtype=np.float64)).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


@pytest.fixture(params=["default", "tiny-blocks-threaded"])
def blocking(request, monkeypatch):
    """Run each test with the default blocks and with tiny blocks on the thread pool."""
    if request.param != "default":
        monkeypatch.setattr(_engine_numpy, "BLOCK_BYTES", 64)
        monkeypatch.setattr(_engine_numpy, "MIN_BLOCK_ELEMENTS", 16)
        monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_CAP_BYTES", 0)
        # BLAS products of 64 columns: several per window, the last one filled up.
        monkeypatch.setattr(_engine_numpy, "BLAS_ELEMENTS", 128)
    return request.param


def _random_spec(rng, op, shape, n, mode="zeros"):
    """A random valid spec on the last ``n`` axes of ``shape`` (None if invalid)."""
    k = tuple(int(v) for v in rng.integers(1, 5, size=n))
    s = tuple(int(v) for v in rng.integers(1, 4, size=n))
    d = tuple(int(v) for v in rng.integers(1, 3, size=n))
    pad = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, size=(n, 2)))
    w = rng.normal(size=k)
    try:
        if op == "down":
            return resolve_spec(
                "down", shape, kernel=w, stride=s, dilation=d, padding=pad, mode=mode
            )
        opad = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d))
        return resolve_spec(
            "up", shape, kernel=w, stride=s, dilation=d, padding=pad, output_padding=opad
        )
    except ValueError:
        return None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_down_random_matches_reference(mode, n, blocking):
    rng = np.random.default_rng(n * 10 + MODES.index(mode))
    done = 0
    while done < 12:
        shape = tuple(int(v) for v in rng.integers(3, 14 if n < 3 else 8, size=n))
        spec = _random_spec(rng, "down", shape, n, mode)
        if spec is None:
            continue
        x = rng.normal(size=shape).astype(np.float32)
        assert_matches_reference(spec, x, np.float32)
        done += 1


@pytest.mark.parametrize("n", [1, 2, 3])
def test_up_random_matches_reference(n, blocking):
    rng = np.random.default_rng(100 + n)
    done = 0
    while done < 12:
        shape = tuple(int(v) for v in rng.integers(2, 12 if n < 3 else 7, size=n))
        spec = _random_spec(rng, "up", shape, n)
        if spec is None:
            continue
        x = rng.normal(size=shape).astype(np.float32)
        assert_matches_reference(spec, x, np.float32)
        done += 1


@pytest.mark.parametrize("op", ["down", "up"])
@pytest.mark.parametrize(
    "in_dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float16, np.float32, np.float64, bool]
)
def test_dtypes(op, in_dtype, blocking):
    rng = np.random.default_rng(7)
    shape = (3, 17, 12)  # a leading non-spatial axis
    if np.dtype(in_dtype).kind == "f":
        x = (rng.normal(size=shape) * 50).astype(in_dtype)
    elif np.dtype(in_dtype).kind == "b":
        x = rng.random(shape) > 0.5
    else:
        info = np.iinfo(in_dtype)
        x = rng.integers(max(info.min, -5000), min(info.max, 5000), size=shape).astype(in_dtype)
    w = rng.normal(size=(3, 4))
    if op == "down":
        spec = resolve_spec(
            "down", shape, kernel=w, stride=2, dilation=2, padding=2, mode="reflect"
        )
    else:
        spec = resolve_spec("up", shape, kernel=w, stride=(2, 3), padding=1)
    for dtype in (np.float32, np.float64):
        assert_matches_reference(spec, x, dtype)


@pytest.mark.parametrize("half", [(3, 5), (2, 4, 7), (6,)])
@pytest.mark.parametrize("outer_stride", [1, 2, 3])
def test_pair_split_moves_float32_bits_exactly(half, outer_stride):
    """The uint64-pair de-interleave gives the same bits as the plain transposing split."""
    rng = np.random.default_rng(sum(half) + outer_stride)
    st = (*[outer_stride] * (len(half) - 1), 2)
    raw_shape = (2, *[h * s for h, s in zip(half, st)])
    size = int(np.prod(raw_shape))
    # Random bit patterns: NaNs with payloads, infinities, -0.0 and subnormals included.
    bits = rng.integers(0, 2**32, size=size + 2, dtype=np.uint64).astype(np.uint32)
    raw_flat = bits.view(np.float32)
    phases = np.empty((*st, 2, *half), np.float32)
    copies = _engine_numpy._split_copies(raw_flat, raw_shape, list(half), st, phases)
    assert len(copies) == (2 if sys.byteorder == "little" else 1)
    for dst, src in copies:
        np.copyto(dst, src, casting="unsafe")
    raw = bits[:size].reshape(raw_shape)
    for phase in np.ndindex(*st):
        want = raw[(slice(None),) + tuple(slice(p, None, s) for p, s in zip(phase, st))]
        np.testing.assert_array_equal(phases[phase].view(np.uint32), want)


def _tap_sums(spec, x, dtype):
    """The tap-summing functions the engine's block plans chose for ``spec``."""
    kinds = set()
    real = _engine_numpy._BlockPlan

    class Recording(real):
        def __init__(self, *args):
            super().__init__(*args)
            kinds.update(step[2].__name__ for step in self.steps if step[2] is not None)

    _engine_numpy._BlockPlan = Recording
    _engine_numpy.release_buffers()  # plans are kept with the buffers: build them afresh
    try:
        run_spec(spec, x, dtype)
    finally:
        _engine_numpy._BlockPlan = real
    return kinds


# inf - inf where both infinities meet (pool threads do not see np.errstate)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("blas_rows", [True, False])
def test_float32_stride_two_matches_reference_with_special_values(mode, blas_rows, blocking):
    """Distinct weights, several phase groups, the pair split, inf/-0/subnormals.

    With BLAS rows off the taps are summed in the reference order: bit for bit.
    """
    rng = np.random.default_rng(MODES.index(mode))
    for shape, stride in [((9, 21, 17), 2), ((8, 20, 16), (3, 2, 2)), ((41,), 2)]:
        x = rng.normal(size=shape).astype(np.float32)
        x.flat[[3, 10, 17, 24]] = [np.inf, -np.inf, -0.0, 1e-41]  # subnormal too
        w = rng.normal(size=(3,) * len(shape))
        spec = resolve_spec("down", shape, kernel=w, stride=stride, padding=1, mode=mode)
        _engine_numpy.BLAS_ROWS = blas_rows
        try:
            got = run_spec(spec, x, np.float32)
            kinds = _tap_sums(spec, x, np.float32)
        finally:
            _engine_numpy.BLAS_ROWS = True
        want = run_spec_reference(spec, x, np.float32)
        assert kinds == ({"_sum_rows"} if blas_rows else {"_sum_by_weight"})
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        if blas_rows:
            finite = np.isfinite(want)
            np.testing.assert_array_equal(got[~finite], want[~finite])
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)


def test_shared_weights_keep_the_weight_grouping():
    """A gaussian (few distinct weights) sums shared taps first, not by BLAS rows."""
    x = np.random.default_rng(5).random((12, 30, 30), dtype=np.float32)
    spec = resolve_spec("down", x.shape, kernel="gaussian", size=3, stride=2)
    assert _tap_sums(spec, x, np.float32) == {"_sum_by_weight"}


@pytest.mark.parametrize("mode", MODES)
def test_noncontiguous_readonly_and_interleaved_axes(mode, blocking):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(20, 4, 30, 3))
    x = base[::-1, 1, ::2, :].T  # (3, 15, 20): negative and non-unit strides, transposed
    x.flags.writeable = False
    before = x.copy()
    w = rng.normal(size=(3, 2))
    # Spatial axes 0 and 2 with the non-spatial axis 1 between them.
    spec = resolve_spec(
        "down",
        x.shape,
        kernel=w,
        stride=(1, 2),
        dilation=(1, 2),
        padding=(1, 2),
        mode=mode,
        axes=(0, 2),
    )
    assert_matches_reference(spec, x, np.float64)
    spec_up = resolve_spec("up", x.shape, kernel=w, stride=(3, 2), axes=(0, 2))
    assert_matches_reference(spec_up, x, np.float64)
    np.testing.assert_array_equal(x, before)


def test_fortran_input_is_read_along_its_rows_and_gives_the_same_layout(blocking):
    rng = np.random.default_rng(12)
    x = np.asfortranarray(rng.normal(size=(2, 30, 41)).astype(np.float32))
    spec = resolve_spec(
        "down",
        x.shape,
        kernel=rng.normal(size=(3, 2)),
        stride=2,
        dilation=(2, 1),
        padding="same",
        mode="circular",
        axes=(1, 2),
    )
    assert_matches_reference(spec, x, np.float32)
    got = run_spec(spec, x, np.float32)
    assert got.strides[2] > got.strides[1]  # spatial axes laid out like the input's
    spec = resolve_spec("up", x.shape, kernel=rng.normal(size=(4, 3)), stride=(2, 3), axes=(1, 2))
    assert_matches_reference(spec, x, np.float32)
    c = np.ascontiguousarray(x)
    assert run_spec(spec, c, np.float32).flags.c_contiguous


def test_many_leading_axes_and_one_pixel_axes(blocking):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 3, 1, 5, 1)).astype(np.float32)
    spec = resolve_spec(
        "down",
        x.shape,
        kernel=rng.normal(size=(1, 3, 1)),
        stride=(1, 2, 1),
        padding="same",
        mode="reflect",
    )
    assert_matches_reference(spec, x, np.float32)
    spec = resolve_spec("up", x.shape, kernel=rng.normal(size=(1, 3, 1)), stride=(2, 2, 3))
    assert_matches_reference(spec, x, np.float32)


@pytest.mark.parametrize("mode", MODES)
def test_kernel_larger_than_image_and_large_padding(mode, blocking):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 5))
    w = rng.normal(size=(3, 4))
    pad = 3 if mode != "reflect" else ((3, 3), (4, 4))
    spec = resolve_spec("down", x.shape, kernel=w, stride=1, dilation=2, padding=pad, mode=mode)
    assert_matches_reference(spec, x, np.float64)
    spec = resolve_spec("up", x.shape, kernel=w, stride=3, dilation=2, padding=(4, 5))
    assert_matches_reference(spec, x, np.float64)


def test_up_output_phases_without_taps_are_zero(blocking):
    # k=1, s=2, padding (1, 0), output_padding 1: the one output pixel gets no tap.
    spec = resolve_spec(
        "up",
        (1, 3),
        kernel=[[2.0]],
        stride=2,
        padding=((1, 0), (1, 0)),
        output_padding=1,
        axes=(0, 1),
    )
    x = np.ones((1, 3), np.float32)
    assert_matches_reference(spec, x, np.float32)
    assert not run_spec(spec, x, np.float32)[0].any()


def test_public_operators_use_the_engine_and_keep_results():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 4000, size=(33, 40)).astype(np.uint16)
    down = dilated_downsample(img, "gaussian", size=3, stride=2, dilation=2)
    spec = resolve_spec("down", img.shape, kernel="gaussian", size=3, stride=2, dilation=2)
    np.testing.assert_allclose(down, run_spec_reference(spec, img, np.float32), rtol=1e-6)
    up = transpose_upsample(down, "bilinear", stride=2)
    spec_up = resolve_spec("up", down.shape, kernel="bilinear", stride=2)
    np.testing.assert_allclose(
        up, run_spec_reference(spec_up, down, np.float32), rtol=1e-6, atol=1e-3
    )


def _peak_extra_bytes(spec, x):
    """``(bytes, result)``: the peak a first call allocates beyond its float32 output."""
    _engine_numpy.release_buffers()  # count the working buffers, not reuse kept ones
    tracemalloc.start()
    try:
        got = run_spec(spec, x, np.float32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - got.nbytes, got


@pytest.mark.parametrize("op", ["down", "up"])
def test_integer_input_is_converted_block_by_block(op):
    """Peak extra memory beyond the output stays far below a whole-image float copy."""
    x = np.zeros((2048, 2048), dtype=np.uint16)  # 8 MiB; as float32 it would be 16 MiB
    if op == "down":
        spec = resolve_spec("down", x.shape, kernel="gaussian", size=3, stride=2, padding=1)
    else:
        spec = resolve_spec("up", x.shape, kernel="bilinear", stride=2)
    # Block buffers only (issue 5: <= 25% of the input); a whole-image float
    # copy alone would be 200%.
    assert _peak_extra_bytes(spec, x)[0] <= 0.25 * x.nbytes


def _kept_bytes():
    return sum(
        buf.nbytes for kept in list(_engine_numpy._kept.values()) for buf in kept.buffers.values()
    )


def test_working_buffers_are_kept_between_calls_then_freed_when_idle(monkeypatch):
    monkeypatch.setattr(_engine_numpy, "KEEP_BUFFERS_S", 0.05)
    x = np.random.default_rng(3).random((256, 256), dtype=np.float32)
    dilated_downsample(x)
    assert _kept_bytes() > 0  # kept for the next call
    deadline = time.monotonic() + 5
    while _kept_bytes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _kept_bytes() == 0
    dilated_downsample(x)
    assert _kept_bytes() > 0
    _engine_numpy.release_buffers()
    assert not _engine_numpy._kept


def test_a_call_nested_in_a_running_block_gets_its_own_buffers(monkeypatch):
    """A call started on a thread in the middle of a block there (a signal
    handler, a finaliser) must not overwrite that block's buffers."""
    rng = np.random.default_rng(8)
    x = rng.random((300, 300), dtype=np.float32)
    spec = resolve_spec("down", x.shape, kernel=rng.normal(size=(3, 3)), stride=2, mode="reflect")
    x2 = rng.random((310, 290), dtype=np.float32)
    spec2 = resolve_spec("down", x2.shape, kernel="gaussian", stride=2)
    real = {name: getattr(_engine_numpy, name) for name in ("_sum_rows", "_sum_by_weight")}
    nested = []

    def interrupt(name):
        def summing(*args):
            if not nested:  # once, on the calling thread, mid-block
                nested.append(None)
                nested[0] = run_spec(spec2, x2, np.float32)
            return real[name](*args)

        summing.__name__ = name
        return summing

    for name in real:
        monkeypatch.setattr(_engine_numpy, name, interrupt(name))
    got = run_spec(spec, x, np.float32)  # small: runs on this thread
    assert nested
    for name, fn in real.items():
        monkeypatch.setattr(_engine_numpy, name, fn)
    np.testing.assert_array_equal(got, run_spec(spec, x, np.float32))
    assert_matches_reference(spec, x, np.float32)
    np.testing.assert_array_equal(nested[0], run_spec(spec2, x2, np.float32))


def test_results_do_not_depend_on_block_layout(monkeypatch):
    """BLAS products run on whole blocks, so threads and block sizes change no bit."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(21, 150, 151)).astype(np.float32)
    spec = resolve_spec("down", x.shape, kernel=rng.normal(size=(3, 3, 3)), stride=2, padding=1)
    assert _tap_sums(spec, x, np.float32) == {"_sum_rows"}
    want = run_spec(spec, x, np.float32)
    for block_bytes, threads, min_block in [(64, 2, 16), (1 << 16, 1, 1 << 14), (8 << 20, 2, 1)]:
        monkeypatch.setattr(_engine_numpy, "BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(_engine_numpy, "MIN_BLOCK_ELEMENTS", min_block)
        monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_CAP_BYTES", 0)
        monkeypatch.setattr(_engine_numpy, "workers", lambda threads=threads: threads)
        np.testing.assert_array_equal(run_spec(spec, x, np.float32), want)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize(
    "shape, dtype", [((4, 1_100_000), np.float32), ((2, 3000, 3999), np.uint16)]
)
def test_thin_images_stay_within_the_memory_target(shape, dtype, mode, monkeypatch):
    """A short axis makes blocks thin (halo as large as the block) and border
    runs long: the working set still fits, and no long index map is built."""
    map_lengths = []
    mapped = _engine_numpy._mapped

    def recording(*args):
        map_lengths.append(len(mapped(*args)))
        return mapped(*args)

    monkeypatch.setattr(_engine_numpy, "_mapped", recording)
    x = (np.random.default_rng(4).random(shape) * 1000).astype(dtype)
    spec = resolve_spec("down", shape, kernel="gaussian", size=3, stride=2, mode=mode)
    mapped.cache_clear()
    extra, got = _peak_extra_bytes(spec, x)
    assert extra <= 0.25 * x.nbytes
    assert max(map_lengths, default=0) <= 2  # border runs only: the padding is 1
    assert (mode == "zeros") == (not map_lengths)
    assert_matches_reference(spec, x, np.float32)
    assert got.shape == spec.output_shape


@pytest.mark.parametrize(
    "shape, dtype, op",
    [
        ((1322, 1586), np.uint16, "down"),  # 4 MiB
        ((21, 288, 347), np.float32, "down"),  # 8 MiB
        ((27, 360, 432), np.uint16, "up"),  # 8 MiB (29% before the cap counted the halo)
    ],
)
def test_medium_inputs_stay_within_the_memory_target(shape, dtype, op):
    """The cap holds for the real working set (halo, gaps between phases,
    BLAS spare elements), not only for the block size: 3-D up blocks shrink
    to fit it. A first call fills the caches a process makes once (programs,
    Python's free lists: ~30 KiB); then the working buffers are freed and
    counted."""
    rng = np.random.default_rng(5)
    x = (rng.random(shape) * 1000).astype(dtype)
    if op == "down":
        w = rng.normal(size=(3,) * len(shape))  # distinct weights: BLAS products
        spec = resolve_spec("down", shape, kernel=w, stride=2, padding=1)
    else:
        spec = resolve_spec("up", shape, kernel="bilinear", stride=2)
    run_spec(spec, x, np.float32)
    assert _peak_extra_bytes(spec, x)[0] <= 0.25 * x.nbytes


def test_calls_sharing_kept_buffers_match_reference(blocking):
    """Calls of other shapes, dtypes and ops reuse one thread's buffers without mixing them."""
    rng = np.random.default_rng(11)
    cases = [
        ("down", (37, 45), np.float64, dict(kernel=rng.normal(size=(3, 3)), stride=2)),
        ("up", (9, 21, 14), np.float32, dict(kernel=rng.normal(size=(4, 3, 4)), stride=2)),
        ("down", (200, 31), np.float32, dict(kernel="gaussian", stride=(3, 2), mode="reflect")),
        ("down", (37, 45), np.float64, dict(kernel=rng.normal(size=(3, 3)), stride=2)),
    ]
    for op, shape, dtype, params in cases * 2:
        x = rng.normal(size=shape)
        assert_matches_reference(resolve_spec(op, shape, **params), x, dtype)


def test_block_plans_are_kept_for_repeated_calls_and_dropped_with_their_buffers(monkeypatch):
    """A repeated resampling reuses its block plans (same numbers); other weights
    (even -0.0 for 0.0) build their own; a larger call that replaces the
    thread's buffers drops the plans viewing the old ones."""
    built = []
    real = _engine_numpy._BlockPlan

    class Counting(real):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(self)

    monkeypatch.setattr(_engine_numpy, "_BlockPlan", Counting)
    rng = np.random.default_rng(13)
    x = rng.normal(size=(40, 50)).astype(np.float32)  # small: runs on this thread
    w = rng.normal(size=(3, 3))
    w[1, 1] = 0.0
    spec = resolve_spec("down", x.shape, kernel=w, stride=2, padding=1, mode="reflect")
    _engine_numpy.release_buffers()
    first = run_spec(spec, x, np.float32)
    n = len(built)
    assert n > 0
    np.testing.assert_array_equal(run_spec(spec, x, np.float32), first)
    assert len(built) == n  # kept plans, nothing built
    w_neg = w.copy()
    w_neg[1, 1] = -0.0
    run_spec(resolve_spec("down", x.shape, kernel=w_neg, stride=2, padding=1), x, np.float32)
    assert len(built) > n
    kept = _engine_numpy._kept[threading.get_ident()]
    before = {role: buf for role, buf in kept.buffers.items()}
    big = rng.normal(size=(300, 400)).astype(np.float32)
    run_spec(resolve_spec("down", big.shape, kernel=w, stride=2, padding=1), big, np.float32)
    assert any(kept.buffers[role] is not buf for role, buf in before.items())  # grew
    for plan in kept.plans.values():
        assert all(kept.buffers[role] is buf for role, buf in plan.views)
    np.testing.assert_array_equal(run_spec(spec, x, np.float32), first)
    assert_matches_reference(spec, x, np.float32)
    _engine_numpy.release_buffers()
    assert not _engine_numpy._kept


@pytest.fixture
def ran_on(monkeypatch):
    """The thread each block of the engine's calls ran on, in order."""
    threads = []
    real = _engine_numpy._run_block

    def recording(*args):
        threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(_engine_numpy, "_run_block", recording)
    return threads


def test_only_calls_above_the_parallel_size_use_the_thread_pool(monkeypatch, ran_on):
    """Small calls run on the calling thread (GIL hand-overs would cost more
    than a second thread gains); larger ones spread their blocks over the pool."""
    x = np.random.default_rng(14).random((96, 80), dtype=np.float32)
    spec = resolve_spec("down", x.shape, kernel="gaussian", size=3, stride=2, padding=1)
    size = x.nbytes + int(np.prod(spec.output_shape)) * 4
    monkeypatch.setattr(_engine_numpy, "BLOCK_BYTES", 64)
    monkeypatch.setattr(_engine_numpy, "MIN_BLOCK_ELEMENTS", 16)
    monkeypatch.setattr(_engine_numpy, "workers", lambda: 2)
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_CAP_BYTES", 0)
    want = run_spec_reference(spec, x, np.float32)
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_BYTES", size)
    np.testing.assert_allclose(run_spec(spec, x, np.float32), want, rtol=1e-6)
    assert len(ran_on) > 1 and set(ran_on) == {threading.get_ident()}
    ran_on.clear()
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_BYTES", size - 1)
    np.testing.assert_allclose(run_spec(spec, x, np.float32), want, rtol=1e-6)
    assert threading.get_ident() not in ran_on  # every block on a pool thread


def test_up_calls_of_small_inputs_run_on_one_thread(monkeypatch, ran_on):
    """Threads need room in the memory cap: an up call of a small input with
    a large output stays on the calling thread; a larger input gets two."""
    monkeypatch.setattr(_engine_numpy, "workers", lambda: 2)
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_BYTES", 0)
    small = np.ones((8, 96, 96), np.float32)  # 288 KiB: 58 KiB of cap
    spec = resolve_spec("up", small.shape, kernel="bilinear", stride=2)
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_CAP_BYTES", 64 << 10)
    run_spec(spec, small, np.float32)
    assert set(ran_on) == {threading.get_ident()}
    ran_on.clear()
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_CAP_BYTES", 16 << 10)  # room for 2
    run_spec(spec, small, np.float32)
    assert threading.get_ident() not in ran_on


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_thread_pool_works_in_a_forked_child(monkeypatch):
    """A child forked after the pool started must not wait on the parent's threads."""
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_CAP_BYTES", 0)
    monkeypatch.setattr(_engine_numpy, "BLOCK_BYTES", 256)
    spec = resolve_spec("down", (40, 40), kernel="gaussian", size=3, stride=2)
    x = np.arange(1600, dtype=np.float32).reshape(40, 40)
    want = run_spec(spec, x, np.float32)  # starts the pool in the parent
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(run_spec, (spec, x, np.float32)).get(timeout=60)
    np.testing.assert_array_equal(got, want)


@st.composite
def _cases(draw):
    n = draw(st.integers(1, 3))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    hi = 12 if n < 3 else 7
    shape = lead + tuple(draw(st.lists(st.integers(1, hi), min_size=n, max_size=n)))
    op = draw(st.sampled_from(["down", "up"]))
    k = tuple(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)))
    s = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    d = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    pad = tuple(
        draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=n, max_size=n))
    )
    mode = draw(st.sampled_from(MODES)) if op == "down" else "zeros"
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    in_dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int16]))
    seed = draw(st.integers(0, 2**32 - 1))
    tiny = draw(st.booleans())
    return shape, op, k, s, d, pad, mode, dtype, in_dtype, seed, tiny


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_hypothesis_matches_reference(case):
    shape, op, k, s, d, pad, mode, dtype, in_dtype, seed, tiny = case
    rng = np.random.default_rng(seed)
    w = rng.normal(size=k)
    try:
        if op == "down":
            spec = resolve_spec(
                "down", shape, kernel=w, stride=s, dilation=d, padding=pad, mode=mode
            )
        else:
            spec = resolve_spec("up", shape, kernel=w, stride=s, dilation=d, padding=pad)
    except ValueError:
        return
    x = (rng.normal(size=shape) * 20).astype(in_dtype)
    names = ("BLOCK_BYTES", "PARALLEL_MIN_BYTES", "PARALLEL_MIN_CAP_BYTES")
    old = [getattr(_engine_numpy, name) for name in names]
    if tiny:  # tiny blocks on the thread pool
        for name, value in zip(names, (32, 0, 0)):
            setattr(_engine_numpy, name, value)
    try:
        assert_matches_reference(spec, x, dtype)
    finally:
        for name, value in zip(names, old):
            setattr(_engine_numpy, name, value)


@pytest.mark.parametrize("op", ["down", "up"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_shared_weights_are_summed_first_and_match_reference(op, n, blocking):
    """Kernels with repeated weights (presets, box, few distinct values, zeros)."""
    rng = np.random.default_rng(300 + n)
    shape = (2,) + (9,) * n if n < 3 else (2, 7, 8, 9)
    axes = tuple(range(1, n + 1))
    kernels = [
        ("gaussian", {"size": 3}),
        ("binomial", {"size": 5}),
        ("box", {"size": 2}),
        (rng.integers(-2, 3, size=(3,) * n) / 4.0, {}),  # few values, zeros, signs
    ]
    for kernel, extra in kernels:
        for mode in MODES if op == "down" else ["zeros"]:
            kwargs = dict(kernel=kernel, stride=2, axes=axes, **extra)
            if op == "down":
                spec = resolve_spec("down", shape, padding="same", mode=mode, **kwargs)
            else:
                spec = resolve_spec("up", shape, padding=1, **kwargs)
            for dtype in (np.float32, np.float64):
                x = rng.normal(size=shape) * 30
                assert_matches_reference(spec, x.astype(dtype), dtype)


def test_block_budget_follows_the_last_level_cache(tmp_path, monkeypatch):
    """Blocks are sized to the largest cache the threads share (sysfs)."""
    for index, (size, cpus) in enumerate([("32K", "0"), ("512K", "0"), ("8192K", "0-1")]):
        entry = tmp_path / f"index{index}"
        entry.mkdir()
        (entry / "size").write_text(size + "\n")
        (entry / "shared_cpu_list").write_text(cpus + "\n")
    assert _engine_numpy.last_level_cache(str(tmp_path)) == (8 << 20, 2)
    assert _engine_numpy.last_level_cache(str(tmp_path / "missing")) is None
    assert _engine_numpy._cpu_count("0-7,64-71") == 16

    mib = 1 << 20
    monkeypatch.setattr(_engine_numpy, "last_level_cache", lambda: (8 * mib, 2))
    assert _engine_numpy.block_budget(2) == 2 * mib  # half the cache, shared by two
    assert _engine_numpy.block_budget(1) == _engine_numpy.BLOCK_BYTES == 4 * mib
    monkeypatch.setattr(_engine_numpy, "last_level_cache", lambda: (32 * mib, 64))
    assert _engine_numpy.block_budget(64) == _engine_numpy.MIN_CACHE_BLOCK_BYTES
    monkeypatch.setattr(_engine_numpy, "last_level_cache", lambda: None)
    assert _engine_numpy.block_budget(2) == _engine_numpy.BLOCK_BYTES


def test_blocks_sized_for_a_small_cache_give_the_same_numbers(monkeypatch, ran_on):
    rng = np.random.default_rng(8)
    x = rng.random((600, 700), dtype=np.float32)
    spec = resolve_spec("down", x.shape, kernel=rng.random((3, 3)), stride=2, dilation=2)
    want = run_spec(spec, x, np.float32)
    monkeypatch.setattr(_engine_numpy, "MIN_CACHE_BLOCK_BYTES", 1 << 16)
    counts = []
    for cache in (64 << 20, 256 << 10):
        ran_on.clear()
        monkeypatch.setattr(_engine_numpy, "last_level_cache", lambda cache=cache: (cache, 1))
        np.testing.assert_array_equal(run_spec(spec, x, np.float32), want)
        counts.append(len(ran_on))
    assert counts[1] > counts[0]  # the small cache made more, smaller blocks


@pytest.mark.timeout(60)
def test_tiny_block_floors_do_not_stall_the_block_search(monkeypatch):
    """With a floor of a few points the log-scale bisection's midpoint rounds to
    an end; the search stops there instead of looping."""
    monkeypatch.setattr(_engine_numpy, "BLOCK_BYTES", 256)
    monkeypatch.setattr(_engine_numpy, "MIN_BLOCK_ELEMENTS", 4)
    monkeypatch.setattr(_engine_numpy, "PARALLEL_MIN_BYTES", 0)
    x = np.random.default_rng(0).integers(0, 100, size=(6, 3, 5, 6)).astype(np.uint16)
    spec = resolve_spec(
        "up", x.shape, kernel="box", size=(4, 2), stride=(3, 1), axes=(1, 3), padding=0
    )
    assert_matches_reference(spec, x, np.float32)


def _up_programs_by_walking_every_tap(spec):
    """Each phase's taps found by testing every tap of the kernel (the plain
    definition; O(prod(stride) * kernel size))."""
    s, d, lo = spec.stride, spec.dilation, spec.pad_lo
    n = len(spec.axes)
    out_len = [spec.output_shape[a] for a in spec.axes]
    out = []
    for phi in np.ndindex(*s):
        if 0 in tuple(len(range(f, L, ss)) for f, L, ss in zip(phi, out_len, s)):
            continue
        taps = []
        for t in np.ndindex(spec.weights.shape):
            num = [f + p - dd * tt for f, p, dd, tt in zip(phi, lo, d, t)]
            if all(v % ss == 0 for v, ss in zip(num, s)):
                taps.append((spec.weights[t], (0,) * n, tuple(v // ss for v, ss in zip(num, s))))
        out.append((phi, tuple(taps)))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_up_phase_taps_are_the_plain_definition_in_its_order(seed):
    """Per-axis tap lists (fast for large strides: 8x8 up by 64 took 298 s)
    give every phase the same taps in the same order: the same sums."""
    rng = np.random.default_rng(seed)
    spec = None
    while spec is None:  # a random setting that leaves an output
        n = int(rng.integers(1, 4))
        try:
            spec = resolve_spec(
                "up",
                tuple(int(v) for v in rng.integers(2, 6, n)),
                kernel=rng.random(tuple(int(v) for v in rng.integers(1, 7, n))),
                stride=tuple(int(v) for v in rng.integers(1, 6, n)),
                dilation=tuple(int(v) for v in rng.integers(1, 4, n)),
                padding=tuple(int(v) for v in rng.integers(0, 3, n)),
            )
        except ValueError:
            continue
    got = [(p.phase, p.taps) for p in _engine_numpy._up_programs(spec)]
    want = _up_programs_by_walking_every_tap(spec)
    assert [phi for phi, _ in got] == [phi for phi, _ in want]
    for (_, a), (_, b) in zip(got, want):
        assert [(float(w), z, o) for w, z, o in a] == [(float(w), z, o) for w, z, o in b]
