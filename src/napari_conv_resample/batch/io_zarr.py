"""Zarr and OME-Zarr (OME-NGFF 0.4 on Zarr v2, 0.5 on Zarr v3) in and out.

OME-Zarr: the first multiscale's axes give the axis letters and units
(``type: space`` axes are the spatial ones); the scale and translation of
its first (full-resolution) dataset, composed with the multiscale's own
``coordinateTransformations``, give the world placement (the lower levels of
a pyramid are read only by the napari reader). Outputs are one
full-resolution dataset ``0`` whose ``coordinateTransformations`` hold the
new ``scale`` and ``translation``, or with ``--levels`` a pyramid: the input
as dataset ``0`` and its downsamplings as ``1``, ``2``, ... (each placed).

Plain Zarr arrays carry this tool's attributes ``axes``/``scale``/
``translate``/``units`` when it wrote them (and Zarr v3 ``dimension_names``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import zarr

from .metadata import (
    CHANNEL_NAMES,
    PROVENANCE,
    RGB_SAMPLES,
    SAMPLES_AS_CHANNELS,
    WRITER,
    ImageMeta,
    channel_names,
    guess_axes,
    normalize_unit,
    samples_are_rgb,
)

NGFF_VERSIONS = ("0.4", "0.5")
_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def _multiscales(attrs):
    attrs = dict(attrs)
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        ome = attrs["ome"]
        return ome.get("multiscales"), ome.get("version", "0.5")
    ms = attrs.get("multiscales")
    if ms:
        return ms, ms[0].get("version", "0.4")
    return None, None


def _ome_attr(attrs, key):
    """An OME-NGFF attribute of a group: under ``ome`` (0.5) or at the top (0.4)."""
    attrs = dict(attrs)
    ome = attrs.get("ome")
    if isinstance(ome, dict) and key in ome:
        return ome[key]
    return attrs.get(key)


def _transforms(items):
    scale = translation = None
    for t in items or []:
        if t.get("type") == "scale" and "scale" in t:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and "translation" in t:
            translation = [float(v) for v in t["translation"]]
    return scale, translation


def _letter(axis):
    name = str(axis.get("name", "")).upper()
    if name in ("T", "C", "Z", "Y", "X"):
        return name
    kind = axis.get("type")
    return {"time": "T", "channel": "C"}.get(kind, "Q")


def _placement(dataset, ms0, ndim):
    """World ``(scale, translate)`` of one dataset of a multiscale ``ms0``:
    its own transforms composed with the multiscale's."""
    s0, t0 = _transforms(dataset.get("coordinateTransformations"))
    s1, t1 = _transforms(ms0.get("coordinateTransformations"))
    scale = np.ones(ndim) if s0 is None else np.asarray(s0)
    trans = np.zeros(ndim) if t0 is None else np.asarray(t0)
    if s1 is not None:  # outer transform applies after the dataset's
        scale, trans = scale * np.asarray(s1), trans * np.asarray(s1)
    if t1 is not None:
        trans = trans + np.asarray(t1)
    return tuple(float(v) for v in scale), tuple(float(v) for v in trans)


def pyramid_levels_ok(shapes, letters):
    """How many of ``shapes`` (level 0 first) form a pyramid: from the
    start, each level non-empty, no larger than the one before, and with
    the time points, channels and samples (T, C, S) of level 0."""
    for k in range(1, len(shapes)):
        shape, before = shapes[k], shapes[k - 1]
        if len(shape) != len(letters) or 0 in shape:
            return k
        if any(n > m for n, m in zip(shape, before)):
            return k
        if any(n != m for a, n, m in zip(letters, shape, shapes[0]) if a in "TCS"):
            return k
    return len(shapes)


def _lower_levels(group, ms0, full, letters):
    """The arrays of an OME-Zarr's levels below the first and their
    placements, as far as they form a pyramid (:func:`pyramid_levels_ok`)."""
    arrays = []
    for d in ms0["datasets"][1:]:
        try:
            arr = group[d["path"]]
        except (KeyError, TypeError):
            break
        if not isinstance(arr, zarr.Array):
            break
        arrays.append(arr)
    n = pyramid_levels_ok([tuple(a.shape) for a in [full, *arrays]], letters) - 1
    places = [_placement(d, ms0, full.ndim) for d in ms0["datasets"][1 : 1 + n]]
    return arrays[:n], places


class ZarrSource:
    """A Zarr array or the full-resolution level of an OME-Zarr image."""

    def __init__(self, path):
        self.path = str(path)
        try:
            node = zarr.open(self.path, mode="r")
        except Exception as exc:
            raise ValueError(f"not a readable Zarr store ({type(exc).__name__}: {exc})") from None
        #: The lower resolutions of an OME-Zarr pyramid (arrays, largest
        #: first) and their world ``(scale, translate)``.
        self.levels, self.level_placements = [], []
        if isinstance(node, zarr.Array):
            self._arr = node
            self.meta = _plain_meta(node)
        else:
            ms, version = _multiscales(node.attrs)
            if not ms and _ome_attr(node.attrs, "bioformats2raw.layout") is not None:
                # bioformats2raw's layout: images in groups 0, 1, ...; the first one.
                try:
                    node = node["0"]
                except KeyError:
                    raise ValueError("a bioformats2raw Zarr store without image '0'") from None
                ms, version = _multiscales(node.attrs)
            if not ms:
                raise ValueError("a Zarr group without OME-NGFF 'multiscales' metadata")
            ms0 = ms[0]
            datasets = ms0.get("datasets") or []
            if not datasets:
                raise ValueError("OME-Zarr multiscales has no datasets")
            self._arr = node[datasets[0]["path"]]
            ndim = self._arr.ndim
            axes_md = ms0.get("axes") or []
            if axes_md and isinstance(axes_md[0], str):  # NGFF 0.3
                axes_md = [{"name": a} for a in axes_md]
            letters = "".join(_letter(a) for a in axes_md) if axes_md else guess_axes(ndim)
            if node.attrs.get(RGB_SAMPLES) is True and "S" not in letters and "C" in letters:
                # This tool's RGB picture: its samples again where a TIFF
                # holds them by plane (just before YX); a z-stack's (CZYX)
                # stay channels.
                rgb = letters.replace("C", "S")
                if self._arr.shape[letters.index("C")] in (3, 4) and rgb.endswith("SYX"):
                    letters = rgb
            if len(letters) != ndim:
                raise ValueError(
                    f"OME-Zarr axes {letters!r} do not match the array's {ndim} dimensions"
                )
            scale, trans = _placement(datasets[0], ms0, ndim)
            self.levels, self.level_placements = _lower_levels(node, ms0, self._arr, letters)
            units = tuple(normalize_unit(a.get("unit")) for a in axes_md) or (None,) * ndim
            omero = _ome_attr(node.attrs, "omero")
            self.meta = ImageMeta(
                letters,
                tuple(float(v) for v in scale),
                tuple(float(v) for v in trans),
                units,
                "ome-zarr",
                {
                    "ngff_version": str(version),
                    "axes_md": axes_md,
                    "name": ms0.get("name"),
                    # Channel names, colours and display windows: presets keep
                    # intensities, so they hold while the channels do (ngff_attrs
                    # drops them if resampling changed their number).
                    "omero": omero,
                    CHANNEL_NAMES: _omero_labels(omero),
                },
            )
        made = node.attrs.get(PROVENANCE)
        if isinstance(made, dict):
            self.meta.extra[PROVENANCE] = made
        self.shape = tuple(int(n) for n in self._arr.shape)
        self.dtype = np.dtype(self._arr.dtype)
        if not self.shape or 0 in self.shape:
            raise ValueError(f"the Zarr image is empty (shape {self.shape})")

    def read(self):
        return np.asarray(self._arr[...])

    def region(self, index):
        return np.asarray(self._arr[index])

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _plain_extra(meta, shape):
    """The attributes of a plain Zarr output besides its placement: how it was
    made, composite samples marked as channels, channel names."""
    out = {k: meta.extra[k] for k in (PROVENANCE, SAMPLES_AS_CHANNELS) if meta.extra.get(k)}
    names = channel_names(meta, shape)
    if names:
        out[CHANNEL_NAMES] = names
    return out


def _plain_meta(arr):
    attrs = dict(arr.attrs)
    ndim = arr.ndim
    axes = attrs.get("axes")
    if not (isinstance(axes, str) and len(axes) == ndim):
        names = getattr(arr.metadata, "dimension_names", None)
        if names and all(n and len(n) == 1 for n in names):
            axes = "".join(n.upper() for n in names)
        else:
            axes = guess_axes(ndim)
    meta = ImageMeta.default(ndim, axes.upper(), "zarr")
    if isinstance(attrs.get("scale"), list) and len(attrs["scale"]) == ndim:
        meta = ImageMeta(
            meta.axes,
            tuple(float(v) for v in attrs["scale"]),
            tuple(float(v) for v in attrs.get("translate", [0.0] * ndim)),
            tuple(normalize_unit(u) for u in attrs.get("units", [None] * ndim)),
            "zarr",
        )
    if attrs.get(SAMPLES_AS_CHANNELS) is True:
        meta.extra[SAMPLES_AS_CHANNELS] = True
    names = attrs.get(CHANNEL_NAMES)
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        meta.extra[CHANNEL_NAMES] = names
    return meta


def _ngff_axes(meta):
    out = []
    for letter, unit in zip(meta.axes, meta.units):
        axis = {"name": letter.lower(), "type": _TYPES.get(letter, "custom")}
        if letter == "S":
            axis["type"] = "channel"
        if unit:
            axis["unit"] = unit
        out.append(axis)
    return out


def ngff_attrs(meta, version="0.4", name=None, shape=None, levels=()):
    """Group attributes of an OME-Zarr image placed by ``meta``
    (``shape``: the array's, to check the channel metadata against): one
    dataset ``0``, and with ``levels`` (the metadata of the lower
    resolutions, largest first) datasets ``1``, ``2``, ... placed by them."""
    ms = {
        "axes": _ngff_axes(meta),
        "datasets": [
            {
                "path": str(i),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [float(v) for v in m.scale]},
                    {"type": "translation", "translation": [float(v) for v in m.translate]},
                ],
            }
            for i, m in enumerate([meta, *levels])
        ],
        "name": name or "image",
    }
    omero = meta.extra.get("omero")
    extra = {}
    names = channel_names(meta, shape)
    if isinstance(omero, dict) and _channels_match(omero, meta.axes, shape):
        extra["omero"] = omero
    elif names:  # from an OME-TIFF: labels only
        extra["omero"] = {"channels": [{"label": n, "active": True} for n in names]}
    if version == "0.5":
        return {"ome": {"version": "0.5", "multiscales": [ms], **extra}}
    ms["version"] = version
    return {"multiscales": [ms], **extra}


def _omero_labels(omero):
    """The channel labels of an ``omero`` block (``None`` unless all have one)."""
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(channels, list) or not channels:
        return None
    labels = [c.get("label") if isinstance(c, dict) else None for c in channels]
    return [str(v) for v in labels] if all(labels) else None


def _channels_match(omero, axes, shape):
    """Whether ``omero`` describes as many channels as the image has (a
    resampled channel axis, ``--axes CZYX``, can change their number)."""
    channels = omero.get("channels")
    if "C" not in axes or shape is None or not isinstance(channels, list):
        return False
    return len(channels) == shape[axes.index("C")]


def ngff_order(axes):
    """Permutation putting ``axes`` in the order NGFF requires: time, channel, space.

    Returns ``(perm, stored_axes)``; a trailing RGB samples axis ``S`` becomes
    the channel axis ``C`` (``YXS`` is stored as ``CYX``) unless there is one.
    """
    rank = {"T": 0, "C": 1, "S": 1, "Z": 2, "Y": 2, "X": 2}
    perm = sorted(range(len(axes)), key=lambda i: (rank.get(axes[i], 1), i))
    stored = "".join(axes[i] for i in perm)
    if "S" in stored and "C" not in stored:
        stored = stored.replace("S", "C")
    return tuple(perm), stored


def ngff_axes_problem(axes):
    """Why an image with ``axes`` cannot be stored as OME-Zarr, or ``None``.

    NGFF 0.4 and 0.5 allow 2 or 3 space axes, at most one time axis and at
    most one channel (or custom) axis: ``CYXS`` (channels of RGB pictures) or
    ``QCYX`` have two of the latter and ``CX`` one space axis.
    """
    _, stored = ngff_order(axes)
    space = sum(a in "ZYX" for a in stored)
    times = stored.count("T")
    others = [a for a in stored if a not in "TZYX"]
    if not 2 <= space <= 3:
        return f"OME-Zarr needs 2 or 3 of the space axes Z, Y, X; axes {axes!r} have {space}"
    if times > 1 or len(others) > 1:
        return (
            f"OME-Zarr allows one time axis and one channel (or other) axis; axes "
            f"{axes!r} have {len(others)} ({''.join(others)}) besides space and time"
        )
    return None


class PermutedArray:
    """A Zarr array stored with its axes permuted, indexed in the image's order."""

    def __init__(self, arr, perm):
        self.arr, self.perm = arr, tuple(perm)
        inv = [0] * len(perm)
        for stored, logical in enumerate(perm):
            inv[logical] = stored
        self.inverse = tuple(inv)
        self.shape = tuple(arr.shape[i] for i in self.inverse)
        self.chunks = tuple(arr.chunks[i] for i in self.inverse)
        self.dtype = arr.dtype
        self.ndim = arr.ndim

    def _index(self, index):
        if index is Ellipsis:
            index = ()
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is Ellipsis for i in index):
            k = index.index(Ellipsis)
            index = index[:k] + (slice(None),) * (self.ndim - len(index) + 1) + index[k + 1 :]
        index = tuple(index) + (slice(None),) * (self.ndim - len(index))
        if not all(isinstance(i, slice) for i in index):
            raise TypeError("PermutedArray takes slices only")
        return tuple(index[i] for i in self.perm)

    def __getitem__(self, index):
        return np.transpose(np.asarray(self.arr[self._index(index)]), self.inverse)

    def __setitem__(self, index, value):
        self.arr[self._index(index)] = np.transpose(np.asarray(value), self.perm)


def open_output(path, perm=None):
    """The output array at ``path`` (for workers), permuted like :func:`create_output`."""
    arr = zarr.open_array(str(path), mode="r+")
    return arr if not perm else PermutedArray(arr, perm)


def create_output(path, kind, shape, dtype, chunks, meta):
    """Create the output store at ``path`` and return the array to fill.

    ``kind`` is ``'zarr'`` (a plain array, Zarr v3, with this tool's
    attributes) or ``'ome-zarr'`` (NGFF 0.4 on Zarr v2 unless the input was
    0.5). The returned array is indexed in ``meta.axes`` order; an OME-Zarr
    whose axes are not in NGFF order (an RGB ``YXS`` image) is stored in
    NGFF order and a :class:`PermutedArray` (with ``.perm``) is returned.
    """
    if kind == "ome-zarr":
        return create_pyramid(path, [shape], dtype, [chunks], [meta])[0]
    shape, chunks = tuple(shape), tuple(chunks)
    return zarr.create_array(
        store=str(path),
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        fill_value=0,
        zarr_format=3,
        dimension_names=[a.lower() for a in meta.axes],
        attributes={
            "axes": meta.axes,
            **meta.to_dict(),
            "written_by": WRITER,
            **_plain_extra(meta, shape),
        },
    )


def _permuted(meta, perm, stored):
    return replace(
        meta,
        axes=stored,
        scale=tuple(meta.scale[i] for i in perm),
        translate=tuple(meta.translate[i] for i in perm),
        units=tuple(meta.units[i] for i in perm),
    )


def create_pyramid(path, shapes, dtype, chunks, metas, *, rgb=None):
    """Create an OME-Zarr image at ``path`` with one dataset per level and
    return their arrays to fill (``0``: the full resolution).

    ``shapes``, ``chunks`` and ``metas`` (placement; the group's other
    attributes come from ``metas[0]``) hold one entry per level, largest
    first. Arrays are indexed in ``metas[0].axes`` order; axes not in NGFF
    order are stored permuted (see :func:`create_output`). The samples of
    an RGB(A) picture become the channel axis, marked :data:`RGB_SAMPLES`
    and coloured red, green, blue in ``omero``.
    """
    if rgb is None:
        rgb = "C" not in metas[0].axes and samples_are_rgb(metas[0], tuple(shapes[0]))
    perm, stored = ngff_order(metas[0].axes)
    if perm != tuple(range(len(perm))):
        arrays = create_pyramid(
            path,
            [[shape[i] for i in perm] for shape in shapes],
            dtype,
            [[c[i] for i in perm] for c in chunks],
            [_permuted(m, perm, stored) for m in metas],
            rgb=rgb,
        )
        return [PermutedArray(arr, perm) for arr in arrays]
    meta = metas[0]
    version = meta.extra.get("ngff_version", "0.4")
    version = version if version in NGFF_VERSIONS else "0.4"
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(path, mode="w", zarr_format=fmt)
    group.attrs.update(
        ngff_attrs(meta, version, meta.extra.get("name"), tuple(shapes[0]), metas[1:])
    )
    group.attrs["written_by"] = WRITER
    if rgb:
        group.attrs[RGB_SAMPLES] = True
        _colour_channels(group, meta, version, shapes[0], np.dtype(dtype))
    if PROVENANCE in meta.extra:
        group.attrs[PROVENANCE] = meta.extra[PROVENANCE]
    if fmt == 3:
        kw = {"dimension_names": [a.lower() for a in meta.axes]}
    else:
        # NGFF (0.2 on) stores Zarr v2 chunks under '/'-separated keys.
        kw = {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    return [
        group.create_array(
            str(i), shape=tuple(shape), dtype=dtype, chunks=tuple(c), fill_value=0, **kw
        )
        for i, (shape, c) in enumerate(zip(shapes, chunks))
    ]


def _colour_channels(group, meta, version, shape, dtype):
    """``omero`` channels red, green, blue (and alpha, hidden) for the
    samples of a picture, so NGFF viewers show its colours."""
    n = shape[meta.axes.index("S") if "S" in meta.axes else meta.axes.index("C")]
    colours = [("R", "FF0000"), ("G", "00FF00"), ("B", "0000FF"), ("A", "FFFFFF")][:n]
    channels = [
        {"label": label, "color": colour, "active": label != "A"} for label, colour in colours
    ]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        window = {"min": int(info.min), "max": int(info.max)}
        window.update(start=window["min"], end=window["max"])
        for c in channels:
            c["window"] = dict(window)
    omero = {"channels": channels, "rdefs": {"model": "color"}}
    if version == "0.5":
        group.attrs["ome"] = {**group.attrs["ome"], "omero": omero}
    else:
        group.attrs["omero"] = omero


def scratch_array(path, shape, dtype, chunks):
    """An uncompressed Zarr array used to assemble a TIFF output chunk by chunk."""
    return zarr.create_array(
        store=str(path),
        shape=tuple(shape),
        dtype=dtype,
        chunks=tuple(chunks),
        compressors=None,
        fill_value=0,
        zarr_format=3,
    )
