"""TIFF in and out (plain, ImageJ hyperstack, OME-TIFF; BigTIFF when large).

Reading keeps the file open and exposes the first image series both as a
whole array and as a lazily sliced zarr view (only the pages/tiles a region
needs are read). Physical metadata comes from ImageJ's ``unit``/``spacing``/
``finterval``/``x|y|zorigin`` and X/YResolution tags, from OME-XML
``PhysicalSize*``/``TimeIncrement`` and the first ``Plane``'s ``Position*``
(converted from their own unit to the pixel size's; written per plane),
or from the JSON description tifffile writes for plain TIFFs (which this tool
fills with ``scale``/``translate``/``units``). Writing puts the updated
metadata back in the same places, and how the image was made (the recipe)
into a private tag (``PROVENANCE_TIFF_TAG``).
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import tifffile

from .metadata import (
    CHANNEL_NAMES,
    LENGTH_METERS,
    PROVENANCE,
    PROVENANCE_TIFF_TAG,
    SAMPLES_AS_CHANNELS,
    TIME_UNITS,
    WRITER,
    ImageMeta,
    channel_names,
    convert_length,
    normalize_unit,
    samples_are_rgb,
    unit_symbol,
)

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
#: Files above this many bytes are written as BigTIFF.
BIGTIFF_BYTES = 2**31
#: A region that tifffile's zarr view cannot read comes from the whole image
#: read into memory when it is at most this large (bytes).
WHOLE_READ_BYTES = 256 << 20
_IMAGEJ_ORDER = "TZCYXS"
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_OME_LETTERS = set("TCZYXS")
#: OME pixel types (float16 and 64-bit integers have none: tifffile refuses them).
_OME_DTYPES = ("int8", "int16", "int32", "uint8", "uint16", "uint32", "float32", "float64", "bool")


def is_tiff(path):
    """Whether ``path`` has a TIFF file name."""
    return str(path).lower().endswith(TIFF_SUFFIXES)


#: What this tool writes in an ImageJ ``Info`` or OME ``Description`` when an
#: axis of the result has length 1: readers drop such axes (ImageJ and OME
#: cannot tell a one-slice Z from none), and :class:`TiffSource` puts them back.
AXES_MARKER = "conv-resample axes="


def _declared_axes(tif):
    """The axes this tool recorded for the file (:data:`AXES_MARKER`), or ``None``."""
    text = None
    if tif.is_imagej:
        text = (tif.imagej_metadata or {}).get("Info")
    elif tif.is_ome and tif.ome_metadata:
        root = ET.fromstring(tif.ome_metadata)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        node = root.find(f"{ns}Image/{ns}Description")
        text = None if node is None else node.text
    if not isinstance(text, str) or not text.startswith(AXES_MARKER):
        return None
    words = text[len(AXES_MARKER) :].split()
    return words[0].upper() if words else None


def _kept_axes(axes, declared):
    """Per axis of ``declared``: whether the stored ``axes`` have it; ``None``
    unless ``axes`` are ``declared`` less some axes."""
    if declared is None or declared == axes or len(set(declared)) != len(declared):
        return None
    kept, i = [], 0
    for letter in declared:
        hit = i < len(axes) and axes[i] == letter
        kept.append(hit)
        i += hit
    return kept if i == len(axes) else None


class TiffSource:
    """The first image series of a TIFF file: shape, dtype, lazy regions, metadata."""

    def __init__(self, path):
        self.path = str(path)
        with _TifffileLog() as log:
            try:
                self._tif = tifffile.TiffFile(self.path)
            except Exception as exc:
                raise ValueError(f"not a readable TIFF file: {exc}{log.text()}") from None
            if not self._tif.pages or not self._tif.series:
                self._tif.close()
                raise ValueError(f"the TIFF file holds no readable image{log.text()}")
        try:
            self._series = self._tif.series[0]
            self.shape = tuple(int(n) for n in self._series.shape)
            self.dtype = np.dtype(self._series.dtype)
            if not self.shape or 0 in self.shape:
                raise ValueError(f"the TIFF image is empty (shape {self.shape})")
            axes = self._series.axes.upper()
            _check_complete(self._tif, axes, self.shape, log.text())
            declared = _declared_axes(self._tif)
            self._kept = _kept_axes(axes, declared)
            if self._kept is not None:
                # Length-1 axes this tool wrote (a stack reduced to one
                # slice): keep them, with their scale and origin.
                sizes = iter(self.shape)
                self.shape = tuple(next(sizes) if k else 1 for k in self._kept)
                axes = declared
            self.meta = read_meta(self._tif, self._series, axes)
            if "S" in axes and samples_are_channels(self._tif, self.meta):
                self.meta.extra[SAMPLES_AS_CHANNELS] = True
            #: What a user should know about how the file is read.
            self.notes = []
            if len(self._tif.series) > 1:
                self.notes.append(
                    f"the file holds {len(self._tif.series)} image series; only the "
                    f"first ({self._series.axes} {tuple(self._series.shape)}) is processed"
                )
            self._zarr = self._whole = None
            self._mapped = None
        except Exception:
            self._tif.close()
            raise

    def read(self):
        """The whole image as a NumPy array."""
        return self._series.asarray().reshape(self.shape)

    def mapped(self):
        """The image memory-mapped (shape :attr:`shape`) when its pixels lie
        uncompressed in one run of the file, else ``None``.

        Such a file (tifffile's default: one strip per page) is one chunk for
        the zarr view, so every region would read the whole image.
        """
        if self._mapped is None:
            self._mapped = False  # tried: a file that cannot be mapped is read through zarr
            # Native byte order only: napari and the arithmetic want it as it is.
            if self._series.dataoffset is not None and self.dtype.isnative:
                try:
                    mapped = tifffile.memmap(self.path, series=0, mode="r")
                    self._mapped = mapped.reshape(self.shape)
                except (ValueError, OSError):  # e.g. a truncated file
                    pass
        return self._mapped if self._mapped is not False else None

    def region(self, index):
        """``image[index]`` (a tuple of slices) read lazily."""
        mapped = self.mapped()
        if mapped is not None:
            part = np.array(mapped[index])
            # Let go of the pages read: they stay in the page cache, not in
            # this process (its resident memory would grow to the file's size).
            base = getattr(mapped, "_mmap", None)
            if base is not None and hasattr(mmap, "MADV_DONTNEED"):
                base.madvise(mmap.MADV_DONTNEED)
            return part
        try:
            if self._kept is None:
                return np.asarray(self.stored()[index])
            # The stored array lacks the length-1 axes put back: index it without them.
            index = tuple(index) + (slice(None),) * (len(self.shape) - len(tuple(index)))
            stored = tuple(ix for ix, keep in zip(index, self._kept) if keep)
            part = np.asarray(self.stored()[stored])
            shape = [len(range(*ix.indices(n))) for ix, n in zip(index, self.shape)]
            return part.reshape(shape)
        except ValueError:
            # tifffile's zarr view fails on some layouts (tiles larger than
            # 1x1 planes): a small image is read whole, once.
            nbytes = int(np.prod(self.shape, dtype=np.float64)) * self.dtype.itemsize
            if nbytes > WHOLE_READ_BYTES:
                raise
            if self._whole is None:
                self._whole = self.read()
            return np.array(self._whole[tuple(index)])

    @property
    def levels(self):
        """The lower resolutions of a pyramid (OME-TIFF SubIFDs, or pages of
        reduced-resolution images tifffile takes as levels): lazy dask
        arrays with the axes of :attr:`shape`, largest first, as far as they
        form a pyramid (:func:`~.io_zarr.pyramid_levels_ok`)."""
        import dask.array as da
        import zarr

        from .io_zarr import pyramid_levels_ok

        stored = self._series.levels
        if len(stored) < 2:
            return []
        shapes = [self.shape] + [self._with_kept_axes(level.shape) for level in stored[1:]]
        n = pyramid_levels_ok(shapes, self.meta.axes)
        return [
            da.from_zarr(zarr.open(self._series.aszarr(level=k), mode="r")).reshape(shapes[k])
            for k in range(1, n)
        ]

    def _with_kept_axes(self, stored_shape):
        """A stored level's shape with the length-1 axes :attr:`shape` puts
        back (``()`` when it does not fit them)."""
        stored_shape = tuple(int(n) for n in stored_shape)
        if self._kept is None:
            return stored_shape
        if len(stored_shape) != sum(self._kept):
            return ()
        sizes = iter(stored_shape)
        return tuple(next(sizes) if keep else 1 for keep in self._kept)

    @property
    def level_placements(self):
        """World ``(scale, translate)`` of each of :attr:`levels` as this tool
        recorded them (TIFF levels have no placement of their own: readers
        scale them by their shapes); ``None`` without a record."""
        made = self.meta.extra.get(PROVENANCE)
        places = made.get("level_placements") if isinstance(made, dict) else None
        try:
            out = [(_floats(p["scale"]), _floats(p["translate"])) for p in places]
        except (TypeError, KeyError, ValueError):
            return None
        if any(len(s) != len(self.shape) or len(t) != len(self.shape) for s, t in out):
            return None
        return out[1:]

    def stored(self):
        """The image as the file stores it, a lazy zarr array (without the
        length-1 axes :attr:`shape` puts back)."""
        if self._zarr is None:
            import zarr

            # level 0: a pyramid's series opens as a group of levels otherwise
            self._zarr = zarr.open(self._series.aszarr(level=0), mode="r")
        return self._zarr

    def close(self):
        self._mapped = None
        self._tif.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _floats(values):
    return tuple(float(v) for v in values)


def samples_are_channels(tif, meta):
    """Whether the samples of ``tif`` are channels: an ImageJ composite (its
    ``mode``) or grey samples (MINISBLACK/MINISWHITE); RGB, YCbCr (JPEG
    colour, decoded to RGB), palette and the rest are colours."""
    if meta.extra.get("mode") in ("composite", "color", "grayscale"):
        return True
    grey = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
    return tif.pages[0].photometric in grey


def _check_complete(tif, axes, shape, log_text=""):
    """Refuse a file holding fewer planes than its ImageJ metadata declares
    (a truncated stack: tifffile says its metadata is invalid and falls back
    to the pages it can read)."""
    declared = (tif.imagej_metadata or {}).get("images")
    if not log_text or not declared or not str(declared).isdigit():
        return
    planes = int(np.prod([n for a, n in zip(axes, shape) if a not in "YXS"], dtype=np.int64))
    if planes < int(declared):
        raise ValueError(
            f"the file is truncated or damaged: its ImageJ metadata declares {declared} "
            f"images, {planes} can be read{log_text}"
        )


class _TifffileLog(logging.Handler):
    """Collect tifffile's log messages while opening a file (they explain corrupt files)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def text(self):
        return f" ({'; '.join(self.messages)})" if self.messages else ""

    def __enter__(self):
        logger = logging.getLogger("tifffile")
        self._propagate = logger.propagate
        logger.addHandler(self)
        logger.propagate = False
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger("tifffile")
        logger.removeHandler(self)
        logger.propagate = self._propagate


def _resolution(page, tag):
    t = page.tags.get(tag)
    if t is None:
        return None
    num, den = t.value
    if not num or not den:
        return None
    return den / num  # pixel size: TIFF stores pixels per unit


def read_meta(tif, series, axes=None):
    """:class:`ImageMeta` of ``series`` in the open ``tif`` (``axes``: its
    axes if not the series', e.g. with length-1 axes put back)."""
    axes = series.axes.upper() if axes is None else axes
    ndim = len(axes)
    scale, translate, units = [1.0] * ndim, [0.0] * ndim, [None] * ndim
    extra = {}

    def put(letter, size=None, unit=None, origin=None):
        i = axes.find(letter)
        if i < 0:
            return
        if size is not None and size > 0 and math.isfinite(size):
            scale[i] = float(size)
        if unit is not None:
            units[i] = normalize_unit(unit)
        if origin is not None and math.isfinite(origin):
            translate[i] = float(origin)

    page = series.pages[0] if series.pages else tif.pages[0]
    if tif.is_ome and tif.ome_metadata:
        flavor = "ome"
        names = _read_ome(tif.ome_metadata, put)
        if names:
            extra[CHANNEL_NAMES] = names
    elif tif.is_imagej:
        flavor = "imagej"
        ij = tif.imagej_metadata or {}
        # ImageJ writes yunit/zunit/tunit only where they differ from unit / "sec".
        unit = ij.get("unit")
        for letter, tag, key in (("X", "XResolution", "xorigin"), ("Y", "YResolution", "yorigin")):
            size = _resolution(page, tag)
            origin = ij.get(key)
            put(
                letter,
                size,
                ij.get("yunit") or unit if letter == "Y" else unit,
                None if origin is None else -float(origin) * (size or 1.0),
            )
        spacing = ij.get("spacing")
        zorigin = ij.get("zorigin")
        put(
            "Z",
            spacing,
            ij.get("zunit") or unit,
            None if zorigin is None else -float(zorigin) * float(spacing or 1.0),
        )
        if ij.get("finterval"):
            put("T", float(ij["finterval"]), ij.get("tunit") or "second")
        for key in ("mode", "loop", "ranges", "min", "max"):
            if key in ij:
                extra[key] = ij[key]
    else:
        flavor = "plain"
        shaped = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
        if "scale" in shaped and len(shaped["scale"]) == ndim:
            scale = [float(v) for v in shaped["scale"]]
            translate = [float(v) for v in shaped.get("translate", [0.0] * ndim)]
            units = [normalize_unit(u) for u in shaped.get("units", [None] * ndim)]
        else:
            unit_tag = page.tags.get("ResolutionUnit")
            unit_code = int(unit_tag.value) if unit_tag is not None else 2
            factor = {3: ("centimeter", 1.0), 4: ("millimeter", 1.0), 5: ("micrometer", 1.0)}
            if unit_code in factor:
                name, _ = factor[unit_code]
                put("X", _resolution(page, "XResolution"), name)
                put("Y", _resolution(page, "YResolution"), name)
    made = _provenance(tif.pages[0])
    if made is not None:
        extra[PROVENANCE] = made
    return ImageMeta(axes, tuple(scale), tuple(translate), tuple(units), flavor, extra)


def _provenance(page):
    """The provenance this tool stored in ``page`` (a dict), or ``None``."""
    tag = page.tags.get(PROVENANCE_TIFF_TAG)
    try:
        made = json.loads(tag.value) if tag is not None else None
    except (TypeError, ValueError):
        return None
    return made if isinstance(made, dict) else None


def _read_ome(xml, put):
    """Put the first image's sizes and positions; return its channel names
    (``[]`` unless every channel has one)."""
    root = ET.fromstring(xml)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    pixels = root.find(f"{ns}Image/{ns}Pixels")
    if pixels is None:
        return []
    names = [c.get("Name") for c in pixels.findall(f"{ns}Channel")]
    plane = pixels.find(f"{ns}Plane")
    for letter in "XYZ":
        size = pixels.get(f"PhysicalSize{letter}")
        unit = pixels.get(f"PhysicalSize{letter}Unit", "µm") if size else None
        origin = None
        if plane is not None and plane.get(f"Position{letter}") is not None:
            origin = float(plane.get(f"Position{letter}"))
            # A stage position has its own unit (e.g. µm with a pixel size
            # in nm): the translate is in the pixel size's unit.
            pos_unit = plane.get(f"Position{letter}Unit")
            if pos_unit is not None:
                if unit is None:
                    unit = pos_unit
                else:
                    converted = convert_length(origin, pos_unit, unit)
                    origin = origin if converted is None else converted
        put(letter, None if size is None else float(size), unit, origin)
    dt = pixels.get("TimeIncrement")
    if dt is not None:
        put("T", float(dt), pixels.get("TimeIncrementUnit", "s"))
    return names if names and all(names) else []


def _imagej_ok(axes, dtype):
    if np.dtype(dtype) not in [np.dtype(d) for d in _IMAGEJ_DTYPES]:
        return False
    if "S" in axes and np.dtype(dtype) != np.uint8:
        return False
    pos = [_IMAGEJ_ORDER.find(a) for a in axes]
    return all(p >= 0 for p in pos) and pos == sorted(pos) and axes.endswith(("YX", "YXS"))


def _ome_ok(axes):
    # tifffile writes OME planes of the last axes YX or YXS only.
    return (
        set(axes) <= _OME_LETTERS and len(set(axes)) == len(axes) and axes.endswith(("YX", "YXS"))
    )


def ome_problem(axes, dtype):
    """Why an image with ``axes`` of ``dtype`` cannot be an OME-TIFF, or ``None``."""
    if not _ome_ok(axes):
        return f"OME names only the axes T, C, Z, Y, X (S), Y X (S) last, not {axes!r}"
    if np.dtype(dtype).name not in _OME_DTYPES:
        return f"OME has no {np.dtype(dtype).name} pixels"
    return None


def choose_flavor(flavor, axes, dtype, shape=None):
    """The TIFF flavor to write: the wanted one if the axes/dtype allow it
    (and ``shape``: tifffile writes an ImageJ X axis of one pixel as samples)."""
    one_wide = shape is not None and "X" in axes and shape[axes.index("X")] == 1
    if flavor == "imagej" and (one_wide or not _imagej_ok(axes, dtype)):
        flavor = "ome"
    if flavor == "ome" and ome_problem(axes, dtype):
        flavor = "plain"
    return flavor


def _imagej_unit(unit):
    """ImageJ's spelling of a length unit (``um``: ImageJ shows it as µm)."""
    return "um" if unit == "micrometer" else unit_symbol(unit)


def _length_unit(meta, letter):
    i = meta.index(letter)
    return None if i is None else meta.units[i]


def _has_unit_axis(axes, shape):
    """Whether an axis other than Y, X and samples has length 1 (readers drop it)."""
    return any(n == 1 and a not in "YXS" for a, n in zip(axes, shape))


def write_kwargs(meta, shape, dtype):
    """``tifffile.imwrite`` keywords that store ``meta`` for an image of ``shape``."""
    flavor = choose_flavor(meta.flavor, meta.axes, dtype, shape)
    axes = meta.axes
    i = meta.index("S")
    rgb = samples_are_rgb(meta, shape)
    kw = {"photometric": "rgb" if rgb else "minisblack", "software": WRITER}
    if PROVENANCE in meta.extra:
        text = json.dumps(meta.extra[PROVENANCE], separators=(",", ":"))
        kw["extratags"] = [(PROVENANCE_TIFF_TAG, "s", 0, text, True)]
    if i is not None:
        # Samples stored by pixel (YXS) or by plane (SYX), whether colours or
        # channels (as channels tifffile would take the last axis for columns).
        kw["planarconfig"] = "contig" if i == len(axes) - 1 else "separate"
    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    # ImageJ reads no BigTIFF: tifffile writes its large hyperstacks as
    # classic TIFF with the data contiguous after one IFD, which ImageJ reads.
    kw["bigtiff"] = flavor != "imagej" and nbytes > BIGTIFF_BYTES - (1 << 24)
    ix, iy = meta.index("X"), meta.index("Y")
    if flavor == "imagej":
        md = {"axes": axes}
        units = {a: _length_unit(meta, a) for a in "XYZ"}
        unit = units["X"] or units["Y"] or units["Z"]
        if unit:
            md["unit"] = _imagej_unit(unit)
        for letter in "YZ":  # as ImageJ writes them: only where they differ
            if units[letter] and units[letter] != unit:
                md[f"{letter.lower()}unit"] = _imagej_unit(units[letter])
        if ix is not None and iy is not None:
            kw["resolution"] = (1.0 / meta.scale[ix], 1.0 / meta.scale[iy])
        for letter, key in (("X", "xorigin"), ("Y", "yorigin"), ("Z", "zorigin")):
            i = meta.index(letter)
            if i is not None and meta.translate[i] != 0:
                md[key] = -meta.translate[i] / meta.scale[i]
        iz = meta.index("Z")
        if iz is not None:
            md["spacing"] = meta.scale[iz]
        it = meta.index("T")
        if it is not None and meta.units[it] in TIME_UNITS:  # a 1 s interval too
            md["finterval"] = meta.scale[it]
            if meta.units[it] != "second":
                md["tunit"] = unit_symbol(meta.units[it])
        for key in ("mode", "loop", "ranges"):
            if key in meta.extra:
                md[key] = meta.extra[key]
        if _has_unit_axis(axes, shape):
            md["Info"] = AXES_MARKER + axes
        kw["imagej"] = True
        kw["metadata"] = md
    elif flavor == "ome":
        md = {"axes": axes}
        plane_axes = [a for a in axes if a not in "YXS"]
        plane_shape = [n for a, n in zip(axes, shape) if a not in "YXS"]
        n_planes = int(np.prod(plane_shape, dtype=np.int64))
        planes = {}
        for letter in "XYZ":
            i = meta.index(letter)
            if i is None:
                continue
            md[f"PhysicalSize{letter}"] = meta.scale[i]
            unit = meta.units[i]
            # OME's default unit is µm: an image without one says "pixel".
            md[f"PhysicalSize{letter}Unit"] = unit_symbol(unit) if unit else "pixel"
            position = np.full(n_planes, meta.translate[i])
            if letter in plane_axes:
                # Planes are stored in C order of the non-YXS axes: each
                # plane's position is that of its own slice.
                k = np.unravel_index(np.arange(n_planes), plane_shape)[plane_axes.index(letter)]
                position = meta.translate[i] + meta.scale[i] * k
            planes[f"Position{letter}"] = [float(v) for v in position]
            if unit:
                planes[f"Position{letter}Unit"] = [unit_symbol(unit)] * n_planes
        it = meta.index("T")
        if it is not None and (meta.units[it] in TIME_UNITS or meta.scale[it] != 1.0):
            md["TimeIncrement"] = meta.scale[it]
            if meta.units[it]:
                md["TimeIncrementUnit"] = unit_symbol(meta.units[it])
        if planes:
            md["Plane"] = planes
        names = channel_names(meta, shape)
        if names:
            md["Channel"] = {"Name": names}
        if _has_unit_axis(axes, shape):
            md["Description"] = AXES_MARKER + axes
        kw["ome"] = True
        kw["metadata"] = md
    else:
        kw["metadata"] = {
            "axes": axes,
            "scale": [float(v) for v in meta.scale],
            "translate": [float(v) for v in meta.translate],
            "units": list(meta.units),
        }
        unit = _length_unit(meta, "X")
        if unit in LENGTH_METERS and ix is not None and iy is not None:
            f = LENGTH_METERS[unit] * 100.0  # the TIFF tags count per centimetre
            kw["resolution"] = (1.0 / (meta.scale[ix] * f), 1.0 / (meta.scale[iy] * f))
            kw["resolutionunit"] = "CENTIMETER"
    return flavor, kw


def write_tiff(path, data, meta, *, shape=None, dtype=None, tile=None):
    """Write ``data`` (an array, or an iterator of pages/tiles) with ``meta``.

    Returns the flavor written (``imagej`` falls back to ``ome``, ``ome`` to
    ``plain`` when the axes or dtype do not allow it).
    """
    shape = tuple(data.shape) if shape is None else tuple(shape)
    dtype = np.dtype(data.dtype if dtype is None else dtype)
    flavor, kw = write_kwargs(meta, shape, dtype)
    if flavor == "imagej":
        tile = None  # ImageJ reads strips only
    if not isinstance(data, np.ndarray):
        kw.update(shape=shape, dtype=dtype)
    if tile is not None:
        kw["tile"] = tuple(tile)
    tifffile.imwrite(path, data, **kw)
    return flavor


def write_tiff_pyramid(path, levels, meta, *, shapes, dtype, tiles):
    """Write a tiled pyramid: level 0 with ``meta`` (OME where the axes and
    dtype allow it, else plain), levels 1, 2, ... as the SubIFDs of each of
    its planes (``subfiletype`` 1, as OME-TIFF pyramids are stored).

    ``levels`` are arrays or iterators of tiles in TIFF order, one per level
    (largest first), of ``shapes`` and ``dtype``; ``tiles``: the (Y, X) tile
    of each. Returns the flavor written.
    """
    dtype = np.dtype(dtype)
    flavor, kw = write_kwargs(replace(meta, flavor="ome"), tuple(shapes[0]), dtype)
    nbytes = sum(int(np.prod(sh, dtype=np.float64)) for sh in shapes) * dtype.itemsize
    kw["bigtiff"] = nbytes > BIGTIFF_BYTES - (1 << 24)
    writer = {k: kw.pop(k) for k in ("bigtiff", "ome") if k in kw}
    plane = {k: kw[k] for k in ("photometric", "planarconfig") if k in kw}
    with tifffile.TiffWriter(path, **writer) as tif:
        for k, (data, shape, tile) in enumerate(zip(levels, shapes, tiles)):
            more = {} if isinstance(data, np.ndarray) else {"shape": tuple(shape), "dtype": dtype}
            if k == 0:
                tif.write(data, tile=tuple(tile), subifds=len(levels) - 1, **more, **kw)
            else:
                tif.write(data, tile=tuple(tile), subfiletype=1, metadata=None, **more, **plane)
    return flavor


def output_meta_flavor(meta, flavor):
    """``meta`` to be written as TIFF ``flavor`` (``None``: keep the input's)."""
    if flavor is None:
        flavor = meta.flavor if meta.flavor in ("plain", "imagej", "ome") else "ome"
    return replace(meta, flavor=flavor)
