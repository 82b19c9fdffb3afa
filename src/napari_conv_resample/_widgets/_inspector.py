"""Sampling inspector: which input pixels an output pixel reads, shown as layers.

A chain of stages (built here or taken from a result layer's recipe) and a
picked output pixel of the chain's final output. The overlays are updated in
place as the pick moves:

* ``inspector: sampled pixels`` (Labels): the taps the picked pixel reads at
  the last stage, on that stage's input grid;
* ``inspector: receptive field`` (Image): path counts through the whole chain
  on the input layer's grid (0 inside the field = a gridding hole);
* ``inspector: coverage`` (Image): how often each input pixel is read by the
  chain (0 = never read);
* ``inspector: overlap`` and ``inspector: zero-inserted`` for the last
  upsampling stage: taps per upsampled pixel (checkerboard) and the
  fractionally strided view of that stage's input;
* ``inspector: picked pixel`` (Points): the picked output pixel.

Every mask comes from the library (:mod:`napari_conv_resample.masks`,
:meth:`Pipeline.receptive_field`, :meth:`Pipeline.format_summary`); every
placement from :func:`~napari_conv_resample.geometry.place_output`.
"""

from __future__ import annotations

import functools
import json
import re

import napari
import numpy as np
from magicgui import widgets as W
from napari.qt.threading import create_worker
from napari.utils.colormaps import Colormap
from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, QObject

from .._validation import int_tuple
from ..geometry import DEFAULTS, MODES, zero_inserted_placement
from ..kernels import PRESETS
from ..masks import bounding_box, overlap_map, sampled_mask, zero_inserted
from ..pipeline import Pipeline, Stage
from ._layers import (
    NO_RECIPE_KEY,
    OVERLAY_KEY,
    chain_geometry,
    follow_layer_names,
    full_scale_translate,
    input_image_layers,
    layer_data,
    layer_recipe,
    layer_source,
    recipe_spatial_dims,
    reset_keeping_choice,
    rotate_shear,
    spatial_axes,
    spatial_dims_for_choice,
    world_to_index,
)
from ._resample_widgets import SPATIAL_CHOICES, _fmt, parse_value
from ._workers import _Failed, error_message

PREFIX = "inspector: "
#: Keys of :attr:`SamplingInspector.layers` and the layer names they get.
LAYER_NAMES = {
    "sampled": PREFIX + "sampled pixels",
    "receptive_field": PREFIX + "receptive field",
    "coverage": PREFIX + "coverage",
    "overlap": PREFIX + "overlap",
    "zero_inserted": PREFIX + "zero-inserted",
    "picked": PREFIX + "picked pixel",
}
# Inspector overlays are not worth more than this many pixels for the summary.
_SUMMARY_MAX_PIXELS = 1 << 22


@functools.lru_cache(maxsize=16)
def _summary_table(pipeline_json, shape, probe):
    """The chain's summary table on the input's ``shape`` (holes counted on
    the smaller ``probe`` grid). It does not depend on the picked pixel, so
    picks reuse it (0.5 s on a 2048^2 probe)."""
    try:
        return Pipeline.from_json(pipeline_json).format_summary(shape, holes_shape=probe)
    except ValueError as exc:
        return f"(summary unavailable: {exc})"


# Path counts: 0 transparent (holes show the image), then magenta to yellow.
_RF_COLORMAP = Colormap(
    [[0.0, 0.0, 0.0, 0.0], [0.8, 0.0, 0.8, 1.0], [1.0, 1.0, 0.0, 1.0]],
    controls=[0.0, 1e-6, 1.0],
    name="conv-resample paths",
)
# Picks on larger inputs compute their masks in a worker thread.
_SYNC_MAX_PIXELS = 1 << 20


class _DockWatch(QObject):
    """Notes when Qt puts the inspector in a dock (it gets a parent), so that
    a dock closed later (no parent again) is told from a widget never docked."""

    def __init__(self, inspector):
        super().__init__(inspector.native)
        self._inspector = inspector

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and obj.parent() is not None:
            self._inspector._docked = True
        return False


def _first_label(name):
    """The first ``[...]`` of a layer name (the reader's channel: ``cells [DAPI]``)."""
    match = re.search(r"\[([^\]]+)\]", name)
    return match.group(1) if match else None


def _is_source(layer, source):
    """Whether ``layer`` has the spatial shape, scale and translate of a recipe's source."""
    shape = source.get("spatial_shape")
    if not shape:
        return False
    n = len(shape)
    scale, translate = full_scale_translate(layer)
    data_shape = layer_data(layer).shape
    if layer.rgb:
        data_shape, scale, translate = data_shape[:-1], scale[:-1], translate[:-1]
    return (
        tuple(data_shape[-n:]) == tuple(shape)
        and np.allclose(scale[-n:], source.get("scale", ()))
        and np.allclose(translate[-n:], source.get("translate", ()))
    )


def _remove_callback(viewer, callback):
    """Stop picking once the widget is gone.

    Also called from Qt's ``destroyed`` signal, as late as interpreter exit,
    when the viewer may be half torn down: an exception in a Qt slot aborts
    the process (PyQt), so none escapes.
    """
    try:
        if callback in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.remove(callback)
    except Exception:  # noqa: BLE001 - the viewer is gone: nothing to stop
        pass


def _stage_text(stage):
    """``down gaussian k=3 s=2 d=2 p=same reflect``: one short line per stage."""
    p = stage.params
    kernel = p.get("kernel", DEFAULTS[stage.op]["kernel"])
    kernel = kernel if isinstance(kernel, str) else f"custom{np.shape(kernel)}"
    parts = [stage.op, kernel]
    for key, short in (
        ("size", "k"),
        ("stride", "s"),
        ("dilation", "d"),
        ("padding", "p"),
        ("output_padding", "op"),
        ("mode", ""),
    ):
        if key in p and p[key] is not None and not (key == "output_padding" and not p[key]):
            parts.append(f"{short}={_fmt(p[key])}" if short else str(p[key]))
    return " ".join(parts)


class SamplingInspector(W.Container):
    """Dock widget showing sampled pixels, receptive field and coverage."""

    title = "Sampling inspector"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self.pipeline = None
        #: Overlay layers by key (see :data:`LAYER_NAMES`), updated in place.
        self.layers = {}
        #: The last picked final-output index.
        self.out_index_value = None
        self._coverage_cache = (None, None)
        self._pending = None
        self._busy = None

        self.image = W.ComboBox(
            name="image",
            label="input image",
            choices=self._image_choices,
            tooltip="The chain's input; overlays are drawn on its grid",
        )
        self.spatial_dims = W.ComboBox(
            name="spatial_dims", label="spatial dims", choices=SPATIAL_CHOICES, value=2
        )
        self.recipe_layer = W.ComboBox(
            name="recipe_layer",
            label="result layer",
            choices=self._recipe_choices,
            tooltip="A result of the resampling widgets: its recipe gives the chain",
        )
        self.load_button = W.PushButton(name="load_button", text="Use its stages")
        # stage editor, in the library's keyword names
        self.op = W.ComboBox(name="op", choices=["down", "up"], value="down")
        self.kernel = W.ComboBox(name="kernel", choices=list(PRESETS), value="gaussian")
        self.size = W.LineEdit(name="size", value="3")
        self.stride = W.LineEdit(name="stride", value="2")
        self.dilation = W.LineEdit(name="dilation", value="1")
        self.padding = W.LineEdit(name="padding", value="same")
        self.mode = W.ComboBox(name="mode", choices=list(MODES), value=DEFAULTS["down"]["mode"])
        self.output_padding = W.LineEdit(name="output_padding", label="output padding", value="0")
        self.add_button = W.PushButton(name="add_button", text="Add stage")
        self.clear_button = W.PushButton(name="clear_button", text="Clear stages")
        self.stages_text = W.Label(name="stages_text", label="stages", value="(none)")
        self.out_index = W.LineEdit(
            name="out_index",
            label="output pixel",
            value="",
            tooltip="Index in the chain's final output, e.g. 10,12 (or click)",
        )
        self.pick_by_click = W.CheckBox(
            name="pick_by_click", text="pick by clicking in the canvas", value=True
        )
        self.show_button = W.PushButton(name="show_button", text="Show")
        self.summary = W.TextEdit(name="summary", label="summary", value="")
        if hasattr(self.summary.native, "setReadOnly"):
            self.summary.native.setReadOnly(True)
            self.summary.native.setStyleSheet("font-family: monospace;")
            self.summary.native.setLineWrapMode(type(self.summary.native).LineWrapMode.NoWrap)
        self.extend(
            [
                self.image,
                self.spatial_dims,
                self.recipe_layer,
                self.load_button,
                self.op,
                self.kernel,
                self.size,
                self.stride,
                self.dilation,
                self.padding,
                self.mode,
                self.output_padding,
                W.Container(
                    widgets=[self.add_button, self.clear_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.stages_text,
                self.out_index,
                self.pick_by_click,
                self.show_button,
                self.summary,
            ]
        )
        self.op.changed.connect(self._on_op_changed)
        self.image.changed.connect(self._on_image_changed)
        self.load_button.changed.connect(lambda *_: self._load_clicked())
        self.add_button.changed.connect(lambda *_: self._add_clicked())
        self.clear_button.changed.connect(lambda *_: self.set_pipeline(None))
        self.show_button.changed.connect(lambda *_: self._show_clicked())
        follow_layer_names(napari_viewer, self._refresh_choices)
        napari_viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._docked = False
        self._dock_watch = _DockWatch(self)
        self.native.installEventFilter(self._dock_watch)
        self.native.destroyed.connect(
            lambda *_, cb=self._on_mouse, v=napari_viewer: _remove_callback(v, cb)
        )
        self._on_image_changed(self.image.value)

    # ---- choices

    def _image_layers(self):
        return input_image_layers(self._viewer)

    def _image_choices(self, _widget=None):
        return [(lyr.name, lyr) for lyr in self._image_layers()]

    def _recipe_choices(self, _widget=None):
        return [(lyr.name, lyr) for lyr in self._image_layers() if layer_recipe(lyr)]

    def _refresh_choices(self, *_):
        reset_keeping_choice(self.image, self.recipe_layer)

    def _on_image_changed(self, layer):
        spatial_dims_for_choice(self, layer)

    def _on_op_changed(self, op):
        d = DEFAULTS[op]
        self.kernel.value = d["kernel"]
        self.size.value = _fmt(d["size"])
        self.padding.value = _fmt(d["padding"])
        # The widgets' (and library's) default, so typed stages read what a
        # Dilated downsample run with the same values reads.
        self.mode.value = d.get("mode", "zeros")
        self.mode.enabled = op == "down"
        self.output_padding.enabled = op == "up"

    # ---- the chain

    def set_pipeline(self, pipeline):
        """Use ``pipeline`` (a :class:`Pipeline`, list of stages or ``None``)."""
        if isinstance(pipeline, Pipeline):
            # The spatial dims chosen here (set from a loaded recipe) apply.
            pipeline = Pipeline(pipeline.stages)
        elif pipeline is not None:
            pipeline = Pipeline(list(pipeline))
        self.pipeline = pipeline
        self.stages_text.value = (
            "(none)"
            if pipeline is None
            else "\n".join(f"{i}. {_stage_text(s)}" for i, s in enumerate(pipeline.stages, 1))
        )
        self.stages_text.tooltip = repr(pipeline)

    def load_from_layer(self, layer):
        """Take the chain from a result layer's recipe and its source as input."""
        pipeline = layer_recipe(layer)
        if pipeline is None:
            why = (layer.metadata or {}).get(NO_RECIPE_KEY)
            raise ValueError(
                f"layer {layer.name!r} has no conv-resample recipe" + (f": {why}" if why else "")
            )
        source = layer_source(layer) or {}
        name = str(source.get("layer"))
        on_grid = [
            lyr for lyr in self._image_layers() if lyr is not layer and _is_source(lyr, source)
        ]
        # By name among the layers on the recorded grid; then the reader's
        # channel layers of that file ("cells [DAPI]", all on one grid: any
        # one serves) or the name napari numbered ("cells [1]"); else the one
        # layer on the grid (renamed since).
        named = [lyr for lyr in on_grid if lyr.name == name]
        named = named or [lyr for lyr in on_grid if lyr.name.startswith(f"{name} [")]
        label = _first_label(layer.name)  # the result's channel: the input's same one first
        named.sort(key=lambda lyr: _first_label(lyr.name) != label)
        found = named[:1] or on_grid
        if len(found) != 1:
            raise ValueError(
                f"the input layer {source.get('layer')!r} of {layer.name!r} is not in the "
                "viewer: choose it as the input and add the stages by hand"
            )
        self.image.value = found[0]
        dims = recipe_spatial_dims(layer)
        if dims:
            self.spatial_dims.value = dims
        self.set_pipeline(pipeline)
        return pipeline

    def stage_from_editor(self):
        """A :class:`Stage` from the stage editor's fields."""
        op = self.op.value
        params = {
            "kernel": self.kernel.value,
            "size": parse_value(self.size.value, "size"),
            "stride": parse_value(self.stride.value, "stride", allow_none=False),
            "dilation": parse_value(self.dilation.value, "dilation", allow_none=False),
            "padding": parse_value(self.padding.value, "padding", words=("same", "valid")),
        }
        if op == "down":
            params["mode"] = self.mode.value
        else:
            params["output_padding"] = parse_value(
                self.output_padding.value, "output_padding", allow_none=False
            )
        return Stage(op, **params)

    def _guard(self, func, *args):
        try:
            return func(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            show_error(error_message(exc, self.title))
            return None

    def _load_clicked(self):
        if self.recipe_layer.value is None:
            show_error(f"{self.title}: no result layer with a recipe in the viewer")
            return
        if self._guard(self.load_from_layer, self.recipe_layer.value) is not None:
            # In a worker for large images, as picks are: the UI stays live.
            self._guard(lambda: self.update(None, blocking=False))

    def _add_clicked(self):
        stage = self._guard(self.stage_from_editor)
        if stage is not None:
            self._guard(self.add_stage, stage)

    def add_stage(self, stage):
        """Append ``stage`` to the chain and show it; a stage the input's grid
        refuses (stride 0, too little input for its kernel) is not kept."""
        before = self.pipeline
        self.set_pipeline((before.stages if before else []) + [stage])
        try:
            self.update(None, blocking=False)
        except Exception:
            if self.image.value is not None:  # without an input the chain waits for one
                self.set_pipeline(before)
            raise

    def _show_clicked(self):
        text = self.out_index.value.strip()
        index = None if not text else self._guard(parse_value, text, "out_index")
        if text and index is None:
            return  # not a pixel index: the error is shown
        if index is not None and tuple(np.atleast_1d(index)) == self.out_index_value:
            # The field still shows the last pick (perhaps of another chain or
            # input): as an empty field, it keeps it where it fits.
            index = None
        self._guard(lambda: self.update(index, blocking=False))

    # ---- geometry of the chain on the input layer

    def _grid(self):
        layer = self.image.value
        if layer is None:
            raise ValueError("choose the input image layer")
        if self.pipeline is None:
            raise ValueError("add a stage or load the stages of a result layer")
        axes = spatial_axes(layer, self.spatial_dims.value)
        shape = tuple(int(layer_data(layer).shape[a]) for a in axes)
        scale, translate = full_scale_translate(layer)
        scale = tuple(scale[a] for a in axes)
        translate = tuple(translate[a] for a in axes)
        return layer, axes, shape, scale, translate

    def world_to_out_index(self, position):
        """Final-output index under a world ``position`` (``None`` if outside).

        The position goes to the input layer's data coordinates (its
        scale/translate/affine) and from there through the chain's placement
        (:func:`place_output` with unit input grid).
        """
        layer, axes, shape, _, _ = self._grid()
        position = tuple(position)[-layer.ndim :]
        data_pos = np.asarray(layer.world_to_data(position), dtype=float)
        spatial = tuple(data_pos[a] for a in axes)
        rows = chain_geometry(self.pipeline, shape, (1.0,) * len(axes), (0.0,) * len(axes))
        _, out_shape, scale, translate, _ = rows[-1]
        return world_to_index(spatial, scale, translate, out_shape)

    def _on_mouse(self, viewer, event):
        """Left click (not drag) picks the output pixel under the cursor."""
        try:
            if not self.pick_by_click.value or event.button != 1:
                return
            dock = self.native.parent()
        except RuntimeError:  # the widget's Qt object was deleted
            _remove_callback(viewer, self._on_mouse)
            return
        if dock is None:
            if self._docked:  # its dock was closed or removed
                _remove_callback(viewer, self._on_mouse)
                return
            # Never docked (made from a script): it picks all the same.
        elif dock.isHidden():  # its dock is hidden: picks wait for it
            return
        if self.pipeline is None or self.image.value is None:
            return
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if dragged:
            return
        index = self._guard(self.world_to_out_index, event.position)
        if index is not None:
            self._guard(lambda: self.update(index, blocking=False))

    # ---- the overlays

    def update(self, out_index=None, *, blocking=True):
        """Compute and show every overlay for final-output pixel ``out_index``.

        ``None`` keeps the last pick (or the centre pixel). With
        ``blocking=False`` the masks of a large image are computed in a napari
        worker (the overlays change when it is done; a newer pick replaces a
        pending one). Returns the index.
        """
        layer, axes, shape, scale, translate = self._grid()
        # Every stage keeps the input's rotation and shear (place_output).
        linear, extra = self._spatial_transforms(layer, axes)
        rows = chain_geometry(self.pipeline, shape, scale, translate, linear)
        out_shape = rows[-1][1]
        if out_index is None:
            # The last pick, while it is a pixel of this chain's output (the
            # chain or the input may have changed since), else the centre.
            last = self.out_index_value
            fits = last is not None and len(last) == len(out_shape)
            if fits and all(0 <= i < n for i, n in zip(last, out_shape)):
                out_index = last
            else:
                out_index = tuple(n // 2 for n in out_shape)
        out_index = int_tuple(out_index, "out_index", "a pixel index (ints)")
        if len(out_index) != len(out_shape):
            raise ValueError(
                f"out_index {out_index} has {len(out_index)} values; the final output "
                f"has {len(out_shape)} axes (shape {out_shape})"
            )
        if not all(0 <= i < n for i, n in zip(out_index, out_shape)):
            raise ValueError(
                f"output pixel {out_index} is outside the final output of shape {out_shape}"
            )
        self.out_index_value = out_index
        self.out_index.value = ",".join(map(str, out_index))
        ups = [i for i, st in enumerate(self.pipeline.stages) if st.op == "up"]
        image = self._current_image() if ups else None
        job = (self.pipeline, shape, scale, translate, rows, out_index, image, linear)
        units = getattr(layer, "units", None)
        if units is not None:
            extra["units"] = tuple(str(units[a]) for a in axes)
        if blocking or int(np.prod(shape)) <= _SYNC_MAX_PIXELS:
            self._apply(self._compute(*job), extra)
            return out_index
        # The transforms go with their job: a pick queued after switching
        # inputs is drawn with its own input's.
        self._pending = (job, extra)
        if self._busy is None:
            self._start_next()
        return out_index

    def _start_next(self):
        pending, self._pending = self._pending, None
        if pending is None:
            self._busy = None
            return
        job, extra = pending

        def compute():
            try:
                return self._compute(*job)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return _Failed(exc)

        def done(result):
            if isinstance(result, _Failed):
                show_error(error_message(result.exc, self.title))
            else:
                self._apply(result, extra)

        worker = create_worker(
            compute,
            _progress={"desc": "Sampling inspector"},
            _connect={"returned": done, "finished": self._start_next},
            _start_thread=False,
        )
        self._busy = worker
        worker.start()

    def _compute(self, pipeline, shape, scale, translate, rows, out_index, image, linear=None):
        """The overlays as ``(key, data, kind, kwargs)`` plus the summary text.

        Pure computation (no viewer access): safe in a worker thread.
        """
        stages = pipeline.stages
        out = []
        # receptive field through the whole chain (path counts)
        rf = pipeline.receptive_field(shape, out_index)
        out.append(
            (
                "receptive_field",
                rf,
                "image",
                {
                    "scale": scale,
                    "translate": translate,
                    "colormap": _RF_COLORMAP,
                    "blending": "translucent",
                    "opacity": 0.85,
                    "contrast_limits": (0, max(1, int(rf.max()))),
                    "input_grid": True,
                },
            )
        )
        # coverage: how often each input pixel is read by the chain
        out.append(
            (
                "coverage",
                self.coverage(shape, pipeline),
                "image",
                {
                    "scale": scale,
                    "translate": translate,
                    "colormap": "viridis",
                    "blending": "additive",
                    "opacity": 0.5,
                    "visible": False,
                    "input_grid": True,
                },
            )
        )
        # the taps of the last stage, on its own input grid
        last_in, _, _, _, last_spec = rows[-1]
        s_in, t_in = (scale, translate) if len(rows) == 1 else rows[-2][2:4]
        sampled = self.sampled(last_in, out_index, stages[-1], last_spec)
        out.append(
            (
                "sampled",
                sampled.astype(np.uint8),
                "labels",
                {
                    "scale": s_in,
                    "translate": t_in,
                    "opacity": 0.8,
                    "input_grid": len(rows) == 1,
                },
            )
        )
        # the last upsampling stage: overlap map and zero-inserted view
        ups = [i for i, st in enumerate(stages) if st.op == "up"]
        if ups:
            j = ups[-1]
            in_shape, _, s_out, t_out, spec = rows[j]
            overlap = overlap_map(
                in_shape,
                size=spec.size,
                stride=spec.stride,
                dilation=spec.dilation,
                padding=spec.padding,
                output_padding=spec.output_padding,
            )
            out.append(
                (
                    "overlap",
                    overlap,
                    "image",
                    {
                        "scale": s_out,
                        "translate": t_out,
                        "colormap": "cividis",
                        "blending": "additive",
                        "visible": False,
                    },
                )
            )
            zs, zt = zero_inserted_placement(spec, s_out, t_out, linear)
            out.append(
                (
                    "zero_inserted",
                    self.zero_inserted_view(j, image, pipeline),
                    "image",
                    {
                        "scale": zs,
                        "translate": zt,
                        "colormap": "gray",
                        "blending": "translucent",
                        "visible": False,
                    },
                )
            )
        _, _, s_fin, t_fin, _ = rows[-1]
        out.append(
            (
                "picked",
                np.asarray([out_index], dtype=float),
                "points",
                {
                    "scale": s_fin,
                    "translate": t_fin,
                    "face_color": "transparent",
                    "border_color": "red",
                    "border_width": 0.25,
                    "size": 1.5,
                    "symbol": "square",
                },
            )
        )
        text = self.summary_text(shape, out_index, rf, pipeline)
        return out, text

    def _apply(self, result, extra):
        """Show computed overlays (GUI thread), in place where they exist."""
        overlays, text = result
        keys = set()
        for key, data, kind, kwargs in overlays:
            kwargs = dict(kwargs)
            kwargs.pop("input_grid", None)
            # Every stage's grid is placed with the input's rotate/shear
            # (chain_geometry), so every overlay takes its transforms.
            kwargs.update(extra)
            self._show(key, data, kind, **kwargs)
            keys.add(key)
        for key in ("overlap", "zero_inserted"):
            if key not in keys:
                self._remove(key)
        self.summary.value = text

    def coverage(self, shape, pipeline=None):
        """Read counts of every input pixel through the chain (0 = never read).

        Does not depend on the pick: cached per chain and shape.
        """
        pipeline = pipeline or self.pipeline
        key = (pipeline.to_json(), tuple(shape))
        if self._coverage_cache[0] != key:
            self._coverage_cache = (key, self._coverage(shape, pipeline))
        return self._coverage_cache[1]

    def _coverage(self, shape, pipeline):
        return pipeline.coverage_map(shape)

    @staticmethod
    def sampled(in_shape, out_index, stage, spec):
        """Input pixels of the last stage that output ``out_index`` reads."""
        if stage.op == "down":
            return sampled_mask(
                in_shape,
                out_index,
                size=spec.size,
                stride=spec.stride,
                dilation=spec.dilation,
                padding=spec.padding,
                mode=spec.mode,
            )
        return Pipeline([stage]).receptive_field(in_shape, out_index) > 0

    def _current_image(self):
        """The input layer's spatial slice at the viewer's current position."""
        layer, axes, _, _, _ = self._grid()
        data = layer_data(layer)
        point = np.asarray(self._viewer.dims.point)[-layer.ndim :]
        pos = np.asarray(layer.world_to_data(point), dtype=float)
        sl = []
        for a, n in enumerate(data.shape):
            if a in axes or a >= layer.ndim:
                sl.append(slice(None))
            else:
                sl.append(int(np.clip(np.round(pos[a]), 0, n - 1)))
        img = np.asarray(data[tuple(sl)], dtype=np.float64)
        if layer.rgb:
            img = img[..., :3].mean(axis=-1)
        return img

    def zero_inserted_view(self, j, image=None, pipeline=None):
        """The fractionally strided view of stage ``j``'s input (current slice)."""
        pipeline = pipeline or self.pipeline
        stages = pipeline.stages
        img = self._current_image() if image is None else image
        if j > 0:
            img = Pipeline(stages[:j])(img)
        spec = stages[j].spec(img.shape)
        return zero_inserted(
            img,
            size=spec.size,
            stride=spec.stride,
            dilation=spec.dilation,
            padding=spec.padding,
            output_padding=spec.output_padding,
        )

    def summary_text(self, shape, out_index, rf, pipeline=None):
        """Pick, receptive-field box and the pipeline's summary table."""
        pipeline = pipeline or self.pipeline
        found = bounding_box(rf)
        if found is not None:
            lo = tuple(b.start for b in found)
            hi = tuple(b.stop - 1 for b in found)
            box = f"input pixels {lo} .. {hi} (clipped to the image)"
        else:
            box = "no input pixel"
        probe = tuple(int(n) for n in shape)
        total = int(np.prod(probe))
        if total > _SUMMARY_MAX_PIXELS:
            f = (_SUMMARY_MAX_PIXELS / total) ** (1.0 / len(probe))
            probe = tuple(max(16, int(n * f)) for n in probe)
        shape = tuple(int(n) for n in shape)
        table = _summary_table(json.dumps(pipeline.to_dict(), sort_keys=True), shape, probe)
        return (
            f"output pixel {out_index}\nreceptive field: {box}\n"
            f"{int(np.count_nonzero(rf))} input pixels read\n\n{table}"
        )

    @staticmethod
    def _spatial_transforms(layer, axes):
        """The input's rotate @ shear on its spatial ``axes`` and the overlay
        layers' rotate/shear/affine (their spatial blocks: overlays have only
        the spatial axes, e.g. YX of a TYX time-lapse).

        ``(None, {})`` when a transform mixes spatial with other axes (a
        rotation between T and Y): no spatial-only layer can follow it.
        """
        n = layer.ndim
        rotate, shear = rotate_shear(layer, parts=True)
        aff = np.asarray(layer.affine.affine_matrix, dtype=float)
        others = [a for a in range(n) if a not in axes]
        for m in (rotate, shear, aff[:n, :n]):
            if np.abs(m[np.ix_(axes, others)]).max(initial=0) > 1e-12:
                return None, {}
            if np.abs(m[np.ix_(others, axes)]).max(initial=0) > 1e-12:
                return None, {}
        spatial = np.ix_(axes, axes)
        homog = np.ix_(list(axes) + [n], list(axes) + [n])
        extra = {"rotate": rotate[spatial], "shear": shear[spatial], "affine": aff[homog]}
        return rotate[spatial] @ shear[spatial], extra

    def _remove(self, key):
        lyr = self.layers.pop(key, None)
        if lyr is not None and lyr in self._viewer.layers:
            self._viewer.layers.remove(lyr)

    def _show(self, key, data, kind, **kwargs):
        """Create the overlay ``key`` or update it in place."""
        lyr = self.layers.get(key)
        # Points data is (n, ndim): the layer's dimensions are its columns.
        dims = np.shape(data)[-1] if kind == "points" else np.ndim(data)
        if lyr is not None and (lyr not in self._viewer.layers or lyr.ndim != dims):
            self._remove(key)
            lyr = None
        if lyr is None:
            add = getattr(self._viewer, f"add_{kind}")
            lyr = add(data, name=LAYER_NAMES[key], metadata={OVERLAY_KEY: key}, **kwargs)
            self.layers[key] = lyr
            return lyr
        # A reused layer takes the new input's transforms (identity if none).
        lyr.rotate = kwargs.pop("rotate", np.eye(dims))
        lyr.shear = kwargs.pop("shear", np.eye(dims))
        lyr.affine = kwargs.pop("affine", np.eye(dims + 1))
        for k in ("visible", "symbol", "size"):
            kwargs.pop(k, None)
        if "units" in kwargs:
            lyr.units = kwargs.pop("units")
        lyr.scale = kwargs.pop("scale")
        lyr.translate = kwargs.pop("translate")
        if "contrast_limits" in kwargs:
            lyr.contrast_limits_range = kwargs["contrast_limits"]
        lyr.data = data
        if "contrast_limits" in kwargs:
            lyr.contrast_limits = kwargs["contrast_limits"]
        elif kind == "image":
            lo, hi = float(np.min(data)), float(np.max(data))
            lyr.contrast_limits_range = (lo, hi if hi > lo else lo + 1)
            lyr.contrast_limits = (lo, hi if hi > lo else lo + 1)
        return lyr
