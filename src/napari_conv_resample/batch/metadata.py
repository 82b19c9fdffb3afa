"""Axes and physical metadata of an image file, in and out.

Every reader returns an :class:`ImageMeta`: one axis letter per array axis
(``T``, ``C``, ``Z``, ``Y``, ``X``, ``S`` for RGB samples, ``Q``/``I`` for
unknown), the world ``scale`` and ``translate`` of each axis (napari's
pixel-centre convention) and its unit. The spatial axes of a batch job are
the ``Z``, ``Y``, ``X`` axes unless the user names others; the new scale and
translate of a result come from :func:`~napari_conv_resample.geometry.place_output`
applied stage by stage (never a second copy of that formula).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..geometry import place_output

SPATIAL_LETTERS = "ZYX"

#: Unit spellings found in TIFF/ImageJ/OME files, mapped to OME-NGFF names.
_UNIT_ALIASES = {
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "\\u00b5m": "micrometer",
    "micrometer": "micrometer",
    "nm": "nanometer",
    "nanometer": "nanometer",
    "mm": "millimeter",
    "millimeter": "millimeter",
    "cm": "centimeter",
    "centimeter": "centimeter",
    "m": "meter",
    "meter": "meter",
    "pm": "picometer",
    "Å": "angstrom",
    "angstrom": "angstrom",
    "s": "second",
    "sec": "second",
    "second": "second",
    "ms": "millisecond",
    "millisecond": "millisecond",
    "min": "minute",
    "minute": "minute",
    "h": "hour",
    "hr": "hour",
    "hour": "hour",
    "hours": "hour",
    "minutes": "minute",
    "seconds": "second",
    "msec": "millisecond",
}

#: Time units (OME-NGFF names) a T axis is calibrated in.
TIME_UNITS = ("second", "millisecond", "minute", "hour")

#: OME-NGFF unit name -> symbol used by OME-XML and ImageJ.
_SYMBOLS = {
    "micrometer": "µm",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "picometer": "pm",
    "angstrom": "Å",
    "second": "s",
    "millisecond": "ms",
    "minute": "min",
    "hour": "h",
}


#: Metres per length unit (OME-NGFF names).
LENGTH_METERS = {
    "meter": 1.0,
    "centimeter": 1e-2,
    "millimeter": 1e-3,
    "micrometer": 1e-6,
    "nanometer": 1e-9,
    "angstrom": 1e-10,
    "picometer": 1e-12,
}


def convert_length(value, unit, to_unit):
    """``value`` in ``unit`` expressed in ``to_unit`` (any spellings); ``None``
    if either is not a known length unit."""
    a, b = LENGTH_METERS.get(normalize_unit(unit)), LENGTH_METERS.get(normalize_unit(to_unit))
    if a is None or b is None:
        return None
    return value * a / b


def normalize_unit(unit):
    """An NGFF unit name for ``unit`` (``'um'`` -> ``'micrometer'``); ``None`` if none."""
    if unit is None:
        return None
    u = str(unit).strip()
    if not u or u.lower() in ("pixel", "pixels", "none", "inch"):
        return None
    return _UNIT_ALIASES.get(u, _UNIT_ALIASES.get(u.lower(), u))


def unit_symbol(unit):
    """Short symbol of an NGFF unit name (``'micrometer'`` -> ``'µm'``)."""
    if unit is None:
        return None
    return _SYMBOLS.get(unit, unit)


#: What this tool writes as its name into its outputs (TIFF ``Software``, a
#: Zarr attribute ``written_by``): a rerun knows its own results by it.
WRITER = "napari-conv-resample"


#: ``ImageMeta.extra`` key (and the Zarr attribute) holding how this tool made
#: an image: its recipe, the spatial axes it filtered and the input's name,
#: shape and placement (see ``runner.provenance``).
PROVENANCE = "conv_resample"


#: A private TIFF tag (ASCII, JSON) holding the provenance in TIFF outputs:
#: ImageJ and OME keep the image description for their own metadata.
PROVENANCE_TIFF_TAG = 65123


def level0_record(made):
    """The provenance record that says how a file's full-resolution image
    was made: ``made`` itself, or for a pyramid (``levels``: its dataset 0
    is its input, not a result of its recipe) the record of its input when
    dataset 0 is an exact copy of it (``source``); else ``None``."""
    if not isinstance(made, dict) or not made.get("levels"):
        return made
    source = made.get("source")
    # A pyramid of a pyramid: its dataset 0 is the first one's, and so on.
    return level0_record(source) if isinstance(source, dict) else None


def whole_chain(made):
    """The part of a provenance record ``made`` that describes the whole
    chain from the first input to the file's full-resolution image: its
    ``chain`` when it has one, else itself (see :func:`level0_record`)."""
    made = level0_record(made)
    if made is None:
        return None
    return made.get("chain") if isinstance(made.get("chain"), dict) else made


#: ``ImageMeta.extra`` key: the samples axis S holds channels (an ImageJ
#: composite, or samples not stored as RGB), not the colours of one picture.
SAMPLES_AS_CHANNELS = "samples_as_channels"

#: OME-Zarr attribute this tool writes: the channel axis holds the samples
#: of an RGB(A) picture (NGFF has no colour axis), read back as samples S.
RGB_SAMPLES = "rgb_samples"


def samples_are_rgb(meta, shape):
    """Whether the samples axis S of an image of ``shape`` holds the colours
    of one picture (3 or 4 of them, not marked as channels)."""
    i = meta.index("S")
    return i is not None and shape[i] in (3, 4) and not meta.extra.get(SAMPLES_AS_CHANNELS)


#: ``ImageMeta.extra`` key: one name per channel (OME ``Channel Name``,
#: OME-Zarr ``omero`` labels).
CHANNEL_NAMES = "channel_names"


def channel_names(meta, shape):
    """The names of the channels of an image of ``shape`` with ``meta``, or
    ``None`` (none recorded, or their number changed: ``--axes CZYX``)."""
    names = meta.extra.get(CHANNEL_NAMES)
    i = meta.index("C")
    if not names or i is None or shape is None or len(names) != shape[i]:
        return None
    return list(names)


@dataclass(frozen=True)
class ImageMeta:
    """Axes and world placement of an image (one entry per array axis)."""

    axes: str
    scale: tuple
    translate: tuple
    units: tuple
    flavor: str = "plain"  # plain | imagej | ome (TIFF), zarr | ome-zarr
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def default(cls, ndim, axes=None, flavor="plain"):
        """Metadata of an image without any: unit pixels, origin 0."""
        axes = axes or guess_axes(ndim)
        return cls(axes, (1.0,) * ndim, (0.0,) * ndim, (None,) * ndim, flavor)

    def spatial_axes(self):
        """Indices of the Z, Y and X axes."""
        return tuple(i for i, a in enumerate(self.axes) if a in SPATIAL_LETTERS)

    def index(self, letter):
        """Index of the axis ``letter`` or ``None``."""
        i = self.axes.find(letter)
        return None if i < 0 else i

    def to_dict(self):
        """JSON-ready dict (for reports)."""
        return {
            "axes": self.axes,
            "scale": [float(v) for v in self.scale],
            "translate": [float(v) for v in self.translate],
            "units": list(self.units),
        }


def guess_axes(ndim):
    """Axis letters of an array without axes metadata: ``...YX``, unknown leading axes."""
    if ndim == 1:
        return "X"
    return "Q" * (ndim - 2) + "YX"


def resolve_axes(meta, axes_option):
    """The spatial axes for a job: from ``--axes`` or the file's Z/Y/X axes.

    ``axes_option`` is ``None``, a string of axis letters (``'ZYX'``, ``'YX'``)
    or a sequence of ints (negative allowed).
    """
    ndim = len(meta.axes)
    if axes_option is None:
        axes = meta.spatial_axes()
        if not axes:
            raise ValueError(f"the file's axes {meta.axes!r} have no Z, Y or X axis; pass --axes")
        return axes
    if isinstance(axes_option, str):
        out = []
        for letter in axes_option.upper():
            i = meta.index(letter)
            if i is None:
                raise ValueError(
                    f"--axes {axes_option}: the file's axes are {meta.axes!r}, no {letter!r}"
                )
            out.append(i)
    else:
        out = []
        for a in axes_option:
            if not -ndim <= a < ndim:
                raise ValueError(f"--axes: axis {a} is out of range for a {ndim}-D image")
            out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"--axes {axes_option}: names an axis twice")
    if out != sorted(out):
        # Per-axis values (--stride 1,2,2) follow the axes: in the file's order.
        order = "".join(meta.axes[i] for i in sorted(out))
        raise ValueError(
            f"--axes {axes_option}: name the axes in the file's order ({order}); "
            "per-axis values follow that order"
        )
    return tuple(out)


def updated(meta, specs):
    """Metadata of the result of ``specs`` (stages in order) applied to an image.

    Scale and translate are moved stage by stage with
    :func:`~napari_conv_resample.geometry.place_output`; axes, units and
    non-spatial axes are carried over.
    """
    scale, translate = tuple(meta.scale), tuple(meta.translate)
    extra = meta.extra
    for spec in specs:
        scale, translate = place_output(spec, scale, translate)
        if _mixes_axis(spec, meta.index("C")):
            # An output channel is no longer the input channel of that name.
            extra = {k: v for k, v in extra.items() if k not in (CHANNEL_NAMES, "omero")}
    return replace(meta, scale=tuple(scale), translate=tuple(translate), extra=extra)


def _mixes_axis(spec, axis):
    """Whether ``spec`` makes output index i along ``axis`` other than input index i."""
    if axis is None or axis not in spec.axes:
        return False
    j = spec.axes.index(axis)
    taps = (spec.size[j], spec.stride[j], spec.pad_lo[j], spec.pad_hi[j])
    return taps != (1, 1, 0, 0) or spec.output_padding[j] != 0
