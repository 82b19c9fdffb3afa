"""Per-file processing of a batch: plan, skip, compute, write safely, report.

Every output is written under a hidden temporary name next to its final
place (``.NAME.partial``) and renamed only when complete, so an interrupted
run never leaves an output that looks finished and a rerun redoes exactly
the files without one. Inputs are never written to.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from .._validation import normalize_axes
from ..operators import cast_result, compute_dtype
from ..pipeline import Pipeline, to_jsonable
from ..pyramid import pyramid_specs
from . import chunked
from .discover import Found, is_zarr
from .io_tiff import (
    TiffSource,
    ome_problem,
    output_meta_flavor,
    write_tiff,
    write_tiff_pyramid,
)
from .io_zarr import (
    ZarrSource,
    create_output,
    create_pyramid,
    ngff_axes_problem,
    open_output,
    scratch_array,
)
from .metadata import PROVENANCE, WRITER, level0_record, resolve_axes, updated, whole_chain

FORMATS = ("tiff", "zarr", "ome-zarr")
#: Inputs at most this large (bytes, as float32) are processed in memory
#: unless ``--chunks`` is given or a dask cluster is used.
IN_MEMORY_BYTES = 512 * 2**20
_TIFF_TILE = 256


@dataclass
class Options:
    pipeline: Pipeline
    output_dir: Path
    axes: object = None
    backend: str = "auto"
    preserve_dtype: bool = False
    format: str | None = None
    chunks: object = None
    overwrite: bool = False
    suffix: str = ""
    workers: int | None = None
    scheduler: str | None = None
    #: Write a pyramid (OME-Zarr, or OME-TIFF with ``format='tiff'``): the
    #: input and this many downsamplings of it.
    levels: int | None = None


@dataclass
class Result:
    input: str
    output: str | None
    status: str  # done | skipped | failed
    reason: str | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def to_dict(self):
        return {
            "input": self.input,
            "output": self.output,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 4),
            **self.info,
        }


def open_source(path):
    """A :class:`TiffSource` or :class:`ZarrSource` for ``path``."""
    if is_zarr(path):
        return ZarrSource(path)
    if Path(path).is_dir():
        raise ValueError("a folder that is not a Zarr store")
    return TiffSource(path)


def input_kind(path):
    if is_zarr(path):
        try:
            src = ZarrSource(path)
            return src.meta.flavor
        except Exception:
            return "zarr"
    return "tiff"


_STRIP = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".btf", ".tf8")


def split_name(name):
    low = name.lower()
    for ext in _STRIP:
        if low.endswith(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return name, ""


def output_path(found, options):
    """Where the result of ``found`` goes (format from the input unless ``--format``)."""
    stem, ext = split_name(found.rel.name)
    fmt = options.format or ("ome-zarr" if options.levels else None)
    kind = "tiff" if not is_zarr(found.path) else None
    if fmt is None or (fmt == "tiff" and kind == "tiff"):
        if kind == "tiff":
            new_ext = ext
        else:
            new_ext = ext if ext else ".zarr"
    elif fmt == "tiff":
        new_ext = ".ome.tif"
    elif fmt == "zarr":
        new_ext = ".zarr"
    else:
        new_ext = ".ome.zarr"
    return Path(options.output_dir) / found.rel.parent / f"{stem}{options.suffix}{new_ext}"


def partial_path(path):
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _remove(path, tries=5):
    """Remove a file or folder; ``False`` (never an error) if it stays.

    Writes still landing in a folder (a store's own write threads after a
    failed chunk) can refill it while it is removed: try again a few times.
    """
    path = Path(path)
    for attempt in range(tries):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            return True
        except FileNotFoundError:
            return True  # gone meanwhile (a cancelled worker's chunk)
        except OSError:
            if attempt == tries - 1:
                return False
            time.sleep(0.2)


def _commit(tmp, final):
    """Rename the finished ``tmp`` onto ``final`` (replacing an old output)."""
    final = Path(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        _remove(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def output_dtype(in_dtype, n_stages, preserve_dtype):
    """The dtype of the result: the input's with ``preserve_dtype``, else the compute dtype."""
    if preserve_dtype:
        return np.dtype(in_dtype)
    dt = np.dtype(in_dtype)
    for _ in range(n_stages):
        dt = compute_dtype(dt)
    return dt


def out_format(found, options, meta):
    if options.format:
        return options.format
    if options.levels:
        return "ome-zarr"  # a TIFF pyramid only when asked: its levels keep Z
    return "tiff" if meta.flavor in ("plain", "imagej", "ome") else meta.flavor


def describe(found, options):
    """Open an input and plan its job without reading pixels (for ``inspect``/reports)."""
    with open_source(found.path) as src:
        return _plan(src, found, options)


def _plan(src, found, options):
    meta = src.meta
    # A recipe made on the YX planes of a stack filters YX planes here too.
    axes = resolve_axes(meta, options.axes)
    dims = options.pipeline.spatial_dims
    if options.axes is not None and dims is not None and len(axes) != dims:
        raise ValueError(
            f"--axes {options.axes} names {len(axes)} axes but the recipe filters "
            f"{dims} (spatial_dims={dims})"
        )
    if dims is not None and len(axes) < dims:
        # e.g. 3-D filtering in napari of a time-lapse whose frames are Q or T here
        others = "".join(a for a in meta.axes if a not in "CS")
        hint = (
            f"name {dims} with --axes, e.g. --axes {others[-dims:]}"
            if len(others) >= dims
            else f"it has no {dims} axes to filter"
        )
        raise ValueError(
            f"the recipe filters {dims} spatial axes (spatial_dims={dims}) but the file's "
            f"axes {meta.axes!r} have {len(axes)} ({''.join(meta.axes[a] for a in axes)}); " + hint
        )
    axes = options.pipeline.stage_axes(len(src.shape), axes)
    levels = _pyramid_levels(options, src.shape, axes, meta.axes)
    specs = levels[0] if levels else options.pipeline.specs(src.shape, axes)
    made = provenance(found, src, options, axes, specs)
    # A pyramid's dataset 0 is the input itself: placed as it is.
    meta_out = meta if levels else updated(meta, specs)
    meta_out = replace(meta_out, extra={**meta_out.extra, PROVENANCE: made})
    fmt = out_format(found, options, meta)
    if levels and fmt not in ("ome-zarr", "tiff"):
        raise ValueError(f"--levels writes an OME-Zarr or TIFF pyramid, not --format {fmt}")
    problem = ngff_axes_problem(meta.axes) if fmt == "ome-zarr" else None
    if problem:
        raise ValueError(f"--format ome-zarr: {problem}; write --format tiff or zarr")
    if fmt == "tiff" and len(src.shape) < 2:
        raise ValueError(
            f"a TIFF holds 2-D planes, the image is 1-D (axes {meta.axes!r}): write --format zarr"
        )
    dtype = output_dtype(src.dtype, len(specs), options.preserve_dtype)
    level_metas = [meta_out]
    for level in levels:
        level_metas.append(updated(level_metas[-1], level))
    report = _level_report(src.shape, levels, level_metas) if levels else {}
    if levels and fmt == "tiff":
        problem = _tiff_pyramid_problem(report["level_shapes"], meta, dtype)
        if problem:
            raise ValueError(f"--levels {options.levels} --format tiff: {problem}")
    if levels:
        # Where each level sits: a TIFF's levels have no placement of their own.
        made["level_placements"] = report["level_placements"]
    return {
        "axes": meta.axes,
        "spatial_axes": "".join(meta.axes[a] for a in axes),
        "shape_in": list(src.shape),
        "shape_out": list(specs[-1].output_shape),
        **report,
        "dtype_in": src.dtype.name,
        "dtype_out": dtype.name,
        "format": fmt,
        "meta_in": meta.to_dict(),
        # shape_out's placement (a pyramid's level 1; its dataset 0 is the input's)
        "meta_out": level_metas[1 if levels else 0].to_dict(),
        "notes": list(getattr(src, "notes", [])),
        "_specs": specs,
        "_meta_out": meta_out,
        "_axes": axes,
        "_levels": levels,
        "_level_metas": level_metas,
    }


def _pyramid_levels(options, shape, axes, letters):
    """The specs of every level of the ``--levels`` pyramid (``[]`` without one)."""
    if not options.levels:
        return []
    others = [letters[a] for a in normalize_axes(axes, len(shape)) if letters[a] in "TCS"]
    if others:
        raise ValueError(
            f"--levels: every level of a pyramid keeps all time points and channels; the "
            f"stages filter {''.join(others)} (axes {letters!r}): filter only the others "
            f"with --axes"
        )
    return pyramid_specs(options.pipeline, shape, options.levels, axes, name="--levels")


def _level_report(shape, levels, metas):
    """Every level's shape and placement, for the report."""
    return {
        "level_shapes": [list(shape)] + [list(specs[-1].output_shape) for specs in levels],
        "level_placements": [
            {"scale": list(m.scale), "translate": list(m.translate)} for m in metas
        ],
    }


def _tiff_pyramid_problem(shapes, meta, dtype):
    """Why levels of ``shapes`` cannot be a TIFF pyramid, or ``None``: its
    levels hang under each plane (SubIFDs), so only Y and X may change, and
    they are written tile by tile (:func:`_tiles_fit`), as an OME-TIFF
    (tifffile reads a plain TIFF's levels without their axes)."""
    letters = meta.axes
    changed = [a for i, a in enumerate(letters) if a not in "YX" and shapes[-1][i] != shapes[0][i]]
    if changed:
        return (
            f"the levels of a TIFF pyramid differ in Y and X only (they hang under each "
            f"plane), these stages change {''.join(changed)}: write --format ome-zarr"
        )
    problem = ome_problem(letters, dtype)
    if problem:
        return f"a TIFF pyramid is an OME-TIFF, and {problem}: write --format ome-zarr"
    for k, shape in enumerate(shapes):
        if not _tiles_fit(shape, letters):
            return (
                f"a TIFF pyramid is written in tiles of planes Y, X (axes {letters!r}) at "
                f"least 2 pixels wide; level {k} has shape {tuple(shape)}: write fewer "
                "levels or --format ome-zarr"
            )
    return None


#: Why a file whose output is there is skipped (before and after taking its
#: lock): one that records no settings (written by an older version or by
#: someone else), one made with this run's settings, one made with others.
OUTPUT_EXISTS = "output exists (use --overwrite to redo)"
OUTPUT_UP_TO_DATE = "output exists, made with these settings (use --overwrite to redo)"
OUTPUT_STALE = "output exists but was made with different"


def provenance(found, src, options, axes, specs):
    """How the output of ``found`` is made, as stored in it (JSON-ready):
    the recipe (with its ``spatial_dims``), what its stages resolve to on
    this input (:func:`resolved_stages`), the spatial axes it filters, the
    dtype rule and the input's name, axes, shape and placement; for an input
    this tool made, also the ``chain`` from the first input (:func:`chained`)."""
    meta = src.meta
    pipe = options.pipeline
    recipe = Pipeline(pipe.stages, spatial_dims=len(axes), rounded=pipe.rounded)
    spatial = "".join(meta.axes[a] for a in axes)
    earlier = meta.extra.get(PROVENANCE)
    chain = source = None
    if not options.levels:
        chain = chained(earlier, recipe, src.dtype, meta.axes, spatial, options.preserve_dtype)
    elif isinstance(earlier, dict) and output_dtype(src.dtype, 1, options.preserve_dtype) == (
        src.dtype
    ):
        # A pyramid's dataset 0 is its input: when it is an exact copy, the
        # record of how the input was made describes it (metadata.level0_record).
        source = earlier
    return to_jsonable(
        {
            **({"chain": chain} if chain else {}),
            **({"source": source} if source else {}),
            "recipe": recipe.to_dict(),
            "stages": resolved_stages(specs, pipe.rounded),
            "spatial_axes": spatial,
            "preserve_dtype": bool(options.preserve_dtype),
            # Only in pyramids: their dataset k is the recipe applied k times.
            **({"levels": int(options.levels)} if options.levels else {}),
            "input": {
                "name": Path(found.path).name,
                "axes": meta.axes,
                "dtype": np.dtype(src.dtype).name,
                "shape": src.shape,
                "scale": meta.scale,
                "translate": meta.translate,
                "units": meta.units,
            },
            "written_by": f"{WRITER} {__version__}",
        }
    )


def chained(made, recipe, dtype, axes, spatial, preserve_dtype):
    """The whole chain when the input (of ``dtype``) is itself an output of
    this tool with provenance ``made``: its (chain's) recipe then
    ``recipe``, from its first input, as a widget chain records it, and the
    ``preserve_dtype`` that replays it on that input bit for bit.

    A run rounds (its ``rounded`` stages, its result with ``preserve_dtype``)
    to its own input's dtype; replayed on the first input the chain rounds to
    that one's. So the chain rounds where the two are the same dtype: after
    the stage that made this input (a result cast back to the first dtype),
    at this run's ``rounded`` stages, and at the end. Where this input is of
    another dtype (a float result), those casts did nothing. ``None`` when
    there is no usable record or it filtered other axes (not one recipe).
    """
    made = level0_record(made)
    if not isinstance(made, dict):
        return None
    base = whole_chain(made)
    try:
        first = Pipeline.from_json(json.dumps(base["recipe"]))
        if made.get("spatial_axes") != spatial or base["input"]["axes"] != axes:
            return None
        same = np.dtype(base["input"]["dtype"]) == np.dtype(dtype)
        rounded = first.rounded
        if same:
            rounded += (len(first.stages) - 1,) + recipe.rounded_after(len(first.stages))
        whole = Pipeline(first.stages + recipe.stages, spatial_dims=len(spatial), rounded=rounded)
        return {
            "recipe": whole.to_dict(),
            "input": dict(base["input"]),
            "preserve_dtype": bool(preserve_dtype and same),
        }
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def resolved_stages(specs, rounded=()):
    """Per stage what the output depends on, however the recipe spelled it
    (``--stride 2`` or ``2,2``, defaults omitted or written out): the axes,
    taps (a SHA-256 of the float64 weights), stride, dilation, padding,
    output padding, where there is padding the border mode, and whether the
    result was rounded before the next stage."""
    out = []
    for i, spec in enumerate(specs):
        weights = np.ascontiguousarray(spec.weights, dtype=np.float64)
        padded = any(spec.pad_lo) or any(spec.pad_hi)
        out.append(
            {
                "op": spec.op,
                "axes": spec.axes,
                "size": spec.size,
                "weights_sha256": hashlib.sha256(weights.tobytes()).hexdigest(),
                "stride": spec.stride,
                "dilation": spec.dilation,
                "padding": spec.padding,
                "output_padding": spec.output_padding,
                "mode": spec.mode if spec.op == "down" and padded else None,
            }
        )
        if i in rounded:  # only then: records without the key read as not rounded
            out[-1]["rounded"] = True
    return out


#: What an existing output's provenance is compared on before it is skipped.
_COMPARED = {
    "stages": "stages",
    "spatial_axes": "spatial axes",
    "preserve_dtype": "--preserve-dtype",
    "levels": "--levels",
    "input": "input (dtype, shape or placement)",
}


def _same_setting(key, made, want):
    """Whether the recorded ``made`` and this run's ``want`` agree on ``key``
    (a record written before inputs kept their dtype agrees on it)."""
    old, new = made.get(key), want.get(key)
    if key == "input" and isinstance(old, dict) and isinstance(new, dict) and "dtype" not in old:
        new = {k: v for k, v in new.items() if k != "dtype"}
    return old == new


def recorded_provenance(path):
    """The provenance this tool stored in the output at ``path``, or ``None``
    (none, or the file cannot be read)."""
    try:
        with open_source(path) as out:
            made = out.meta.extra.get(PROVENANCE)
    except Exception:  # noqa: BLE001 - an unreadable output records nothing usable
        return None
    return made if isinstance(made, dict) else None


def _skip_reason(made, plan):
    """Why an existing output with provenance ``made`` is skipped by a run
    with ``plan``: no record, made with these settings, or with others (named)."""
    if made is None:
        return OUTPUT_EXISTS
    want = json.loads(json.dumps(plan["_meta_out"].extra[PROVENANCE]))
    changed = [text for key, text in _COMPARED.items() if not _same_setting(key, made, want)]
    if not changed:
        return OUTPUT_UP_TO_DATE
    return f"{OUTPUT_STALE} settings ({', '.join(changed)}); use --overwrite to redo"


def use_chunks(src, options):
    if options.chunks is not None or options.workers or options.scheduler:
        return True
    return int(np.prod(src.shape, dtype=np.float64)) * 4 > IN_MEMORY_BYTES


def process(found, options, *, client=None, chunk_progress=None):
    """Process one input; never raises for a bad file (the result says why)."""
    t0 = time.perf_counter()
    final = output_path(found, options)
    res = Result(str(found.path), str(final), "done")
    made = recorded_provenance(final) if final.exists() and not options.overwrite else None
    if made is None and final.exists() and not options.overwrite:
        # Nothing to compare: skipped without opening the input. Outputs
        # with a record are compared with this run's plan below.
        res.status, res.reason = "skipped", OUTPUT_EXISTS
        return res
    tmp = partial_path(final)
    scratch = final.with_name(f".{final.name}.scratch.zarr")
    lock = final.with_name(f".{final.name}.lock")
    # The lock's descriptor once this run holds it: then the temporary files are its own.
    owned = None
    try:
        with open_source(found.path) as src:
            plan = _plan(src, found, options)
            res.info = {k: v for k, v in plan.items() if not k.startswith("_")}
            if made is not None:
                res.status, res.reason = "skipped", _skip_reason(made, plan)
                return res
            final.parent.mkdir(parents=True, exist_ok=True)
            owned, holder = take_lock(lock)
            if owned is None:
                res.status = "skipped"
                res.reason = (
                    f"another run ({holder}) is writing this output now; run again when it is done"
                )
                return res
            if final.exists() and not options.overwrite:  # that other run finished it
                res.status, res.reason = "skipped", _skip_reason(recorded_provenance(final), plan)
                return res
            _close_stale_gates(tmp)
            _remove(tmp)
            _remove(scratch)
            chunks_used = _compute_and_write(
                src, found, plan, options, tmp, scratch, client, chunk_progress
            )
            res.info["chunks"] = chunks_used
        _commit(tmp, final)
    except KeyboardInterrupt:
        if owned is not None:
            _remove(tmp)
            _remove(scratch)
        raise
    except Exception as exc:  # one bad file never stops the batch
        res.status = "failed"
        res.reason = f"{type(exc).__name__}: {exc}"
        res.info["traceback"] = traceback.format_exc(limit=4)
        res.output = None
        if owned is not None and not _remove(tmp):
            res.reason += f" (its unfinished output {tmp} could not be removed)"
    finally:
        if owned is not None:
            _remove(scratch)
            release_lock(lock, owned)
        res.seconds = time.perf_counter() - t0
    return res


def take_lock(lock):
    """Hold an exclusive lock on the file ``lock`` for this run.

    Returns ``(fd, None)`` when it is this run's (give it back with
    :func:`release_lock`), else ``(None, holder)``. Runs writing the same
    output (two batches into one folder) would remove each other's temporary
    files: the second one skips the file instead. The lock is the kernel's
    (``flock``), so a killed run's is free at once; the file only names the
    holder for the message.
    """
    me = f"{socket.gethostname()} {os.getpid()}".encode()
    for _ in range(5):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip()
            os.close(fd)
            return None, holder or "unknown"
        try:
            # The holder we raced with may have removed this path (and another
            # run made it anew): the lock counts only on the file there now.
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        return fd, None
    return None, "unknown"


def release_lock(lock, fd):
    """Remove ``lock`` (while holding it, so no run locks the old file) and let go."""
    try:
        os.unlink(lock)
    except FileNotFoundError:
        pass
    os.close(fd)


def _compute_and_write(src, found, plan, options, tmp, scratch, client, chunk_progress):
    if plan["_levels"]:
        return _write_pyramid(src, found, plan, options, tmp, scratch, client, chunk_progress)
    specs, meta_out, axes = plan["_specs"], plan["_meta_out"], plan["_axes"]
    fmt = plan["format"]
    out_shape = tuple(specs[-1].output_shape)
    dtype = np.dtype(plan["dtype_out"])
    if not use_chunks(src, options):
        data = src.read()
        out = options.pipeline(data, axes=axes, backend=options.backend)
        out = cast_result(out, data.dtype, options.preserve_dtype)
        if fmt == "tiff":
            write_tiff(tmp, out, output_meta_flavor(meta_out, None))
        else:
            arr = create_output(
                tmp, fmt, out.shape, out.dtype, _store_chunks(out.shape, axes, meta_out), meta_out
            )
            arr[...] = out
        if chunk_progress is not None:
            chunk_progress(1, 1)
        return None
    compute = chunked.parse_chunks(options.chunks, out_shape, axes, meta_out.axes)
    if fmt == "tiff":
        store = _tiff_store_chunks(out_shape, compute, meta_out.axes)
        compute = _in_whole_store_chunks(compute, store)
        target = scratch_array(scratch, out_shape, dtype, store)
    else:
        store = compute
        target = create_output(tmp, fmt, out_shape, dtype, store, meta_out)
    regions = chunked.chunk_grid(out_shape, compute)
    if chunk_progress is not None:
        chunk_progress(0, len(regions))
    kwargs = dict(
        in_dtype=src.dtype,
        preserve_dtype=options.preserve_dtype,
        backend=options.backend,
        rounded=options.pipeline.rounded,
    )
    if client is None:
        for region in regions:
            index = tuple(slice(a, b) for a, b in region)
            target[index] = chunked.compute_region(specs, src.region, region, **kwargs)
            if chunk_progress is not None:
                chunk_progress(1, None)
    else:
        # Absolute paths: a --scheduler cluster's workers run in folders of their own.
        store_path = os.path.abspath(scratch if fmt == "tiff" else _array_path(tmp, fmt))
        jobs = [
            (os.path.abspath(found.path), store_path, specs, region, kwargs, target, None)
            for region in regions
        ]
        with _writers_gate(tmp, client) as run_jobs:
            run_jobs(jobs, chunk_progress)
    if fmt == "tiff":
        flavor_meta = output_meta_flavor(meta_out, None)
        iy = len(out_shape) - (3 if meta_out.axes[-1] == "S" else 2)
        tiled = _written_tiled(flavor_meta, dtype, out_shape)
        write_tiff(
            tmp,
            _tiff_pieces(target, flavor_meta, dtype),
            flavor_meta,
            shape=out_shape,
            dtype=dtype,
            tile=(store[iy], store[iy + 1]) if tiled else None,
        )
    return list(compute)


def _array_path(tmp, fmt, level=0):
    return Path(tmp) / str(level) if fmt == "ome-zarr" else Path(tmp)


class _writers_gate:
    """``with _writers_gate(tmp, client) as run_jobs``: ``run_jobs(jobs,
    progress)`` runs chunk jobs on the dask ``client`` and waits for them,
    every write going through one gate for the run (:func:`write_through_gate`).

    A job is ``(source, store_path, specs, region, kwargs, target, dtype)``
    as :func:`_remote_chunk` takes them (``target``: the output array, for
    its permutation). On Ctrl-C or a failed chunk the rest are cancelled and
    the chunks being written are waited for (a cancelled task runs on)
    before the error goes on and the partial output is removed.
    """

    def __init__(self, tmp, client):
        self.client = client
        # One gate per run: chunks of an earlier, stopped run still computing
        # on a long-lived cluster find theirs gone, never this run's.
        gate = Path(os.path.abspath(tmp))
        self.gate = gate.with_name(f"{gate.name}.{uuid.uuid4().hex[:12]}.writers")

    def __enter__(self):
        self.gate.touch()
        return self.run_jobs

    def run_jobs(self, jobs, progress):
        from distributed import as_completed

        futures = []
        try:
            # Submitted one by one inside the try: an interrupt while
            # submitting must cancel those already running too.
            for source, store_path, specs, region, kwargs, target, dtype in jobs:
                futures.append(
                    self.client.submit(
                        _remote_chunk,
                        source,
                        store_path,
                        specs,
                        region,
                        kwargs,
                        getattr(target, "perm", None),
                        str(self.gate),
                        dtype,
                        pure=False,
                    )
                )
            for fut in as_completed(futures):
                fut.result()
                if progress is not None:
                    progress(1, None)
        except BaseException:
            self.client.cancel(futures)
            close_gate(self.gate)
            raise

    def __exit__(self, *exc):
        _remove(self.gate)
        return False


def _write_pyramid(src, found, plan, options, tmp, scratch, client, chunk_progress):
    """Write the ``--levels`` pyramid of ``src`` to ``tmp``: dataset 0 the
    input in the output dtype, dataset k the recipe applied to dataset k-1
    (dataset 1 to the input itself, so it equals the output of a run
    without ``--levels``). In memory, or chunk by chunk level by level,
    each level reading the one before from the store (a TIFF's levels are
    assembled in ``scratch`` first, then written tile by tile)."""
    axes, metas, levels = plan["_axes"], plan["_level_metas"], plan["_levels"]
    fmt, dtype = plan["format"], np.dtype(plan["dtype_out"])
    shapes = [tuple(shape) for shape in plan["level_shapes"]]
    letters = metas[0].axes
    pipe = options.pipeline
    if not use_chunks(src, options):
        data = src.read()
        pixels = [data.astype(dtype, copy=False)]
        level = data
        for _ in levels:
            out = pipe(level, axes=axes, backend=options.backend)
            level = cast_result(out, data.dtype, options.preserve_dtype)
            pixels.append(level)
        if fmt == "tiff":
            tiles = [_pyramid_tile(shape, letters) for shape in shapes]
            write_tiff_pyramid(tmp, pixels, metas[0], shapes=shapes, dtype=dtype, tiles=tiles)
        else:
            chunks = [_store_chunks(shape, axes, metas[0]) for shape in shapes]
            for arr, level in zip(create_pyramid(tmp, shapes, dtype, chunks, metas), pixels):
                arr[...] = level
        if chunk_progress is not None:
            chunk_progress(1, 1)
        return None
    chunks = [chunked.parse_chunks(options.chunks, sh, axes, letters) for sh in shapes]
    if fmt == "tiff":
        root = scratch
        stores = [_tiff_store_chunks(sh, c, letters) for sh, c in zip(shapes, chunks)]
        chunks = [_in_whole_store_chunks(c, st) for c, st in zip(chunks, stores)]
        arrays = [
            scratch_array(_array_path(root, "ome-zarr", k), sh, dtype, st)
            for k, (sh, st) in enumerate(zip(shapes, stores))
        ]
    else:
        root = tmp
        arrays = create_pyramid(tmp, shapes, dtype, chunks, metas)
    kwargs = dict(
        preserve_dtype=options.preserve_dtype, backend=options.backend, rounded=pipe.rounded
    )
    # Rounds of jobs: dataset 0 and level 1 read the input (None); level k
    # the level before, once it is complete.
    rounds = [[(0, [], None, src.dtype), (1, levels[0], None, src.dtype)]]
    rounds += [[(k, levels[k - 1], k - 1, dtype)] for k in range(2, len(shapes))]
    total = sum(len(chunked.chunk_grid(sh, c)) for sh, c in zip(shapes, chunks))
    if chunk_progress is not None:
        chunk_progress(0, total)

    def level_regions(level_jobs):
        for k, specs, before, in_dtype in level_jobs:
            kw = {**kwargs, "in_dtype": in_dtype}
            for region in chunked.chunk_grid(shapes[k], chunks[k]):
                yield k, specs, before, kw, region

    def remote_job(k, specs, before, kw, region):
        """One chunk as :func:`_remote_chunk` takes it (absolute paths: a
        --scheduler cluster's workers run in folders of their own)."""
        if before is None:
            source = os.path.abspath(found.path)
        else:
            path = os.path.abspath(_array_path(root, "ome-zarr", before))
            source = (path, getattr(arrays[before], "perm", None))
        store_path = os.path.abspath(_array_path(root, "ome-zarr", k))
        return source, store_path, specs, region, kw, arrays[k], dtype

    if client is None:
        for level_jobs in rounds:
            for k, specs, before, kw, region in level_regions(level_jobs):
                read = src.region if before is None else arrays[before].__getitem__
                index = tuple(slice(a, b) for a, b in region)
                arrays[k][index] = _level_region(specs, read, region, kw, dtype)
                if chunk_progress is not None:
                    chunk_progress(1, None)
    else:
        with _writers_gate(tmp, client) as run_jobs:
            for level_jobs in rounds:
                run_jobs([remote_job(*r) for r in level_regions(level_jobs)], chunk_progress)
    if fmt == "tiff":
        flavor_meta = replace(metas[0], flavor="ome")
        iy = letters.index("Y")
        write_tiff_pyramid(
            tmp,
            [_tiff_pieces(arr, flavor_meta, dtype) for arr in arrays],
            metas[0],
            shapes=shapes,
            dtype=dtype,
            tiles=[(st[iy], st[iy + 1]) for st in stores],
        )
    return list(chunks[0])


def _pyramid_tile(shape, letters):
    """The (Y, X) tile of a TIFF level written whole: up to 256 pixels, a multiple of 16."""
    iy = letters.index("Y")
    return tuple(min(_TIFF_TILE, -(-n // 16) * 16) for n in shape[iy : iy + 2])


def _level_region(specs, read, region, kwargs, dtype):
    """``region`` of ``specs``' output (of the input itself when there are
    no specs) from ``read``, in ``dtype``."""
    return chunked.compute_region(specs, read, region, **kwargs).astype(dtype, copy=False)


def _tiff_flavor_written(meta, dtype, shape):
    from .io_tiff import choose_flavor

    return choose_flavor(meta.flavor, meta.axes, dtype, shape)


def _written_tiled(meta, dtype, shape):
    """Whether the TIFF of ``shape`` is written tile by tile, else plane by
    plane (ImageJ reads strips only; see also :func:`_tiles_fit`)."""
    return _tiff_flavor_written(meta, dtype, shape) != "imagej" and _tiles_fit(shape, meta.axes)


def _tiles_fit(shape, letters):
    """Whether a TIFF of ``shape`` can be written tile by tile: its planes
    are the last axes Y, X (S) and X is longer than one pixel (tifffile takes
    a trailing length-1 axis for samples, and the tiles then land wrongly).
    Otherwise it is written plane by plane, each plane its last two axes."""
    plane = "YXS" if letters.endswith("S") else "YX"
    return letters.endswith(plane) and shape[letters.index("X")] > 1


def _store_chunks(shape, axes, meta):
    return chunked.auto_chunks(shape, axes, meta.axes)


def _in_whole_store_chunks(compute, store):
    """``compute`` chunks rounded down to whole ``store`` chunks (at least
    one): each is written by one job, so no two write the same store chunk."""
    return tuple(max(c, s) // s * s for c, s in zip(compute, store))


def _tiff_store_chunks(shape, compute, letters):
    """Scratch-store chunks for a TIFF: one plane deep, tiles of 16*n pixels."""
    out = []
    nd = 3 if letters.endswith("S") else 2
    plane = list(range(len(shape) - nd, len(shape)))
    for i, (n, c) in enumerate(zip(shape, compute)):
        if letters[i] == "S" or (i in plane and not _tiles_fit(shape, letters)):
            out.append(n)
        elif i in plane:
            out.append(max(16, min(c, _TIFF_TILE) // 16 * 16))
        else:
            out.append(1)
    return tuple(out)


def _tiff_pieces(arr, meta, dtype):
    """Pages (ImageJ: whole planes) or tiles of ``arr`` in TIFF order."""
    import itertools

    shape = tuple(arr.shape)
    rgb = meta.axes[-1] == "S"
    plane_nd = 3 if rgb else 2
    lead = shape[: len(shape) - plane_nd]
    ny, nx = shape[len(lead)], shape[len(lead) + 1]
    whole = not _written_tiled(meta, dtype, shape)
    chunks = arr.chunks
    ty, tx = chunks[len(lead)], chunks[len(lead) + 1]
    for page in itertools.product(*[range(n) for n in lead]):
        if whole:
            yield np.asarray(arr[page])
            continue
        for y in range(0, ny, ty):
            for x in range(0, nx, tx):
                yield np.asarray(arr[page + (slice(y, y + ty), slice(x, x + tx))])


_SOURCES = {}


def _remote_chunk(source, store_path, specs, region, kwargs, perm, gate, dtype=None):
    """One chunk on a dask worker: read its halo, compute, write its output chunk
    (through ``gate``: see :func:`write_through_gate`).

    ``source`` is the input file's path, or ``(array_path, perm)`` for a
    level of a pyramid being written (see :func:`open_output`). ``dtype``:
    the dtype the chunk is written in (default: the computed one).
    """
    if isinstance(source, str):
        read = _open_cached(source).region
    else:
        read = open_output(*source).__getitem__
    out = chunked.compute_region(specs, read, region, **kwargs)
    if dtype is not None:
        out = out.astype(dtype, copy=False)
    index = tuple(slice(a, b) for a, b in region)
    write_through_gate(gate, lambda: open_output(store_path, perm).__setitem__(index, out))
    return out.shape


def _open_cached(path):
    """The source at ``path``, kept open on this worker between chunks."""
    # Workers of a long-lived cluster keep sources open between runs: a file
    # replaced since (same path, other inode, size or time) is opened anew.
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    src = _SOURCES.get(key)
    if src is None:
        if len(_SOURCES) > 4:
            for s in _SOURCES.values():
                s.close()
            _SOURCES.clear()
        src = _SOURCES[key] = open_source(path)
    return src


def write_through_gate(gate, write):
    """Call ``write()`` while holding the file ``gate`` shared.

    A run that stops takes the gate exclusively (:func:`close_gate`), which
    waits for the writes in flight, and removes it: a chunk computed after
    that raises instead of writing into an output being removed.
    """
    try:
        fd = os.open(gate, os.O_RDONLY)
    except FileNotFoundError:
        raise RuntimeError(f"the run writing {gate} has stopped") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if os.fstat(fd).st_nlink == 0:  # removed while this chunk waited
            raise RuntimeError(f"the run writing {gate} has stopped")
        write()
    finally:
        os.close(fd)


def _close_stale_gates(tmp):
    """Close the writers gates of earlier runs of ``tmp``'s output that were
    killed (a stopped run removes its own): with this run holding the
    output's lock they are dead, and chunks of theirs still computing on a
    long-lived cluster must not write into this run's new ``tmp``."""
    tmp = Path(os.path.abspath(tmp))
    for gate in tmp.parent.glob(f"{glob.escape(tmp.name)}.*.writers"):
        close_gate(gate)


def close_gate(gate):
    """Wait for the writes through ``gate`` in flight, then stop later ones."""
    try:
        fd = os.open(gate, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.unlink(gate)
    finally:
        os.close(fd)


def summarize(results, seconds):
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    return {**counts, "seconds": round(seconds, 3), "files": [r.to_dict() for r in results]}


__all__ = ["FORMATS", "Found", "Options", "Result", "process", "summarize", "replace"]
