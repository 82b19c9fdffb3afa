"""Times the CuPy kernel's compile-time variants on a GPU (not a test).

Run from the repository root on a machine with CuPy and a CUDA device::

    python benchmarks/gpu_kernel_variants.py

Prints the device's write-only and read-only bandwidth (``fill`` and ``sum``
of 4 GiB), the first-call compile time of a new geometry, and for a few
large cases the median time and ``(input + output bytes) / time`` of each
variant (named by :func:`tag`), after checking that every variant's output
equals the one-output-per-thread kernel's bit for bit; then, for the
fastest variant, both bandwidths the benchmark reports as fractions of the
device's theoretical peak (issue 5's target: 70%). This is how the
defaults in ``_engine_cupy`` were chosen.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from run_benchmarks import (  # noqa: E402  (this script's folder)
    _bytes_needed,
    _gpu_peak_bandwidth,
    cupy_with_device,
    gpu_median_ms,
)

from napari_conv_resample import _engine_cupy  # noqa: E402
from napari_conv_resample.geometry import resolve_spec  # noqa: E402


def gpu_ms(cp, fn, batch=10):
    """Median GPU milliseconds per call, ``batch`` prepared launches queued between events."""
    return gpu_median_ms(cp, fn, batch=batch)


def variant(
    per_thread,
    vector_stores=True,
    outer_fast=True,
    threads_per_block=128,
    vector_loads=False,
    outer_block=0,
):
    return dict(
        per_thread=per_thread,
        vector_stores=vector_stores,
        outer_fast=outer_fast,
        threads_per_block=threads_per_block,
        vector_loads=vector_loads,
        outer_block=outer_block,
    )


def tag(var):
    """Short name of a variant: v<outputs per thread>, w vector stores, o outer axis
    first, l vector loads, b<outer block>, /threads per block."""
    return (
        f"v{var['per_thread']}{'w' if var['vector_stores'] else ''}"
        f"{'o' if var['outer_fast'] else ''}{'l' if var['vector_loads'] else ''}"
        f"{'b' + str(var['outer_block']) if var['outer_block'] else ''}"
        f"/{var['threads_per_block']}"
    )


#: Variants timed per case; the first one is the current default. Earlier
#: sweeps (README): 1-4 outputs per thread, vector stores, traversal, 128-512
#: threads per block.
DOWN_VARIANTS = [
    variant(2),
    variant(3),
    variant(2, vector_loads=True),
    variant(2, vector_loads=True, outer_block=1),
    variant(2, vector_loads=True, outer_block=2),
    variant(4, vector_loads=True, outer_block=2),
]
UP_VARIANTS = [
    variant(4),
    variant(4, vector_loads=True),
    variant(4, outer_block=1),
    variant(4, vector_loads=True, outer_block=1),
    variant(2, vector_loads=True, outer_block=1),
    variant(4, vector_loads=True, outer_block=2),
]
#: (shape, op, kernel size, dilation, variants)
CASES = [
    ((8192, 8192), "down", 3, 1, DOWN_VARIANTS),
    ((8192, 8192), "down", 3, 2, DOWN_VARIANTS),
    ((256, 2048, 2048), "down", 3, 1, DOWN_VARIANTS),
    ((256, 2048, 2048), "down", 3, 2, DOWN_VARIANTS),
    ((4096, 4096), "up", 4, 1, UP_VARIANTS),
    ((128, 1024, 1024), "up", 4, 1, UP_VARIANTS[:5]),  # 2 quotients: 128 sums per thread
]


def main():
    try:
        cp = cupy_with_device()
    except Exception as exc:  # driver, device or CuPy missing
        print(f"GPU kernel variants skipped: {exc}")
        return

    peak, source = _gpu_peak_bandwidth(cp)
    if peak:
        print(f"theoretical peak ({source}): {peak / 1e9:.0f} GB/s")
    big = cp.empty(1 << 30, dtype=cp.float32)
    t = gpu_ms(cp, lambda a=big: a.fill(0), batch=3)
    print(f"write-only (fill 4 GiB float32): {big.nbytes / t / 1e6:.0f} GB/s")
    t = gpu_ms(cp, lambda a=big: a.sum(), batch=3)
    print(f"read-only (sum 4 GiB float32): {big.nbytes / t / 1e6:.0f} GB/s")
    big = None
    cp.get_default_memory_pool().free_all_blocks()

    t0 = time.perf_counter()
    spec = resolve_spec(
        "down",
        (64, 64),
        kernel=np.random.default_rng(0).random((5, 5)),
        stride=3,
        dilation=2,
        mode="reflect",
    )
    _engine_cupy.run(spec, cp.ones((64, 64), cp.float32), np.float32)
    cp.cuda.Device().synchronize()
    print(f"first call of a new geometry (NVRTC compile): {time.perf_counter() - t0:.3f} s")

    rng = cp.random.default_rng(0)
    for shape, op, k, d, variants in CASES:
        x = rng.random(shape, dtype=cp.float32)
        w = np.random.default_rng(k).random((k,) * len(shape))
        kw = dict(padding=d, mode="zeros", dilation=d) if op == "down" else dict(padding=1)
        spec = resolve_spec(op, shape, kernel=w, stride=2, **kw)
        plain = dict(per_thread=1, vector_stores=False, outer_fast=False)
        y = _engine_cupy.run(spec, x, np.float32, **plain)
        cells, times = [], []
        for var in variants:
            z = _engine_cupy.run(spec, x, np.float32, **var)
            assert bool(cp.array_equal(z, y)), (op, shape, var)
            launch, _out = _engine_cupy.prepared_launch(spec, x, np.float32, **var)
            t = gpu_ms(cp, launch)
            cells.append(f"{tag(var)} {t:.3f} ms {(x.nbytes + y.nbytes) / t / 1e6:.0f} GB/s")
            times.append(t)
        best = variants[times.index(min(times))]
        print(f"{op} {'x'.join(map(str, shape))} d{d}: " + " | ".join(cells), flush=True)
        line = f"  fastest: {tag(best)}, {times[0] / min(times):.2f}x the default"
        if peak:
            # As the benchmark reports them: every byte in and out, and the
            # bytes a kernel must move (rows no tap reads are never fetched).
            moved = (x.nbytes + y.nbytes) / (min(times) / 1e3) / peak
            needed = _bytes_needed(spec, x, y) / (min(times) / 1e3) / peak
            line += f"; (in+out)/t {moved:.0%} of peak, needed/t {needed:.0%} (target 70%)"
        print(line, flush=True)
        x = y = z = None
        cp.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
