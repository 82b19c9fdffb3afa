"""Speed and memory of napari-conv-resample against its peers (issue 5).

Run from the repository root::

    python benchmarks/run_benchmarks.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/run_benchmarks.py --quick    # small sizes, a smoke run

Prints, per case, the median time of this project and of every peer that is
installed (PyTorch CPU, NumPy ``copy``, SciPy ``ndimage.correlate``,
scikit-image pyramids; CuPy / PyTorch CUDA on a GPU), the ratio
``peer / ours`` (> 1: we are faster) and the issue's target; absent peers
are skipped with a note. Then the peak extra memory of a down and an up call
beyond their output (``tracemalloc``; NumPy reports its buffers to it) as a
fraction of the input. Every peer's result is checked against ours first.
Times are medians of ``--repeat`` runs, default threads; each timed call
follows 50 ms of untimed calls of the same function (steady state), and
ours and the peers of a case are timed in interleaved rounds (ours, peer 1,
peer 2, ours, ...), so load from other processes on a shared machine slows
all of them alike and the ratios stay fair.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_conv_resample import _engine_numpy, dilated_downsample, transpose_upsample  # noqa: E402
from napari_conv_resample.kernels import make_kernel  # noqa: E402
from napari_conv_resample.masks import coverage_map  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - optional peer
    torch = None
try:
    import scipy.ndimage as ndi
except ImportError:  # pragma: no cover
    ndi = None
try:
    from skimage.transform import pyramid_expand, pyramid_reduce
except ImportError:  # pragma: no cover
    pyramid_reduce = pyramid_expand = None

ROWS = []
#: ``--quick`` sizes are too small for the issue's targets (fixed per-call
#: costs dominate): their rows show the ratios but no verdict.
QUICK = False


#: Before each timed call, the same function runs untimed for at least this long.
WARM_S = 0.05


def medians_ms(fns, repeat):
    """Median ms of each callable in ``fns``, timed in interleaved rounds.

    Each timed call directly follows at least :data:`WARM_S` of untimed calls
    of the same function, so every library is measured in its steady state:
    on this kind of VM an idle core runs slower for a few tens of ms after it
    wakes (a call right after a long single-threaded peer took 21 ms instead
    of 13), and PyTorch's OpenMP threads keep spinning after a call returns,
    which would otherwise tax whichever function runs next.
    """
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()  # warm calls: thread pools and cores awake, caches and pages in use
            while time.perf_counter() - t0 < WARM_S:
                fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}


def report(case, ours_ms, peer, peer_ms, target=None, faster=True):
    """Add a row; ``faster``: target ``peer/ours >= target``, else ``ours/peer <= target``."""
    if peer_ms is None:
        ROWS.append((case, ours_ms, peer, None, None, target, "skipped: not installed"))
        return
    ratio = peer_ms / ours_ms
    if target is None:
        verdict = ""
    elif QUICK:
        verdict = "(full sizes only)"
    elif faster:
        verdict = "met" if ratio >= target else "NOT met"
    else:
        verdict = "met" if ours_ms / peer_ms <= target else "NOT met"
    tgt = (
        "" if target is None else (f">= {target}x faster" if faster else f"<= {target}x its time")
    )
    ROWS.append((case, ours_ms, peer, peer_ms, ratio, tgt, verdict))


def check_close(name, ours, theirs, rtol=1e-4):
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = max(1.0, float(np.abs(theirs).max()))
    err = float(np.abs(np.asarray(ours, dtype=np.float64) - theirs).max()) / scale
    if err > rtol:
        raise AssertionError(f"{name}: results differ from ours by {err:.3g} (relative)")


def bench_down_2d(n, repeat, rng):
    x = rng.random((n, n), dtype=np.float32)
    w = rng.random((3, 3))
    case = f"down {n}x{n} f32, 3x3, s2 d2 p2"

    def ours():
        return dilated_downsample(x, w, stride=2, dilation=2, padding=2, mode="zeros")

    y = ours()
    fns = {"ours": ours, "np.copy": x.copy}
    if torch is not None:
        tx = torch.from_numpy(x)[None, None]
        tw = torch.from_numpy(w.astype(np.float32))[None, None]

        def conv():
            return F.conv2d(tx, tw, stride=2, dilation=2, padding=2)

        check_close("torch conv2d", y, conv()[0, 0].numpy())
        fns["torch conv2d"] = conv
    if ndi is not None:
        stuffed = np.zeros((5, 5), np.float32)
        stuffed[::2, ::2] = w

        def correlate():
            return ndi.correlate(x, stuffed, mode="constant")[::2, ::2]

        check_close("scipy correlate", y, correlate())
        fns["scipy correlate+slice"] = correlate
    ms = medians_ms(fns, repeat)
    t = ms["ours"]
    report(case, t, "np.copy", ms["np.copy"], 3, faster=False)
    report(case, t, "torch conv2d", ms.get("torch conv2d"), 5)
    report(case, t, "scipy correlate+slice", ms.get("scipy correlate+slice"), 5)


def bench_up_2d(n, repeat, rng):
    x = rng.random((n, n), dtype=np.float32)
    w = rng.random((4, 4))
    case = f"up {n}x{n} -> {2 * n}x{2 * n} f32, 4x4, s2 p1"

    def ours():
        return transpose_upsample(x, w, stride=2, padding=1)

    y = ours()
    fns = {"ours": ours, "np.copy": y.copy}
    if torch is not None:
        tx = torch.from_numpy(x)[None, None]
        tw = torch.from_numpy(w.astype(np.float32))[None, None]

        def conv():
            return F.conv_transpose2d(tx, tw, stride=2, padding=1)

        check_close("torch conv_transpose2d", y, conv()[0, 0].numpy())
        fns["torch"] = conv
    ms = medians_ms(fns, repeat)
    t = ms["ours"]
    report(case, t, "torch conv_transpose2d", ms.get("torch"), 3)
    report(case, t, "np.copy (of output size)", ms["np.copy"])


def bench_down_3d(shape, repeat, rng):
    x = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    w = rng.random((3, 3, 3))
    case = "down {}x{}x{} u16->f32, 3x3x3, s2 p1".format(*shape)

    def ours():
        return dilated_downsample(x, w, stride=2, padding=1, mode="zeros")

    y = ours()
    fns = {"ours": ours}
    if torch is not None:
        tw = torch.from_numpy(w.astype(np.float32))[None, None]

        def conv():
            tx = torch.from_numpy(x).to(torch.float32)[None, None]
            return F.conv3d(tx, tw, stride=2, padding=1)

        check_close("torch conv3d", y, conv()[0, 0].numpy())
        fns["torch"] = conv
    ms = medians_ms(fns, repeat)
    report(case, ms["ours"], "torch conv3d (+ float conversion)", ms.get("torch"), 4)
    if torch is not None:
        # For information (no target): a symmetric kernel, whose taps sharing
        # a weight are summed before one multiply (5 distinct weights, not 27).
        g = make_kernel("gaussian", 3, ndim=3)
        tg = torch.from_numpy(g.astype(np.float32))[None, None]

        def ours_g():
            return dilated_downsample(x, g, stride=2, padding=1, mode="zeros")

        def conv_g():
            tx = torch.from_numpy(x).to(torch.float32)[None, None]
            return F.conv3d(tx, tg, stride=2, padding=1)

        check_close("torch conv3d (gaussian)", ours_g(), conv_g()[0, 0].numpy())
        ms = medians_ms({"ours": ours_g, "torch": conv_g}, repeat)
        case_g = case.replace("3x3x3", "3x3x3 gaussian")
        report(case_g, ms["ours"], "torch conv3d (+ float conversion)", ms["torch"])


def bench_pyramid(shape, repeat, rng):
    x = rng.random(shape, dtype=np.float32)
    dims = "x".join(str(v) for v in shape)
    if pyramid_reduce is None:
        report(f"gaussian pyramid down {dims}", float("nan"), "skimage pyramid_reduce", None)
        return
    down = dilated_downsample(x)  # gaussian, size 3, stride 2, 'same', reflect
    assert down.shape == pyramid_reduce(x, 2).shape
    ms = medians_ms(
        {"ours": lambda: dilated_downsample(x), "skimage": lambda: pyramid_reduce(x, 2)},
        max(3, repeat // 2),
    )
    report(
        f"gaussian pyramid down {dims} f32",
        ms["ours"],
        "skimage pyramid_reduce",
        ms["skimage"],
        10,
    )
    small = down

    # A gaussian step up too (the default up kernel is bilinear): natural size,
    # sigma 2*2/6 like skimage, normalised per phase.
    def up():
        return transpose_upsample(small, "gaussian")

    assert up().shape == pyramid_expand(small, 2).shape
    ms = medians_ms(
        {"ours": up, "skimage": lambda: pyramid_expand(small, 2)},
        max(3, repeat // 2),
    )
    report(
        f"gaussian pyramid up {'x'.join(str(v) for v in small.shape)} f32",
        ms["ours"],
        "skimage pyramid_expand",
        ms["skimage"],
        10,
    )


def peak_extra(fn, x):
    """Peak bytes allocated during ``fn(x)`` beyond its output.

    The engine's working buffers kept from earlier calls are freed first, so
    they are counted.
    """
    _engine_numpy.release_buffers()
    tracemalloc.start()
    try:
        out = fn(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - out.nbytes


def memory_rows(n, shape3, rng):
    rows = []
    x = rng.random((n, n), dtype=np.float32)
    w = rng.random((3, 3))
    cases = [
        (
            f"down {n}x{n} f32 3x3 s2 d2",
            x,
            lambda a: dilated_downsample(a, w, stride=2, dilation=2, padding=2, mode="zeros"),
        ),
        (
            f"up {n // 2}x{n // 2} f32 4x4 s2 p1",
            x[: n // 2, : n // 2].copy(),
            lambda a: transpose_upsample(a, rng.random((4, 4)), stride=2, padding=1),
        ),
        (
            "down {}x{}x{} u16->f32 3x3x3 s2 p1".format(*shape3),
            rng.integers(0, 4096, size=shape3, dtype=np.uint16),
            lambda a: dilated_downsample(a, rng.random((3, 3, 3)), stride=2, padding=1),
        ),
    ]
    for name, inp, fn in cases:
        extra = peak_extra(fn, inp)
        rows.append((name, inp.nbytes, extra, extra / inp.nbytes))
    return rows


def _gpu_peak_bandwidth(cp):
    """Theoretical peak memory bandwidth of device 0 (bytes/s) and where it came from."""
    props = cp.cuda.runtime.getDeviceProperties(0)
    clock_khz, bus_bits = props.get("memoryClockRate", 0), props.get("memoryBusWidth", 0)
    source = "device properties"
    if not clock_khz:  # CUDA 13 dropped memoryClockRate from the properties
        try:
            clock_khz = cp.cuda.runtime.deviceGetAttribute(36, 0)  # cudaDevAttrMemoryClockRate
            bus_bits = bus_bits or cp.cuda.runtime.deviceGetAttribute(37, 0)
            source = "device attributes"
        except Exception:  # pragma: no cover - driver without the attribute
            clock_khz = 0
    if not clock_khz:
        import subprocess

        try:
            mhz = subprocess.run(
                ["nvidia-smi", "--query-gpu=clocks.max.memory", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[0]
            clock_khz, source = float(mhz) * 1e3, "nvidia-smi max memory clock"
        except Exception:
            return None, "unknown"
    # Double data rate: two transfers per memory clock, bus width in bits.
    return 2 * clock_khz * 1e3 * bus_bits / 8, source


def gpu_median_ms(cp, fn, batch=1, repeat=7):
    """Median GPU milliseconds per call of ``fn``, ``batch`` calls queued between events.

    Two untimed calls first (compilation, allocation); CUDA events time the
    device, so queued calls measure the kernels when Python keeps ahead.
    """
    for _ in range(2):
        fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeat):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(batch):
            fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / batch)
    return statistics.median(times)


def _bytes_needed(spec, x, y):
    """Bytes a kernel must move: the input rows any tap reads, and the output.

    Along the last (contiguous) axis every 32-byte sector holds a read pixel;
    along the other spatial axes a dilated, strided kernel can skip whole
    rows (stride 2, dilation 2 reads only even rows), which DRAM never sends.
    """
    frac = 1.0
    if spec.op == "down":
        for pos, a in enumerate(spec.axes[:-1]):
            read = coverage_map(
                (spec.input_shape[a],),
                size=spec.size[pos],
                stride=spec.stride[pos],
                dilation=spec.dilation[pos],
                padding=(spec.padding[pos],),
                mode=spec.mode,
            )
            frac *= float(np.mean(read > 0))
    return x.nbytes * frac + y.nbytes


def cupy_with_device():
    """The ``cupy`` module where it is installed and sees a CUDA device; else raises why not."""
    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 1:
        raise RuntimeError("no CUDA device")
    return cupy


def bench_gpu(repeat, quick):
    """The fused CuPy kernel against cupyx.scipy.ndimage and PyTorch CUDA (float32)."""
    try:
        cp = cupy_with_device()
        import cupyx.scipy.ndimage as cndi
    except Exception as exc:
        print(f"\nGPU cases skipped: {exc}")
        return
    from napari_conv_resample import _engine_cupy
    from napari_conv_resample.geometry import resolve_spec

    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    peak_bw, source = _gpu_peak_bandwidth(cp)
    tc = torch is not None and torch.cuda.is_available()
    if tc:
        # Exact float32 for the comparison (cuDNN would use TF32 by default).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    print(
        f"\nGPU: {name}; CuPy {cp.__version__}"
        + (f", PyTorch {torch.__version__} CUDA (TF32 off)" if tc else ", no PyTorch CUDA")
        + (f"; theoretical peak bandwidth {peak_bw / 1e9:.0f} GB/s ({source})" if peak_bw else "")
    )

    def gpu_ms(fn, batch=1):
        return gpu_median_ms(cp, fn, batch=batch, repeat=repeat)

    copy_src = cp.empty(1 << 30 if not quick else 1 << 26, dtype=cp.uint8)
    copy_dst = cp.empty_like(copy_src)
    t_copy = gpu_ms(lambda a=copy_dst, b=copy_src: cp.copyto(a, b), batch=5)
    copy_bw = 2 * copy_src.nbytes / (t_copy / 1e3)
    line = f"device-to-device copy: {copy_bw / 1e9:.0f} GB/s (read + write)"
    print(line + (f", {copy_bw / peak_bw:.0%} of peak" if peak_bw else ""))
    del copy_src, copy_dst

    rng = cp.random.default_rng(0)
    n = 2048 if quick else 8192
    stack = (32, 512, 512) if quick else (256, 2048, 2048)
    rows = []
    for shape in ((n, n), tuple(stack)):
        nd = len(shape)
        label = "x".join(map(str, shape))
        x = rng.random(shape, dtype=cp.float32)
        w3 = np.random.default_rng(nd).random((3,) * nd)
        w4 = np.random.default_rng(nd + 10).random((4,) * nd)
        for d in (1, 2):
            spec = resolve_spec(
                "down", shape, kernel=w3, stride=2, dilation=d, padding=d, mode="zeros"
            )
            y = _engine_cupy.run(spec, x, np.float32)
            case = f"down {label} 3^{nd} s2 d{d} p{d}"
            rows += _gpu_case(
                case, x, y, spec, w3, gpu_ms, peak_bw, cndi, tc, cp, dict(stride=2, dilation=d)
            )
            del y
        small = tuple(v // 2 for v in shape)
        xs = rng.random(small, dtype=cp.float32)
        spec = resolve_spec("up", small, kernel=w4, stride=2, padding=1)
        y = _engine_cupy.run(spec, xs, np.float32)
        case = f"up {'x'.join(map(str, small))} -> {label} 4^{nd} s2 p1"
        rows += _gpu_case(case, xs, y, spec, w4, gpu_ms, peak_bw, cndi, tc, cp, dict(stride=2))
        del x, xs, y
        cp.get_default_memory_pool().free_all_blocks()
    print(
        "\n| case | implementation | median ms | ours faster | (in+out)/t GB/s | "
        "needed bytes/t GB/s | needed / peak |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for case, impl, t, ratio, bw_all, bw_need in rows:
        frac = f"{bw_need / peak_bw:.0%}" if (bw_need and peak_bw) else ""
        cells = [
            case,
            impl,
            f"{t:.3f}",
            "" if ratio is None else f"{ratio:.1f}x",
            "" if bw_all is None else f"{bw_all / 1e9:.0f}",
            "" if bw_need is None else f"{bw_need / 1e9:.0f}",
            frac,
        ]
        print("| " + " | ".join(cells) + " |")


def _gpu_case(case, x, y, spec, w, gpu_ms, peak_bw, cndi, tc, cp, conv_kw):
    """Rows of one GPU case: ours (public call, kernel alone) and the peers present."""
    from napari_conv_resample import _engine_cupy

    nd = x.ndim
    pad = spec.pad_lo[0]
    func = dilated_downsample if spec.op == "down" else transpose_upsample
    kw = dict(conv_kw, padding=pad, **({"mode": "zeros"} if spec.op == "down" else {}))
    got = func(x, w, **kw)
    assert bool(cp.array_equal(got, y)), "public call differs from the engine"
    t_call = gpu_ms(lambda: func(x, w, **kw))
    # The kernel alone: prepared launches queued back to back, so Python's
    # per-call work (checks, spec, allocation: ~0.1 ms) does not starve the GPU.
    launch, out = _engine_cupy.prepared_launch(spec, x, np.float32)
    launch()
    assert bool(cp.array_equal(out, y)), "prepared launch differs from the engine"
    t_kernel = gpu_ms(launch, batch=10)
    need = _bytes_needed(spec, x, y)
    rows = [
        (case, "ours (public call)", t_call, None, (x.nbytes + y.nbytes) / (t_call / 1e3), None),
        (
            case,
            "ours (kernel)",
            t_kernel,
            None,
            (x.nbytes + y.nbytes) / (t_kernel / 1e3),
            need / (t_kernel / 1e3),
        ),
    ]
    scale = float(np.abs(w).sum())
    if spec.op == "down":
        stuffed = np.zeros(((3 - 1) * conv_kw["dilation"] + 1,) * nd, np.float32)
        stuffed[(slice(None, None, conv_kw["dilation"]),) * nd] = w
        stuffed = cp.asarray(stuffed)
        c = stuffed.shape[0] // 2  # scipy's centre: output o reads x[o - c + k]
        off = c - pad

        def peer():
            full = cndi.correlate(x, stuffed, mode="constant")
            return full[tuple(slice(off, off + 2 * n, 2) for n in y.shape)]
    else:
        # Fractionally strided: zero-insert the input, correlate with the
        # flipped kernel (4 taps, padding 1 puts output j on stuffed index j).
        flipped = cp.asarray(np.ascontiguousarray(w[(slice(None, None, -1),) * nd], np.float32))

        def peer():
            u = cp.zeros(y.shape, cp.float32)
            u[(slice(None, None, 2),) * nd] = x
            return cndi.correlate(u, flipped, mode="constant")

    ref = peer()
    assert ref.shape == y.shape, (ref.shape, y.shape)
    assert float(cp.abs(ref - y).max()) <= 1e-5 * scale, "cupyx result differs"
    del ref
    t = gpu_ms(peer)
    rows.append((case, "cupyx.scipy.ndimage correlate", t, t / t_kernel, None, None))
    if tc:
        tx = torch.as_tensor(x, device="cuda")[None, None]
        tw = torch.as_tensor(w.astype(np.float32), device="cuda")[None, None]
        if spec.op == "down":
            conv = (F.conv2d, F.conv3d)[nd - 2]
            d = conv_kw["dilation"]

            def tpeer():
                return conv(tx, tw, stride=2, dilation=d, padding=pad)
        else:
            conv = (F.conv_transpose2d, F.conv_transpose3d)[nd - 2]

            def tpeer():
                return conv(tx, tw, stride=2, padding=pad)

        ref = cp.asarray(tpeer()[0, 0])
        assert float(cp.abs(ref - y).max()) <= 1e-5 * scale, "PyTorch result differs"
        del ref
        t = gpu_ms(tpeer)
        rows.append((case, "PyTorch CUDA", t, t / t_kernel, None, None))
    return rows


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    if torch is not None:
        versions.append(f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)")
    if ndi is not None:
        import scipy

        versions.append(f"SciPy {scipy.__version__}")
    if pyramid_reduce is not None:
        import skimage

        versions.append(f"scikit-image {skimage.__version__}")
    load = ""
    if hasattr(os, "getloadavg"):
        load = f"; load average {os.getloadavg()[0]:.2f} (other processes skew timings)"
    # The engine is cache- and memory-bound: its times follow the last-level
    # cache (and its block size is set from it), so the table names it.
    cache = _engine_numpy.last_level_cache()
    llc = f", last-level cache {cache[0] >> 20} MiB shared by {cache[1]} CPUs" if cache else ""
    return f"{cpu}, {os.cpu_count()} cores{llc}; " + ", ".join(versions) + load


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per case (median)")
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU cases")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU cases")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    q = args.quick
    global QUICK
    QUICK = q
    print(f"Machine: {machine()}")
    if args.gpu_only:
        bench_gpu(args.repeat, q)
        return
    for name, present in (
        ("PyTorch", torch is not None),
        ("SciPy", ndi is not None),
        ("scikit-image", pyramid_reduce is not None),
    ):
        if not present:
            print(f"note: {name} is not installed; its cases are skipped")
    bench_down_2d(1024 if q else 4096, args.repeat, rng)
    bench_up_2d(512 if q else 2048, args.repeat, rng)
    bench_down_3d((16, 256, 256) if q else (64, 1024, 1024), args.repeat, rng)
    bench_pyramid((512, 512) if q else (2048, 2048), args.repeat, rng)
    bench_pyramid((16, 128, 128) if q else (64, 512, 512), args.repeat, rng)

    print("\n| case | ours (ms) | peer | peer (ms) | peer / ours | target | |")
    print("|---|---:|---|---:|---:|---|---|")
    for case, ours, peer, peer_ms, ratio, target, verdict in ROWS:
        if peer_ms is None:
            print(f"| {case} | {ours:.1f} | {peer} | | | | {verdict} |")
        else:
            cells = (case, f"{ours:.1f}", peer, f"{peer_ms:.1f}", f"{ratio:.2f}", target, verdict)
            print("| " + " | ".join(cells) + " |")

    print("\nPeak extra memory beyond the output (target <= 25% of the input):")
    print("| call | input MiB | peak extra MiB | extra / input |")
    print("|---|---:|---:|---:|")
    for name, nbytes, extra, frac in memory_rows(
        1024 if q else 4096, (16, 256, 256) if q else (64, 1024, 1024), rng
    ):
        print(f"| {name} | {nbytes / 2**20:.1f} | {extra / 2**20:.2f} | {frac:.1%} |")
    if not args.no_gpu:
        bench_gpu(args.repeat, q)
    if hasattr(os, "getloadavg"):
        print(f"\nLoad average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
