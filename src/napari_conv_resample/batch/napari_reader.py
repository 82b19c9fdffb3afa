"""An npe2 reader that opens the batch tool's files *with* their physical placement.

napari's builtin reader returns the pixels of a TIFF or a Zarr store but no
``scale``/``translate`` (and an OME-Zarr group not at all), so a resampled
output would open on top of its input at the wrong size. This reader uses the
batch tool's own metadata readers (:mod:`.io_tiff`, :mod:`.io_zarr`): ImageJ
resolution/spacing/origin, OME-TIFF ``PhysicalSize*``/``Plane`` positions,
OME-Zarr ``coordinateTransformations`` and the plain-TIFF/Zarr attributes this
tool writes. A ``C`` axis becomes ``channel_axis`` (one layer per channel), a
``YXS`` RGB image an RGB layer; units and axis labels are carried over.

Manifest entry (``napari.yaml``)::

    commands:
      - id: napari-conv-resample.read_image
        python_name: napari_conv_resample.batch.napari_reader:get_reader
        title: Open TIFF / OME-Zarr with its voxel size and origin
    readers:
      - command: napari-conv-resample.read_image
        filename_patterns: ["*.tif", "*.tiff", "*.zarr"]
        accepts_directories: true
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from ..pipeline import Pipeline
from .discover import is_zarr
from .io_tiff import TiffSource, is_tiff, samples_are_rgb
from .io_zarr import ZarrSource
from .metadata import PROVENANCE, channel_names, level0_record, whole_chain

#: TIFFs at most this large (bytes) are read into memory; larger ones lazily.
IN_MEMORY_BYTES = 1 << 30


def get_reader(path):
    """npe2 ``napari_get_reader``: a reader for one TIFF file or Zarr store, else ``None``."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if is_zarr(p) or (p.is_file() and is_tiff(p)):
        return read
    return None


def _lazy(src):
    import dask.array as da

    if isinstance(src, ZarrSource):
        return da.from_zarr(src._arr)
    mapped = src.mapped()
    if mapped is not None:  # one uncompressed run: pages are read as they are shown
        return da.from_array(mapped, chunks="auto")
    # The stored array may lack length-1 axes the source puts back.
    return da.from_zarr(src.stored()).reshape(src.shape)


def _data(src):
    nbytes = int(np.prod(src.shape, dtype=np.float64)) * src.dtype.itemsize
    if isinstance(src, ZarrSource) or nbytes > IN_MEMORY_BYTES:
        return _lazy(src), False
    return src.read(), True


def _lower_levels(src, loaded):
    """The levels below the full resolution of ``src``: read now when the
    full resolution was (``loaded``), else lazily."""
    import dask.array as da

    levels = [a if isinstance(a, da.Array) else da.from_zarr(a) for a in src.levels]
    return [a.compute() if loaded else a for a in levels]


#: Contrast limits are taken from at most about this many pixels of a level.
LIMITS_SAMPLE = 1 << 22


def _level_limits(levels, channel_axis, rgb=False):
    """Contrast limits of a pyramid (``levels``, largest first) from its
    smallest level (per channel with ``channel_axis``; one pair over the
    colours, alpha left out, of an RGB layer): napari would take them from
    the first plane it draws of the smallest level, often background only,
    which saturates the image. A large level is sampled
    (:func:`_limits_sample`); where a level (or channel) has no finite value
    (NaNs spread by downsampling) the next larger one is used."""
    smallest = levels[-1]
    n = 1 if channel_axis is None else smallest.shape[channel_axis]
    if np.dtype(smallest.dtype) == bool:
        return [0.0, 1.0] if channel_axis is None else [[0.0, 1.0]] * n
    found = [None] * n
    for level in reversed(levels):
        keep = set() if channel_axis is None else {channel_axis % level.ndim}
        if rgb:
            level = level[..., :3]
            keep.add(level.ndim - 1)
        data = _limits_sample(level, keep)
        planes = [data] if channel_axis is None else np.moveaxis(data, channel_axis, 0)
        found = [old or _limits(plane) for old, plane in zip(found, planes)]
        if all(found):
            break
    found = [limits or [0.0, 1.0] for limits in found]
    return found[0] if channel_axis is None else found


def _limits(values):
    """``[lo, hi]`` of the finite ``values``, or ``None`` without any."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    if not finite.size:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:  # a flat image: from 0, as napari does
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return [lo, hi] if hi > lo else [lo, lo + 1.0]


def _limits_sample(level, keep):
    """``level`` (NumPy or dask) as a NumPy array of about
    :data:`LIMITS_SAMPLE` pixels: a few evenly spaced planes along its
    leading axes and every n-th pixel of its plane (its last two axes not in
    ``keep``; those are taken whole); the whole level when it is that small."""
    shape = level.shape
    if int(np.prod(shape, dtype=np.float64)) <= LIMITS_SAMPLE:
        return np.asarray(level)
    free = [a for a in range(len(shape)) if a not in keep]
    plane = free[-2:]
    steps = {a: max(1, -(-shape[a] // 5)) for a in free[:-2]}
    picked = np.prod([len(range(0, shape[a], s)) for a, s in steps.items()] + [1])
    picked *= np.prod([shape[a] for a in keep] + [1])
    pixels = np.prod([shape[a] for a in plane] + [1])
    step = max(1, math.ceil(math.sqrt(float(picked) * float(pixels) / LIMITS_SAMPLE)))
    steps.update({a: step for a in plane})
    return np.asarray(level[tuple(slice(0, n, steps.get(a, 1)) for a, n in enumerate(shape))])


def _misplaced_level(shape, levels, placements, meta):
    """The first of ``levels`` (numbered from 1) that napari would draw more
    than one of its pixels from its stored ``placements`` along some axis,
    or ``None``. napari puts pixel ``j`` of level k at world
    ``translate + scale * (shape / shape_k) * j`` (level 0's scale and
    translate); checked at both ends of each axis (both are linear in j).
    """
    if not levels or placements is None:
        return None
    for k, (level, (scale, translate)) in enumerate(zip(levels, placements), 1):
        for a, (n0, n, s, t) in enumerate(zip(shape, level.shape, scale, translate)):
            step = meta.scale[a] * n0 / n
            for j in (0, n - 1):
                drawn = meta.translate[a] + step * j
                if abs(drawn - (t + s * j)) > abs(s) * (1 + 1e-9):
                    return k
    return None


def _each(data, func):
    """``func`` applied to an image or to every level of a multiscale list."""
    return [func(a) for a in data] if isinstance(data, list) else func(data)


def layer_data(path):
    """``[(data, kwargs, 'image')]`` for ``path`` with napari's scale/translate/units."""
    p = Path(path)
    src = ZarrSource(p) if is_zarr(p) else TiffSource(p)
    data, loaded = _data(src)
    # A pyramid (OME-Zarr datasets, TIFF SubIFDs): one multiscale layer,
    # placed by its full resolution (napari places the lower levels by
    # their shapes).
    meta = src.meta
    levels = _lower_levels(src, loaded)
    if loaded:
        src.close()
    off = _misplaced_level(src.shape, levels, src.level_placements, meta)
    if off is not None:
        warnings.warn(
            f"{p.name}: napari would draw level {off} of this pyramid more than one of its "
            "pixels away from where the file places it (napari places lower levels by "
            "their shapes alone): opened at full resolution only",
            stacklevel=2,
        )
    elif levels:
        data = [data, *levels]
    axes = meta.axes
    keep = [i for i, a in enumerate(axes) if a not in "CS"]
    name = layer_name(p.name)
    kwargs = {
        "name": name,
        "scale": tuple(float(meta.scale[i]) for i in keep),
        "translate": tuple(float(meta.translate[i]) for i in keep),
        "axis_labels": tuple(axes[i].lower() for i in keep),
        "units": tuple(meta.units[i] or "pixel" for i in keep),
        "metadata": {
            "source": str(p),
            "axes": axes,
            "conv_resample_meta": meta.to_dict(),
            **recipe_metadata(meta.extra.get(PROVENANCE)),
        },
    }
    channels = axes.index("C") if "C" in axes else None
    if "S" in axes:
        s = axes.index("S")
        # ImageJ composites keep fluorescence channels as samples (and
        # this tool writes them back as non-RGB samples): channels, each with
        # its own contrast, not one RGB picture.
        if samples_are_rgb(meta, src.shape):
            # RGB(A), also stored by plane (SYX): napari wants it last.
            if s != len(axes) - 1:
                data = _each(data, lambda a: np.moveaxis(a, s, -1))
            kwargs["rgb"] = True
            if channels is not None and channels > s:
                channels -= 1
        elif channels is None:
            channels = s  # e.g. two samples per pixel, a composite: shown as channels
        else:
            raise ValueError(
                f"{p}: axes {axes!r}: its {src.shape[s]} samples per pixel are channels "
                "besides a channel axis C: napari shows one channel axis"
            )
    if isinstance(data, list):
        kwargs["multiscale"] = True
        if not (kwargs.get("rgb") and np.dtype(data[0].dtype) == np.uint8):
            kwargs["contrast_limits"] = _level_limits(data, channels, kwargs.get("rgb"))
    if channels is not None:
        kwargs["channel_axis"] = channels
        n = (data[0] if isinstance(data, list) else data).shape[channels]
        names = channel_names(meta, src.shape) if "C" in axes else None
        labels = names or [f"c{i}" for i in range(n)]
        kwargs["name"] = [f"{name} [{label}]" for label in labels]
    return [(data, kwargs, "image")]


def layer_name(file_name):
    """The layer name of a file: its name without the image extension."""
    for ext in (".ome.zarr", ".ome.tiff", ".ome.tif", ".zarr", ".tiff", ".tif"):
        if file_name.lower().endswith(ext):
            return file_name[: -len(ext)]
    return file_name


def recipe_metadata(made):
    """Layer metadata giving a batch output the recipe a widget result has
    (its stages, and its input as a source layer named as this reader names
    it), so the inspector and *Save recipe* work on it; ``{}`` without one."""
    from .._widgets._layers import RECIPE_KEY, SOURCE_KEY

    try:
        made = level0_record(made)
        # The whole chain from the first input when the input was an output too.
        whole = whole_chain(made)
        # A record another version wrote, or one edited by hand, is used
        # only when it still reads as a recipe and a source.
        recipe = Pipeline.from_json(json.dumps(whole["recipe"])).to_dict()
        inp = whole["input"]
        where = [inp["axes"].index(a) for a in made["spatial_axes"]]
        source = {
            "layer": layer_name(inp["name"]),
            "spatial_shape": [int(inp["shape"][i]) for i in where],
            "scale": [float(inp["scale"][i]) for i in where],
            "translate": [float(inp["translate"][i]) for i in where],
        }
    except (TypeError, KeyError, ValueError, IndexError, AttributeError):
        return {}
    return {RECIPE_KEY: recipe, SOURCE_KEY: source}


def read(path):
    """npe2 reader function: one path (or a one-element list) to layer data."""
    if isinstance(path, (list, tuple)):
        return [layer for p in path for layer in layer_data(p)]
    return layer_data(path)
