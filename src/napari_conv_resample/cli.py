"""``conv-resample``: batch dilated downsampling / transpose upsampling of image files.

Subcommands ``down``, ``up``, ``run`` (a recipe) and ``inspect`` (receptive
field summary, no pixels read). Option names are the library's keywords.
Exit status: 0 all done or skipped, 1 some file failed, 2 bad options
(reported before any work), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ._validation import per_axis_ints
from .geometry import DEFAULTS, MODES, resolve_spec
from .kernels import PRESETS
from .pipeline import Pipeline, Stage, to_jsonable

EXAMPLES = {
    None: """\
examples:
  conv-resample down data/ -o out/ --stride 2 --dilation 2
  conv-resample up small.ome.zarr -o big/ --stride 1,2,2 --kernel bilinear
  conv-resample run recipe.json 'raw/**/*.tif' -o out/ --workers 2
  conv-resample inspect recipe.json
  python -m napari_conv_resample down --help
""",
    "down": """\
examples:
  # 2x smaller with a 3x3 Gaussian (defaults), every TIFF/Zarr under data/
  conv-resample down data/ -o out/
  # anisotropic stack: keep Z, halve Y and X; taps 2 pixels apart
  conv-resample down stack.tif -o out/ --stride 1,2,2 --dilation 1,2,2
  # average pooling, integer output, OME-Zarr, out of core in 512x512 chunks
  conv-resample down big.tif -o out/ --kernel box --size 2 --padding 0 \\
      --preserve-dtype --format ome-zarr --chunks 512
  # a multiscale OME-Zarr: the stack and 4 levels, Y and X halved each time
  conv-resample down stack.tif -o out/ --stride 1,2,2 --levels 4 --preserve-dtype
""",
    "up": """\
examples:
  # FCN bilinear transposed convolution: exactly 2x the pixels
  conv-resample up small/ -o big/ --stride 2
  # pyrUp (binomial, k=5, padding 2, output padding 1)
  conv-resample up a.tif -o out/ --kernel binomial --size 5 --padding 2 --output-padding 1
  # only Y and X of a ZYX stack; 2L+1 pixels instead of 2L (a 256x256 plane: 513x513)
  conv-resample up a.ome.tif -o out/ --axes YX --output-size 513,513
""",
    "run": """\
examples:
  # a recipe saved from the plugin (Save recipe) or Pipeline.to_json()
  conv-resample run recipe.json data/ -o out/
  conv-resample run recipe.json '*.ome.zarr' -o out/ --scheduler tcp://10.0.0.5:8786
  conv-resample run recipe.json data/ -o out/ --workers 4 --chunks 256 --json > report.json
""",
    "inspect": """\
examples:
  conv-resample inspect recipe.json                 # rf size, stride, offset, holes
  conv-resample inspect --op down --size 3 --stride 1 --dilation 2
  conv-resample inspect recipe.json --shape 64,64 --json
  conv-resample inspect recipe.json --input stack.tif   # output shape and voxel size
""",
}


class UsageError(Exception):
    """Bad options: exit 2 before any work."""


# -- option parsing ------------------------------------------------------------


def _ints(text, name):
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise UsageError(
            f"--{name} {text}: expected an integer or one per axis like 1,2,2"
        ) from None
    return values[0] if len(values) == 1 else values


def _padding(text, op):
    t = str(text).strip().lower()
    if t in ("same", "valid"):
        return t
    if t in ("none", "auto") and op == "up":
        return None
    items = []
    try:
        for part in t.split(","):
            if ":" in part:
                lo, hi = part.split(":")
                items.append((int(lo), int(hi)))
            else:
                items.append(int(part))
    except ValueError:
        raise UsageError(
            f"--padding {text}: expected same, valid, an integer, one per axis (1,2,2) "
            "or lo:hi pairs (0:1,1:1)"
        ) from None
    return items[0] if len(items) == 1 and isinstance(items[0], int) else tuple(items)


def _kernel(text):
    if text in PRESETS:
        return text
    path = Path(text)
    if path.is_file():
        try:
            if path.suffix == ".npy":
                return np.load(path)
            if path.suffix == ".json":
                return np.asarray(json.loads(path.read_text()), dtype=np.float64)
            return np.loadtxt(path, ndmin=1)
        except Exception as exc:
            raise UsageError(f"--kernel {text}: cannot read the kernel file ({exc})") from None
    raise UsageError(
        f"--kernel {text}: not a preset ({', '.join(PRESETS)}) nor a kernel file "
        "(.npy, .json or text)"
    )


def _axes(text):
    if text is None:
        return None
    t = str(text).strip()
    if t.replace(",", "").replace("-", "").isdigit():
        v = _ints(t, "axes")
        return (v,) if isinstance(v, int) else v
    if not t.isalpha() or set(t.upper()) - set("TCZYXSQI"):
        raise UsageError(f"--axes {text}: give axis letters (ZYX, YX) or indices (0,1,2)")
    return t.upper()


def stage_params(args, op):
    """The library keywords given on the command line for one ``op`` stage."""
    params = {}
    if args.kernel is not None:
        params["kernel"] = _kernel(args.kernel)
    for name in ("size", "stride", "dilation"):
        v = getattr(args, name, None)
        if v is not None:
            params[name] = _ints(v, name)
    if getattr(args, "padding", None) is not None:
        params["padding"] = _padding(args.padding, op)
    if op == "down" and getattr(args, "mode", None) is not None:
        params["mode"] = args.mode
    if op == "up":
        if getattr(args, "output_padding", None) is not None:
            params["output_padding"] = _ints(args.output_padding, "output-padding")
        if getattr(args, "output_size", None) is not None:
            params["output_size"] = _ints(args.output_size, "output-size")
    return params


def _probe_ndim(params):
    """Spatial axes a stage implies: an array kernel's, else a per-axis value's
    (one padding pair is for every axis), else 2."""
    kernel = params.get("kernel")
    if isinstance(kernel, np.ndarray):
        return kernel.ndim
    for key, v in params.items():
        if isinstance(v, tuple) and not (key == "padding" and len(v) == 1):
            return len(v)
    return 2


def check_stage(stage):
    """Resolve ``stage`` on a large probe image so bad values fail before any work."""
    n = _probe_ndim(stage.params)
    params = dict(stage.params)
    if params.get("output_size") is not None:  # reachable or not depends on the image
        try:
            per_axis_ints(params.pop("output_size"), n, "output_size")
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    try:
        # Axes long enough for any value: what depends on the image's length
        # (a dilation longer than an axis) is checked per file, with its own.
        resolve_spec(stage.op, (1 << 40,) * n, **params)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# -- argument parser -----------------------------------------------------------


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30, width=100)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _add_io(p):
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders (recursed) or globs")
    p.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument(
        "--axes",
        help="spatial axes: letters (ZYX, YX) or indices (0,1,2); default the file's Z/Y/X "
        "axes (time and channels are carried through)",
    )
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    p.add_argument(
        "--preserve-dtype",
        action="store_true",
        help="keep the input dtype (integers rounded and clipped); default float32",
    )
    p.add_argument(
        "--format", choices=("tiff", "zarr", "ome-zarr"), help="output format (default: input's)"
    )
    p.add_argument(
        "--chunks",
        help="process out of core in output chunks of this size (one per spatial axis or "
        "one for all, or 'auto'); default: in memory unless the image is large",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, help="run chunks on a local dask cluster of N")
    group.add_argument("--scheduler", metavar="ADDRESS", help="existing dask.distributed cluster")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--suffix", default="", help="added to output names (e.g. _down2)")
    p.add_argument("--json", action="store_true", help="print a machine-readable JSON report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_stage_options(p, op):
    """The stage options of ``op`` ('down', 'up', or None: both, as --op picks)."""

    def default(key, show=lambda v: v):
        ops = ("down", "up") if op is None else (op,)
        values = [show(DEFAULTS[o][key]) for o in ops]
        if len(set(map(str, values))) == 1:
            return f"default {values[0]}"
        return "default " + ", ".join(f"{o} {v}" for o, v in zip(ops, values))

    p.add_argument(
        "--kernel",
        help=f"preset ({', '.join(PRESETS)}) or a .npy/.json/text file of weights "
        f"({default('kernel')})",
    )
    p.add_argument(
        "--size",
        help=f"taps per axis, e.g. 3 or 1,3,3 ({default('size', lambda v: v or 'natural')})",
    )
    p.add_argument("--stride", help=f"per axis, e.g. 2 or 1,2,2 ({default('stride')})")
    p.add_argument("--dilation", help=f"tap spacing per axis ({default('dilation')})")
    p.add_argument(
        "--padding",
        help="same, valid, an integer, one per axis or lo:hi pairs "
        f"({default('padding', lambda v: v or 'exactly stride x L')})",
    )
    if op != "up":
        where = "" if op == "down" else "down only; "
        p.add_argument(
            "--mode",
            choices=MODES,
            help=f"border mode ({where}default {DEFAULTS['down']['mode']})",
        )
    if op != "down":
        where = "" if op == "up" else "(up) "
        p.add_argument("--output-padding", help=f"{where}extra pixels at the high end, per axis")
        p.add_argument("--output-size", help=f"{where}wanted output length per spatial axis")


def build_parser():
    parser = _Parser(
        prog="conv-resample",
        description="Resample microscopy images (TIFF, OME-TIFF, ImageJ, Zarr, OME-Zarr) by "
        "dilated downsampling or transposed upsampling, keeping their physical metadata.",
        epilog=EXAMPLES[None],
        formatter_class=_formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{down,up,run,inspect}")
    helps = {
        "down": "strided, dilated cross-correlation (PyTorch conv)",
        "up": "transposed convolution (PyTorch conv_transpose)",
        "run": "apply a pipeline recipe (JSON) to files",
        "inspect": "receptive field summary of a recipe or stage (no pixels read)",
    }
    for name in ("down", "up", "run", "inspect"):
        p = sub.add_parser(
            name,
            help=helps[name],
            description=helps[name],
            epilog=EXAMPLES[name],
            formatter_class=_formatter,
        )
        if name == "run":
            p.add_argument("recipe", metavar="RECIPE.json")
            _add_io(p)
            _add_levels(p)
        elif name == "inspect":
            p.add_argument("recipe", nargs="?", metavar="RECIPE.json")
            p.add_argument("--op", choices=("down", "up"), default="down")
            _add_stage_options(p, None)
            p.add_argument("--shape", help="spatial input shape for the masks, e.g. 128,128")
            p.add_argument("--input", action="append", help="image file: show output geometry")
            p.add_argument(
                "--axes", help="with --input: the spatial axes, e.g. ZYX or YX (as for down/up)"
            )
            p.add_argument("--json", action="store_true", help="print the summary as JSON")
            p.add_argument(
                "--format",
                choices=("tiff", "zarr", "ome-zarr"),
                help="with --input: the output format to plan for (as for down/up)",
            )
            _add_levels(
                p,
                "with --input: the shape and placement of each level of the "
                "pyramid --levels N would write",
            )
        else:
            _add_stage_options(p, name)
            _add_io(p)
            if name == "down":
                _add_levels(p)
    return parser


def _add_levels(p, text=None):
    p.add_argument(
        "--levels",
        type=int,
        metavar="N",
        help=text
        or "write a pyramid: the input (level 0) and N levels, each the stages applied to "
        "the level before, as OME-Zarr (default) or, with --format tiff, a tiled OME-TIFF "
        "whose levels are SubIFDs (napari opens either as one multiscale layer)",
    )


def _levels_option(args):
    """``--levels``, checked (None when not given)."""
    levels = getattr(args, "levels", None)
    if levels is not None and levels < 1:
        raise UsageError(f"--levels {levels}: give the number of levels below the input, >= 1")
    if levels and getattr(args, "format", None) == "zarr":
        raise UsageError(
            "--levels writes an OME-Zarr (or with --format tiff an OME-TIFF) pyramid; "
            "--format zarr holds one resolution"
        )
    return levels


# -- commands ------------------------------------------------------------------


def _pipeline(args):
    if args.command == "run" or (args.command == "inspect" and args.recipe):
        try:
            pipe = Pipeline.from_json(args.recipe)
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"recipe {args.recipe}: {exc}") from None
        for i, stage in enumerate(pipe.stages, 1):
            try:
                check_stage(stage)
            except UsageError as exc:
                raise UsageError(f"recipe {args.recipe}: stage {i} ({stage.op}): {exc}") from None
        return pipe
    op = args.op if args.command == "inspect" else args.command
    if op == "down" and args.command == "inspect":
        for name in ("output_padding", "output_size"):
            if getattr(args, name, None) is not None:
                raise UsageError(f"--{name.replace('_', '-')} needs --op up")
    if op == "up" and getattr(args, "mode", None) not in (None, "zeros"):
        raise UsageError("--mode: transpose upsampling pads with zeros only")
    try:
        stage = Stage(op, **stage_params(args, op))
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    check_stage(stage)
    return Pipeline([stage])


#: ``inspect --input`` computes its table on the first file's spatial shape
#: when none of the chain's grids has more than this many pixels (the table's
#: receptive-field masks have their size).
INSPECT_MAX_PIXELS = 1 << 22


def _pixels(shape):
    return float(np.prod(shape, dtype=np.float64))


def _masks_fit(grids):
    """Whether masks on every stage's grid (``grids``: shapes) are small enough."""
    return max(_pixels(g) for g in grids) <= INSPECT_MAX_PIXELS


def cmd_inspect(args, out):
    pipe = _pipeline(args)
    shape = _ints(args.shape, "shape") if args.shape else None
    if isinstance(shape, int):
        shape = (shape,) * 2
    if shape is not None:
        try:
            grids = [tuple(shape)] + [sp.output_shape for sp in pipe.specs(shape)]
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--shape {args.shape}: {exc}") from None
        if not _masks_fit(grids):
            raise UsageError(
                f"--shape {args.shape}: the masks of {max(grids, key=_pixels)} pixels are too "
                f"large (at most {INSPECT_MAX_PIXELS}); the closed-form sizes do not depend "
                "on the shape: inspect a smaller one"
            )
    if args.levels is not None and not args.input:
        raise UsageError("--levels: give the image with --input (a pyramid's levels depend on it)")
    if (
        not args.input
        and shape is None
        and any(st.params.get("output_size") is not None for st in pipe.stages)
    ):
        raise UsageError(
            "output_size depends on the image: give --shape or --input to inspect this chain"
        )
    files, note = [], ""
    if args.input:
        from .batch.discover import InputError, discover
        from .batch.runner import Options, describe

        opts = Options(
            pipe, Path("."), axes=_axes(args.axes), format=args.format, levels=_levels_option(args)
        )
        try:
            inputs = discover(args.input)
        except InputError as exc:
            raise UsageError(str(exc)) from None
        for found in inputs:
            try:
                info = describe(found, opts)
            except Exception as exc:
                files.append({"input": str(found.path), "error": f"{type(exc).__name__}: {exc}"})
                continue
            files.append({"input": str(found.path), **_public(info)})
            if shape is None and not note:
                # The table on the first file's spatial shape ('same' padding
                # and so the start offsets depend on it), if its masks are small.
                spatial = tuple(info["shape_in"][a] for a in info["_axes"])
                grids = [spatial] + [
                    tuple(sp.output_shape[a] for a in info["_axes"]) for sp in info["_specs"]
                ]
                if _masks_fit(grids):
                    shape = spatial
                    note = f"(on {found.path.name}'s spatial shape {spatial})"
                else:
                    note = (
                        f"(on a probe shape: {found.path.name}'s {spatial} is too large for "
                        "the masks; with 'same' padding its start offsets may differ by a pixel)"
                    )
    try:
        rows = pipe.summary(shape)
        text = pipe.format_summary(shape)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    report = {"stages": [s.to_dict() for s in pipe.stages], "summary": to_jsonable(rows)}
    if args.input:
        report["files"] = files
    if note:
        text = f"{text}\n{note}"
        report["summary_note"] = note
    # A file that cannot be planned is a failure, as in a processing run.
    status = 1 if any("error" in f for f in files) else 0
    if args.json:
        print(json.dumps(report, indent=2), file=out)
        return status
    print(text, file=out)
    for f in files:
        if "error" in f:
            print(f"{f['input']}: cannot plan: {f['error']}", file=out)
            continue
        mi, mo = f["meta_in"], f["meta_out"]
        print(
            f"{f['input']}: {f['axes']} {tuple(f['shape_in'])} -> {tuple(f['shape_out'])}"
            f" (spatial {f['spatial_axes']}), scale {_fmt(mi['scale'])} -> {_fmt(mo['scale'])}, "
            f"translate {_fmt(mi['translate'])} -> {_fmt(mo['translate'])}",
            file=out,
        )
        for k, (shape_k, place) in enumerate(
            zip(f.get("level_shapes", []), f.get("level_placements", []))
        ):
            print(
                f"  level {k}: {tuple(shape_k)}, scale {_fmt(place['scale'])}, "
                f"translate {_fmt(place['translate'])}",
                file=out,
            )
    return status


def _fmt(values):
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _public(info):
    return {k: v for k, v in info.items() if not k.startswith("_")}


def _parse_chunks_option(text):
    if text is None:
        return None
    if text == "auto":
        return "auto"
    v = _ints(text, "chunks")
    vals = (v,) if isinstance(v, int) else v
    if any(c < 1 for c in vals):
        raise UsageError(f"--chunks {text}: sizes must be >= 1")
    return v


def cmd_process(args, out, err):
    from .batch.discover import InputError, discover, is_zarr, written_by_this_tool
    from .batch.runner import Options, output_path, process, summarize

    pipe = _pipeline(args)
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be >= 1")
    levels = _levels_option(args)
    if any(sep in args.suffix for sep in ("/", "\\", "\0")) or args.suffix in (".", ".."):
        raise UsageError(f"--suffix {args.suffix!r}: a suffix is part of a file name, not a path")
    options = Options(
        pipeline=pipe,
        output_dir=Path(args.output_dir),
        axes=_axes(args.axes),
        backend=args.backend,
        preserve_dtype=args.preserve_dtype,
        format=args.format,
        chunks=_parse_chunks_option(args.chunks),
        overwrite=args.overwrite,
        suffix=args.suffix,
        workers=args.workers,
        scheduler=args.scheduler,
        levels=levels,
    )
    if args.backend == "cupy":
        from .backends import BackendUnavailableError, get_array_module

        try:
            get_array_module("cupy")
        except BackendUnavailableError as exc:
            raise UsageError(str(exc)) from None
    try:
        found = discover(args.inputs, exclude=[args.output_dir])
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise UsageError(f"-o {args.output_dir}: exists and is not a folder")
    import os

    out_dir = os.path.realpath(args.output_dir)
    for f in found:
        store = os.path.realpath(f.path)
        if is_zarr(f.path) and (out_dir == store or out_dir.startswith(store + os.sep)):
            raise UsageError(
                f"-o {args.output_dir}: lies inside the input store {f.path}; "
                "inputs are never written to: choose another folder"
            )
    # Results of an earlier run into the searched folder itself (-o . --suffix
    # _d) are not inputs of this one: files at another input's output path
    # that this tool wrote (a user's own file there is refused below).
    named = {os.path.realpath(a) for a in args.inputs}
    results = {os.path.realpath(output_path(f, options)) for f in found}
    found = [
        f
        for f in found
        if os.path.realpath(f.path) not in results - named
        or os.path.realpath(output_path(f, options)) == os.path.realpath(f.path)
        or not written_by_this_tool(f.path)
    ]
    inputs = {os.path.realpath(f.path) for f in found}
    targets = {}
    for f in found:
        target = os.path.realpath(output_path(f, options))
        if target in inputs:
            raise UsageError(
                f"{f.path}: the output would overwrite an input ({target}); "
                "choose another -o folder or a --suffix"
            )
        if target in targets:
            raise UsageError(
                f"{f.path} and {targets[target]} would both be written to {target}; "
                "use --suffix or separate runs"
            )
        targets[target] = f.path
    return _run_batch(found, options, args, out, err, process, summarize)


def _client(options):
    if options.scheduler:
        from distributed import Client

        return Client(options.scheduler), None
    if options.workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=options.workers,
            threads_per_worker=1,
            dashboard_address=None,
            host="127.0.0.1",
            # A failed chunk is reported once, in the file's result; the
            # workers' and scheduler's own logs of it (and, at CRITICAL, of
            # chunks stopped by Ctrl-C after the client left) are noise here.
            silence_logs=logging.CRITICAL + 1,
        )
        return Client(cluster), cluster
    return None, None


class _InterruptFlag:
    """Ctrl-C that is not lost.

    Python ignores a KeyboardInterrupt raised inside a garbage-collector or
    ``__del__`` callback (dask's run some), and the run would go on to finish.
    While installed, Ctrl-C also sets a flag that :meth:`check` (called per
    chunk and per file) turns into a KeyboardInterrupt.
    """

    def __init__(self):
        self.requested = False
        self._old = None
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        self.requested = True
        raise KeyboardInterrupt

    def check(self):
        if self.requested:
            raise KeyboardInterrupt

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def _run_batch(found, options, args, out, err, process, summarize):
    from tqdm import tqdm

    t0 = time.perf_counter()
    results = []
    disable = True if args.no_progress or args.json else None
    try:
        client, cluster = _client(options)
    except Exception as exc:
        raise UsageError(f"cannot reach the dask cluster: {type(exc).__name__}: {exc}") from None
    interrupt = _InterruptFlag()
    try:
        files_bar = tqdm(total=len(found), unit="file", desc="files", file=err, disable=disable)
        chunk_bar = tqdm(
            total=0, unit="chunk", desc="chunks", leave=False, file=err, disable=disable
        )

        def chunk_progress(step, total):
            interrupt.check()
            if total is not None:
                chunk_bar.reset(total=total)
            if step:
                chunk_bar.update(step)

        for f in found:
            interrupt.check()
            files_bar.set_postfix_str(f.path.name, refresh=False)
            r = process(f, options, client=client, chunk_progress=chunk_progress)
            results.append(r)
            if r.status == "failed" and disable is not True:
                tqdm.write(f"FAILED {r.input}: {r.reason}", file=err)
            files_bar.update(1)
        chunk_bar.close()
        files_bar.close()
    finally:
        interrupt.restore()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    report = summarize(results, time.perf_counter() - t0)
    report["command"] = args.command
    report["stages"] = [s.to_dict() for s in options.pipeline.stages]
    if args.json:
        for f in report["files"]:
            f.pop("traceback", None)
        print(json.dumps(to_jsonable(report), indent=2), file=out)
    else:
        for r in results:
            if r.status == "failed":
                print(f"failed: {r.input}: {r.reason}", file=out)
            for note in (r.info or {}).get("notes", []):
                print(f"note: {r.input}: {note}", file=out)
        # A resumed batch skips its finished files; a re-run with other
        # settings must not pass off the old results as new ones.
        from .batch.runner import OUTPUT_EXISTS, OUTPUT_UP_TO_DATE

        skipped = [r for r in results if r.status == "skipped"]
        same = [r for r in skipped if r.reason == OUTPUT_UP_TO_DATE]
        unknown = [r for r in skipped if r.reason == OUTPUT_EXISTS]
        if same:
            print(
                f"skipped {len(same)} file(s) whose output exists, made with these settings "
                f"(e.g. {same[0].output})",
                file=out,
            )
        if unknown:
            print(
                f"skipped {len(unknown)} file(s) whose output already exists "
                f"(e.g. {unknown[0].output}) and records no settings: kept as it was "
                "written, whatever its settings; --overwrite redoes them with these",
                file=out,
            )
        for r in skipped:
            if r not in same and r not in unknown:  # stale, or being written by another run
                print(f"skipped: {r.input}: {r.reason}", file=out)
        print(
            f"{report['done']} done, {report['skipped']} skipped, {report['failed']} failed "
            f"in {report['seconds']:.1f} s -> {options.output_dir}",
            file=out,
        )
    return 1 if report["failed"] else 0


def main(argv=None):
    """Entry point of ``conv-resample``; returns the exit status."""
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(out)
            return 2
        if args.command == "inspect":
            return cmd_inspect(args, out)
        return cmd_process(args, out, err)
    except UsageError as exc:
        print(f"conv-resample: error: {exc}", file=err)
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("conv-resample: interrupted; unfinished outputs were not kept", file=err)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
