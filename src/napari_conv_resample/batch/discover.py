"""Turn the INPUT arguments (files, folders, globs) into a list of image paths.

Folders are searched recursively for TIFF files and Zarr/OME-Zarr stores
(a ``.zarr`` folder, or any folder holding ``zarr.json``/``.zarray``/``.zgroup``
metadata, is one input and is not searched inside). Hidden entries and this
tool's own temporary outputs are skipped. Each path comes with the part of
it below the folder it was found in, so outputs can mirror the layout.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .io_tiff import is_tiff

ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


class InputError(ValueError):
    """An INPUT argument names nothing usable."""


@dataclass(frozen=True)
class Found:
    path: Path
    rel: Path  # where the output goes, relative to the output folder


def is_zarr(path):
    """Whether ``path`` is a Zarr store (a folder with zarr metadata or named .zarr)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return p.name.lower().endswith(".zarr") or any((p / m).exists() for m in ZARR_MARKERS)


def written_by_this_tool(path):
    """Whether the image at ``path`` is an output of this tool (its mark:
    TIFF ``Software``, Zarr ``written_by``)."""
    from .metadata import WRITER

    try:
        if is_zarr(path):
            import zarr

            return zarr.open(str(path), mode="r").attrs.get("written_by") == WRITER
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            return str(tif.pages[0].software or "").startswith(WRITER)
    except Exception:  # unreadable: not known to be ours
        return False


def is_image_path(path):
    p = Path(path)
    return (p.is_file() and is_tiff(p)) or is_zarr(p)


def _walk(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        keep = []
        for d in dirs:
            if d.startswith("."):
                continue
            full = Path(root) / d
            if is_zarr(full):
                out.append(full)
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if not f.startswith(".") and is_tiff(f):
                out.append(Path(root) / f)
    return sorted(out)


def _inside(path, folders):
    real = os.path.realpath(path)
    return any(real == f or real.startswith(f + os.sep) for f in folders)


def discover(inputs, exclude=()):
    """All image paths named by ``inputs`` (deduplicated, in order).

    Images found by searching a folder or matching a glob are skipped when
    they lie inside one of the ``exclude`` folders (the output folder, so a
    rerun with ``-o`` inside an input folder does not take its own outputs as
    inputs); files named explicitly are always kept.
    """
    found, seen = [], set()
    exclude = [os.path.realpath(e) for e in exclude]

    def add(path, rel, searched=False):
        key = os.path.realpath(path)
        if searched and _inside(key, exclude):
            return
        if key not in seen:
            seen.add(key)
            found.append(Found(Path(path), Path(rel)))

    for arg in inputs:
        arg = str(arg)
        p = Path(arg)
        if p.exists():
            if is_zarr(p) or p.is_file():
                add(p, p.name)
            elif p.is_dir():
                # An output folder equal to the searched one is not excluded: its
                # images are the inputs (a collision is refused later).
                inner = [e for e in exclude if e != os.path.realpath(p)]
                items = [i for i in _walk(p) if not _inside(i, inner)]
                if not items:
                    raise InputError(f"{arg}: no TIFF or Zarr images in this folder")
                for item in items:
                    add(item, item.relative_to(p))
            continue
        if glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            images = [m for m in matches if is_image_path(m)]
            if not images:
                raise InputError(f"{arg}: the pattern matches no TIFF or Zarr image")
            for m in images:
                add(m, Path(m).name, searched=True)
            continue
        raise InputError(f"{arg}: no such file or folder")
    return found
