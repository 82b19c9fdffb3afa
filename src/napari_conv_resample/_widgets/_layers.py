"""napari layers <-> the core library: axes, placement, names and recipes.

No Qt here and no index logic: output shapes and world placement come from
:func:`napari_conv_resample.geometry.output_geometry` /
:func:`~napari_conv_resample.geometry.place_output`, the arithmetic from the
operators. Results are napari *layer-data tuples*
``(data, {"scale", "translate", "name", "metadata", ...}, "image")`` so that
their placement is the library's, not the input's (DESIGN §3).
"""

from __future__ import annotations

import json
import time
import weakref
from dataclasses import dataclass

import numpy as np

from ..geometry import DEFAULTS, output_geometry, place_output
from ..operators import compute_dtype, dilated_downsample, transpose_upsample
from ..pipeline import Pipeline, Stage

#: ``layer.metadata`` key holding the recipe (``Pipeline.to_dict()``) of a result.
RECIPE_KEY = "conv_resample_recipe"
#: ``layer.metadata`` key describing the layer the recipe started from.
SOURCE_KEY = "conv_resample_source"
#: Why a result has no recipe (a chain mixing 2-D and 3-D stages).
NO_RECIPE_KEY = "conv_resample_no_recipe"
#: ``layer.metadata`` keys the plugin's reader records about a file.
READER_FILE_KEYS = ("source", "conv_resample_meta")
#: Metadata key marking the Sampling inspector's overlay layers (not inputs).
OVERLAY_KEY = "conv_resample_overlay"

#: Library keywords each widget exposes, in the library's own names.
OP_PARAMS = {
    "down": ("kernel", "size", "stride", "dilation", "padding", "mode"),
    "up": (
        "kernel",
        "size",
        "stride",
        "dilation",
        "padding",
        "output_padding",
        "output_size",
    ),
}

_TIME_OR_CHANNEL = {"t", "time", "c", "ch", "channel", "channels", "frame", "frames"}
ARROWS = {"down": "↓", "up": "↑"}


# --------------------------------------------------------------------------
# layer anatomy


def layer_data(layer):
    """The array to resample: the highest resolution of a multiscale layer."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def data_ndim(layer):
    """Number of axes of the layer's (highest-resolution) array."""
    return len(layer_data(layer).shape)


def spatial_axes(layer, n_spatial):
    """Axes of the layer's array that are filtered (YX or ZYX).

    Non-RGB layers: the last ``n_spatial`` axes (napari puts the displayed
    spatial axes last). RGB(A) layers: the ``n_spatial`` axes before the
    trailing colour axis, which is carried through like a time axis.
    """
    ndim = data_ndim(layer)
    n_world = ndim - 1 if layer.rgb else ndim
    if n_spatial not in (2, 3):
        raise ValueError(f"spatial dims must be 2 (YX) or 3 (ZYX), got {n_spatial!r}")
    if n_spatial > n_world:
        raise ValueError(
            f"layer {layer.name!r} has {n_world} non-colour axes; cannot filter "
            f"{n_spatial} spatial axes"
        )
    end = ndim - 1 if layer.rgb else ndim
    return tuple(range(end - n_spatial, end))


def guess_spatial_dims(layer):
    """2 (YX) or 3 (ZYX) for ``layer``; the widgets let the user change it.

    3-D only when the third-last non-colour axis looks like Z: labelled
    ``z``, or (unlabelled) with a physical spacing different from Y's, as in
    an anisotropic stack, and at least 4 planes. Time-lapses, channel stacks
    and stacks without metadata default to 2-D (each plane on its own), so
    time or channels are never mixed like Z.
    """
    if layer is None:
        return 2
    # A result continues its chain on the dims it was made on (its Y/X scale
    # changed, which would pass for Z spacing).
    made_on = recipe_spatial_dims(layer)
    if made_on in (2, 3):  # the widgets' choices (a 1-D batch recipe is not one)
        return made_on
    shape = layer_data(layer).shape
    n_world = len(shape) - (1 if layer.rgb else 0)
    if n_world < 3:
        return 2
    axis = n_world - 3
    label = _axis_name(layer, axis, n_world)
    if label in _TIME_OR_CHANNEL or shape[axis] < 4 or _is_time_unit(layer, axis):
        return 2
    if label in {"z", "depth", "plane", "planes"}:
        return 3
    scale = tuple(float(v) for v in layer.scale)
    return 3 if not np.isclose(scale[axis], scale[axis + 1]) else 2


def reset_keeping_choice(*combos):
    """``reset_choices()`` on each combo box, keeping what it showed.

    magicgui keys the items by name: a renamed layer's item is replaced, and
    the box would move to (and emit) another layer. The chosen value is put
    back without a signal; only a choice that is gone (its layer removed)
    emits the new one.
    """
    for combo in combos:
        before = combo.value
        with combo.changed.blocked():
            combo.reset_choices()
            kept = before is not None and any(c is before for c in combo.choices)
            if kept:
                combo.value = before
        if not kept and combo.value is not before:
            combo.changed.emit(combo.value)


def spatial_dims_for_choice(widget, layer):
    """Set ``widget.spatial_dims`` for a newly chosen input ``layer``.

    A rename re-emits the chosen layer (magicgui resets the choices): the
    user's choice for that layer stays.
    """
    chosen = getattr(widget, "_dims_layer", None)
    if layer is not None and (chosen is None or chosen() is not layer):
        widget.spatial_dims.value = guess_spatial_dims(layer)
    widget._dims_layer = None if layer is None else weakref.ref(layer)


def _axis_name(layer, axis, n_world):
    """Lower-case name of a world axis: napari's axis label, else a letter of
    ``metadata['axes']`` (e.g. ``'TYX'`` from a reader or the sample data)."""
    labels = tuple(getattr(layer, "axis_labels", ()) or ())
    label = str(labels[axis]).strip().lower() if len(labels) == n_world else ""
    if label and not label.lstrip("-").isdigit():
        return label
    axes = (getattr(layer, "metadata", None) or {}).get("axes")
    if isinstance(axes, str) and len(axes) == n_world:
        return axes[axis].lower()
    return ""


def _is_time_unit(layer, axis):
    units = getattr(layer, "units", None)
    try:
        return str(units[axis].dimensionality) == "[time]"
    except Exception:  # noqa: BLE001 - no or unusual units
        return False


def full_scale_translate(layer):
    """Layer ``scale``/``translate`` with one entry per array axis (RGB: +1, 0)."""
    scale = tuple(float(v) for v in layer.scale)
    translate = tuple(float(v) for v in layer.translate)
    if layer.rgb:
        scale, translate = scale + (1.0,), translate + (0.0,)
    return scale, translate


def input_image_layers(viewer):
    """Image layers a widget offers as inputs: not the inspector's overlays."""
    from napari.layers import Image

    return [
        lyr
        for lyr in viewer.layers
        if isinstance(lyr, Image) and not (lyr.metadata or {}).get(OVERLAY_KEY)
    ]


def follow_layer_names(viewer, refresh):
    """Call ``refresh`` (a widget's method) when a layer is added, removed or
    renamed: choices show names.

    The widget is held weakly, as napari holds connected methods: a closed
    widget is freed, and the connections go with it.
    """
    method = weakref.WeakMethod(refresh)

    def call(*_):
        fn = method()
        if fn is None:
            stop()
        else:
            fn()

    def inserted(event):
        event.value.events.name.connect(call)
        call()

    def stop():
        viewer.layers.events.inserted.disconnect(inserted)
        viewer.layers.events.removed.disconnect(call)
        for layer in viewer.layers:
            layer.events.name.disconnect(call)

    for layer in viewer.layers:
        layer.events.name.connect(call)
    viewer.layers.events.inserted.connect(inserted)
    viewer.layers.events.removed.connect(call)


def rotate_shear(layer, ndim=None, *, parts=False):
    """The layer's ``rotate @ shear`` as one matrix over its ``ndim`` array axes.

    napari maps data to world as ``translate + rotate @ shear @ (scale * index)``
    (then the layer's ``affine``); an RGB layer's colour axis gets identity.
    With ``parts=True``, the two matrices ``(rotate, shear)`` (napari keeps
    the shear as its upper triangle).
    """
    from napari.utils.transforms import CompositeAffine

    n = len(layer.scale)
    mats = [
        CompositeAffine(
            scale=np.ones(n), translate=np.zeros(n), ndim=n, **{name: value}
        ).linear_matrix
        for name, value in (("rotate", layer.rotate), ("shear", layer.shear))
    ]
    out = []
    for m in mats if parts else [mats[0] @ mats[1]]:
        full = np.eye(n if ndim is None else ndim)
        full[:n, :n] = m
        out.append(full)
    return tuple(out) if parts else out[0]


def _world_kwargs(layer):
    """Transforms, units and labels carried over from the input (DESIGN §3)."""
    out = {
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": np.asarray(layer.affine.affine_matrix),
    }
    units = getattr(layer, "units", None)
    if units is not None:
        out["units"] = tuple(str(u) for u in units)
    labels = getattr(layer, "axis_labels", None)
    if labels is not None:
        out["axis_labels"] = tuple(labels)
    return out


# --------------------------------------------------------------------------
# recipes


def layer_recipe(layer):
    """The :class:`Pipeline` stored in a result layer's metadata, or ``None``."""
    return recipe_from_metadata(getattr(layer, "metadata", None))


def recipe_from_metadata(metadata):
    """The :class:`Pipeline` in a layer's ``metadata`` dict, or ``None``."""
    recipe = (metadata or {}).get(RECIPE_KEY)
    if not recipe:
        return None
    return Pipeline.from_json(json.dumps(recipe))


def recipe_spatial_dims(layer):
    """How many spatial axes the layer's recipe filters: its ``spatial_dims``,
    else (recipes made before it was recorded) its source's; ``None`` if unknown."""
    recipe = layer_recipe(layer)
    if recipe is not None and recipe.spatial_dims:
        return recipe.spatial_dims
    shape = (layer_source(layer) or {}).get("spatial_shape")
    return len(shape) if shape else None


def chain_recipe(layer, stage, n_spatial):
    """The recipe of ``stage`` run on ``layer`` with ``n_spatial`` spatial axes.

    ``(pipeline, None)``: the layer's own recipe (if any) plus ``stage``,
    filtering the last ``n_spatial`` spatial axes wherever it runs. ``(None,
    reason)`` when the layer's recipe filtered another number of axes: one
    recipe has one ``spatial_dims``.
    """
    prev = layer_recipe(layer)
    if prev is None:
        return Pipeline([stage], spatial_dims=n_spatial), None
    dims = recipe_spatial_dims(layer) or n_spatial
    if dims != n_spatial:
        return None, (
            f"its stages filter {dims}-D ({'ZYX' if dims == 3 else 'YX'}) and then "
            f"{n_spatial}-D: a recipe filters one set of spatial axes"
        )
    # An integer layer made by a stage was rounded (preserve dtype): the
    # recipe rounds there too, so the batch tool gives the same numbers.
    rounded = prev.rounded
    if np.dtype(layer_data(layer).dtype).kind in "biu":
        rounded += (len(prev.stages) - 1,)
    return Pipeline(prev.stages + [stage], spatial_dims=n_spatial, rounded=rounded), None


def layer_source(layer):
    """Where a result layer's recipe started: name, spatial shape and placement.

    For a layer without a recipe this describes the layer itself.
    """
    meta = getattr(layer, "metadata", None) or {}
    if RECIPE_KEY in meta and SOURCE_KEY in meta:
        return dict(meta[SOURCE_KEY])
    return None


def _source_of(layer, axes, scale, translate):
    existing = layer_source(layer)
    if existing is not None:
        return existing
    shape = layer_data(layer).shape
    return {
        "layer": layer.name,
        "spatial_shape": [int(shape[a]) for a in axes],
        "scale": [scale[a] for a in axes],
        "translate": [translate[a] for a in axes],
    }


def kernel_label(kernel, spec):
    """``gaussian3``, ``bilinear4``, ``box1x2x2``, ``custom5`` ..."""
    size = spec.size
    size_txt = str(size[0]) if len(set(size)) == 1 else "x".join(map(str, size))
    name = kernel if isinstance(kernel, str) else "custom"
    return f"{name}{size_txt}"


def _per_axis_txt(values):
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def result_name(name, op, spec, kernel):
    """E.g. ``cells ↓2 d2 gaussian3`` or ``cells ↑2 bilinear4``."""
    parts = [f"{name} {ARROWS[op]}{_per_axis_txt(spec.stride)}"]
    if any(d != 1 for d in spec.dilation):
        parts.append(f"d{_per_axis_txt(spec.dilation)}")
    parts.append(kernel_label(kernel, spec))
    return " ".join(parts)


# --------------------------------------------------------------------------
# planning and running


@dataclass
class ResamplePlan:
    """Everything needed to resample one layer, resolved before any work."""

    op: str
    layer_name: str
    data: object
    axes: tuple
    params: dict
    geometry: object
    loop_shape: tuple
    loop_axes: tuple
    kwargs: dict
    stage: Stage

    @property
    def n_slices(self):
        return int(np.prod(self.loop_shape, dtype=np.int64)) if self.loop_shape else 1


def plan_resample(layer, op, n_spatial=None, **params):
    """Resolve a down (``op='down'``) or up resampling of a napari image layer.

    ``params`` are the operator's keywords (missing ones at the library's
    defaults); a custom kernel is an array (e.g. another layer's data).
    Raises the library's ``ValueError``/``TypeError`` for bad parameters
    before any work is done.
    """
    if op not in OP_PARAMS:
        raise ValueError(f"op must be 'down' or 'up', got {op!r}")
    unknown = set(params) - set(OP_PARAMS[op])
    if unknown:
        raise TypeError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    params = {k: params.get(k, DEFAULTS[op][k]) for k in OP_PARAMS[op]}
    if not isinstance(params["kernel"], str):
        params["kernel"] = np.asarray(params["kernel"], dtype=np.float64)
    if n_spatial is None:
        n_spatial = guess_spatial_dims(layer)
    data = layer_data(layer)
    axes = spatial_axes(layer, n_spatial)
    scale, translate = full_scale_translate(layer)
    geom = output_geometry(
        op,
        data.shape,
        scale=scale,
        translate=translate,
        linear=rotate_shear(layer, len(data.shape)),
        axes=axes,
        **params,
    )
    loop_axes = tuple(a for a in range(len(data.shape)) if a not in axes)
    loop_shape = tuple(int(data.shape[a]) for a in loop_axes)

    stage = Stage(op, **params)
    pipeline, no_recipe = chain_recipe(layer, stage, len(axes))
    n_world = len(layer.scale)
    # Not carried: the recipe keys (set below) and what the reader recorded of
    # the input's file (its path and voxel size are not this result's).
    metadata = {
        k: v
        for k, v in (layer.metadata or {}).items()
        if k not in (RECIPE_KEY, SOURCE_KEY, NO_RECIPE_KEY, *READER_FILE_KEYS)
    }
    if pipeline is not None:
        metadata[RECIPE_KEY] = pipeline.to_dict()
        metadata[SOURCE_KEY] = _source_of(layer, axes, scale, translate)
    else:
        metadata[NO_RECIPE_KEY] = no_recipe
    kwargs = {
        "name": result_name(layer.name, op, geom.spec, params["kernel"]),
        "scale": geom.scale[:n_world],
        "translate": geom.translate[:n_world],
        "metadata": metadata,
        # channels shown additively stay so (results default to translucent)
        "blending": layer.blending,
        **_world_kwargs(layer),
    }
    if layer.rgb:
        kwargs["rgb"] = True
    else:
        kwargs["colormap"] = layer.colormap.name
    if layer.rgb or isinstance(params["kernel"], str):
        # Normalised presets keep the intensity range: keep the display too.
        kwargs["contrast_limits"] = tuple(float(v) for v in layer.contrast_limits)
    return ResamplePlan(
        op=op,
        layer_name=layer.name,
        data=data,
        axes=axes,
        params=params,
        geometry=geom,
        loop_shape=loop_shape,
        loop_axes=loop_axes,
        kwargs=kwargs,
        stage=stage,
    )


def _out_dtype(in_dtype, preserve_dtype):
    return np.dtype(in_dtype) if preserve_dtype else compute_dtype(in_dtype)


#: Seconds between the progress reports (and cancel points) of :func:`iter_resample`.
YIELD_INTERVAL_S = 0.05


def iter_resample(plan, *, backend="auto", preserve_dtype=False):
    """Generator: resample ``plan`` one time-point/channel slice at a time.

    Yields ``(done, total)`` after a slice at most every
    :data:`YIELD_INTERVAL_S` and after the last one (cancel points for a
    napari worker), and returns the layer-data tuple.
    """
    func = dilated_downsample if plan.op == "down" else transpose_upsample
    data = plan.data
    out = np.empty(plan.geometry.shape, dtype=_out_dtype(data.dtype, preserve_dtype))
    total = plan.n_slices
    ndim = len(data.shape)
    last = time.monotonic()
    for done, idx in enumerate(np.ndindex(*plan.loop_shape), 1):
        where = dict(zip(plan.loop_axes, idx))
        sl = tuple(where.get(a, slice(None)) for a in range(ndim))
        chunk = np.asarray(data[sl])
        out[sl] = func(chunk, backend=backend, preserve_dtype=preserve_dtype, **plan.params)
        # Yield (a cancel point) at most every YIELD_INTERVAL_S: thousands of
        # millisecond-sized slices would otherwise flood the GUI thread's queue.
        now = time.monotonic()
        if now - last >= YIELD_INTERVAL_S or done == total:
            last = now
            yield done, total
    return (out, dict(plan.kwargs), "image")


def resample_layer(layer, op, n_spatial=None, *, backend="auto", preserve_dtype=False, **params):
    """Resample a napari image layer; returns its result as a layer-data tuple.

    The blocking counterpart of the widgets, for scripts and the napari
    console: ``viewer.add_layer(Layer.create(*resample_layer(layer, "down",
    stride=2)))``.
    """
    plan = plan_resample(layer, op, n_spatial, **params)
    gen = iter_resample(plan, backend=backend, preserve_dtype=preserve_dtype)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


# --------------------------------------------------------------------------
# chains of stages on a spatial grid (the inspector)


def chain_geometry(pipeline, spatial_shape, scale, translate, linear=None):
    """Per stage ``(input_shape, output_shape, scale_out, translate_out, spec)``.

    All shapes are spatial only; placement is chained with
    :func:`~napari_conv_resample.geometry.place_output` (``linear``: the
    input's rotate @ shear over the spatial axes, kept by every stage).
    """
    rows = []
    shape = tuple(int(n) for n in spatial_shape)
    scale, translate = tuple(scale), tuple(translate)
    for spec in pipeline.specs(shape):
        s_out, t_out = place_output(spec, scale, translate, linear)
        rows.append((shape, spec.output_shape, s_out, t_out, spec))
        shape, scale, translate = spec.output_shape, s_out, t_out
    return rows


def world_to_index(world, scale, translate, shape=None):
    """Nearest pixel of a grid (``scale``/``translate``) to a world point.

    Returns ``None`` when ``shape`` is given and the point is outside it.
    """
    idx = tuple(int(np.floor((w - t) / s + 0.5)) for w, s, t in zip(world, scale, translate))
    if shape is not None and not all(0 <= i < n for i, n in zip(idx, shape)):
        return None
    return idx


__all__ = [
    "OVERLAY_KEY",
    "NO_RECIPE_KEY",
    "RECIPE_KEY",
    "chain_recipe",
    "recipe_from_metadata",
    "recipe_spatial_dims",
    "SOURCE_KEY",
    "ResamplePlan",
    "chain_geometry",
    "follow_layer_names",
    "full_scale_translate",
    "guess_spatial_dims",
    "reset_keeping_choice",
    "spatial_dims_for_choice",
    "input_image_layers",
    "iter_resample",
    "layer_recipe",
    "layer_source",
    "plan_resample",
    "resample_layer",
    "result_name",
    "rotate_shear",
    "spatial_axes",
    "world_to_index",
]
