"""Peak extra memory of down and up calls over input sizes (issue 5).

Run from the repository root::

    python benchmarks/memory_sweep.py                 # 0.5 to 64 MiB
    python benchmarks/memory_sweep.py --sizes 1 4 16  # chosen sizes (MiB)
    python benchmarks/memory_sweep.py --time          # and the median time per call

For 2-D and 3-D images, uint16 and float32, of each size, measures the peak
bytes allocated beyond the output (``tracemalloc``, as
:func:`run_benchmarks.peak_extra` does: the engine's kept working buffers are
freed first, so each call is measured as a first call) of

* ``dilated_downsample(x, w, stride=2, padding=1, mode="zeros")`` with a
  random 3x3 (3x3x3) kernel, and
* ``transpose_upsample(x, "bilinear", stride=2)``,

and prints a table with the extra memory as a fraction of the input (the
issue's target: at most 25%). 2-D images are about 5:6 (like 900 x 1100);
3-D stacks have about ``cbrt(pixels) / 6`` planes (11 at 0.5 MiB uint16, 54
at 64 MiB). ``--time`` adds the median of ``--repeat`` calls in steady state
(buffers kept from the call before).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_benchmarks import peak_extra  # noqa: E402  (also puts src/ on the path)

from napari_conv_resample import dilated_downsample, transpose_upsample  # noqa: E402

SIZES_MIB = (0.5, 1, 2, 4, 8, 16, 32, 64)


def image_shape(nbytes, itemsize, ndim):
    """A 2-D (about 5:6) or 3-D (about ``cbrt(pixels) / 6`` planes) shape of ``nbytes``."""
    pixels = nbytes / itemsize
    planes = 1
    if ndim == 3:
        planes = max(3, round(pixels ** (1 / 3) / 6))
    rows = max(4, round((pixels / planes / 1.2) ** 0.5))
    cols = max(4, round(pixels / planes / rows))
    return (planes, rows, cols) if ndim == 3 else (rows, cols)


def cases(sizes, rng):
    """``(operator, image, call)`` for every size, rank, dtype and operator."""
    for mib in sizes:
        for ndim in (2, 3):
            w = rng.random((3,) * ndim)
            for dtype in (np.uint16, np.float32):
                shape = image_shape(mib * 2**20, np.dtype(dtype).itemsize, ndim)
                x = (rng.random(shape, dtype=np.float32) * 4000).astype(dtype)
                yield (
                    "down",
                    x,
                    lambda a, w=w: dilated_downsample(a, w, stride=2, padding=1, mode="zeros"),
                )
                yield "up", x, lambda a: transpose_upsample(a, "bilinear", stride=2)


def median_ms(fn, x, repeat):
    """Median time of ``fn(x)`` in ms over ``repeat`` calls after one untimed call."""
    fn(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=SIZES_MIB, help="input MiB")
    ap.add_argument("--time", action="store_true", help="also the median time per call")
    ap.add_argument("--repeat", type=int, default=7, help="timed calls per case (median)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    # One small call of each kind first, so no case counts lazy imports and caches.
    tiny = np.ones((16, 16), np.float32)
    dilated_downsample(tiny, rng.random((3, 3)), stride=2, padding=1)
    transpose_upsample(tiny, "bilinear", stride=2)

    head = "| call | shape | dtype | input MiB | extra MiB | extra / input |"
    rule = "|---|---|---|---:|---:|---:|"
    if args.time:
        head, rule = head + " ms |", rule + "---:|"
    print("Peak extra memory beyond the output (target <= 25% of the input):")
    print(head)
    print(rule)
    worst = 0.0
    for op, x, fn in cases(args.sizes, rng):
        extra = peak_extra(fn, x)
        frac = extra / x.nbytes
        worst = max(worst, frac)
        shape = "x".join(map(str, x.shape))
        cells = [op, shape, x.dtype.name, f"{x.nbytes / 2**20:.2f}"]
        cells += [f"{extra / 2**20:.3f}", f"{frac:.1%}"]
        if args.time:
            cells.append(f"{median_ms(fn, x, args.repeat):.2f}")
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nLargest extra / input: {worst:.1%}")


if __name__ == "__main__":
    main()
