"""Dock widgets: Dilated downsample and Transpose upsample.

Each parameter widget is named after the library keyword it sets
(``kernel``, ``size``, ``stride``, ``dilation``, ``padding``, ``mode``,
``output_padding``, ``output_size``, ``backend``, ``preserve_dtype``), so the
GUI, the console and recipe files speak one language.
"""

from __future__ import annotations

import ast
from pathlib import Path

import napari
from magicgui import widgets as W
from napari.layers import Layer
from napari.utils.notifications import show_error, show_info

from ..backends import BACKENDS, BackendUnavailableError, device_name, get_array_module
from ..geometry import DEFAULTS, MODES
from ..kernels import PRESETS
from ._layers import (
    NO_RECIPE_KEY,
    follow_layer_names,
    input_image_layers,
    iter_resample,
    layer_data,
    plan_resample,
    recipe_from_metadata,
    reset_keeping_choice,
    spatial_dims_for_choice,
)
from ._workers import error_message, start_resample_worker

SPATIAL_CHOICES = [("2-D (YX)", 2), ("3-D (ZYX)", 3)]


def parse_value(text, name, *, allow_none=True, words=()):
    """Parse a parameter typed in a line edit: ``2``, ``1,2,2``, ``same``, ``auto``.

    ``auto``/empty give ``None``; ``words`` are accepted verbatim; anything
    else is read as a Python literal (int, tuple, nested pairs).
    """
    text = str(text).strip()
    if allow_none and text.lower() in ("", "auto", "none", "default"):
        return None
    if text.lower() in words:
        return text.lower()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        choices = ", ".join(list(words) + (["auto"] if allow_none else []))
        raise ValueError(
            f"{name}={text!r}: expected an integer, one integer per axis (e.g. 1,2,2)"
            + (f" or one of {choices}" if choices else "")
        ) from None
    if isinstance(value, list):
        value = tuple(value)
    return value


def _fmt(value):
    if value is None:
        return "auto"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


class _ResampleWidget(W.Container):
    """Common parts of the two resampling widgets."""

    op = "down"
    title = ""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._worker = None
        #: The layer added by the last finished run (``None`` before).
        self.last_result = None
        defaults = DEFAULTS[self.op]
        self.image = W.ComboBox(
            name="image",
            label="image",
            choices=self._image_choices,
            tooltip="Image layer to resample (every time point and channel)",
        )
        self.kernel = W.ComboBox(
            name="kernel",
            label="kernel",
            choices=self._kernel_choices,
            value=defaults["kernel"],
            tooltip="A preset, or another image layer used as a custom kernel "
            "(one axis per spatial dimension, used as given)",
        )
        self.size = W.LineEdit(
            name="size",
            value=_fmt(defaults["size"]),
            tooltip="Taps per axis of a preset ('auto': natural size for the "
            "stride); one value or one per axis (1,3,3)",
        )
        self.stride = W.LineEdit(
            name="stride",
            value=_fmt(defaults["stride"]),
            tooltip="Resampling factor; one value or one per axis (1,2,2)",
        )
        self.dilation = W.LineEdit(
            name="dilation",
            value=_fmt(defaults["dilation"]),
            tooltip="Spacing of the kernel taps in pixels; one value or one per axis",
        )
        self.padding = W.LineEdit(
            name="padding",
            value=_fmt(defaults["padding"]),
            tooltip=self._padding_tip,
        )
        self.spatial_dims = W.ComboBox(
            name="spatial_dims",
            label="spatial dims",
            choices=SPATIAL_CHOICES,
            value=2,
            tooltip="Filter YX or ZYX; other axes (time, channel) are looped over",
        )
        self.backend = W.ComboBox(name="backend", choices=list(BACKENDS), value="auto")
        self.device = W.Label(name="device", label="device", value="")
        self.preserve_dtype = W.CheckBox(
            name="preserve_dtype",
            text="preserve dtype",
            value=False,
            tooltip="Return the input dtype (integers rounded and clipped) instead of float32",
        )
        self.run_button = W.PushButton(name="run_button", text="Run")
        self.cancel_button = W.PushButton(name="cancel_button", text="Cancel", enabled=False)
        self.recipe_path = W.FileEdit(
            name="recipe_path",
            label="recipe file",
            mode="w",
            filter="*.json",
            value=Path("recipe.json"),
        )
        self.save_button = W.PushButton(name="save_button", text="Save recipe")
        self.extend(
            [
                self.image,
                self.kernel,
                self.size,
                self.stride,
                self.dilation,
                self.padding,
            ]
            + self._extra_params()
            + [
                self.spatial_dims,
                self.backend,
                self.device,
                self.preserve_dtype,
                W.Container(
                    widgets=[self.run_button, self.cancel_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.recipe_path,
                self.save_button,
            ]
        )
        self.image.changed.connect(self._on_image_changed)
        self.backend.changed.connect(self._update_device)
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.save_button.changed.connect(lambda *_: self.save_recipe())
        follow_layer_names(napari_viewer, self._refresh_choices)
        self._on_image_changed(self.image.value)
        self._update_device()

    _padding_tip = ""

    def _extra_params(self):
        return []

    # ---- choices

    def _image_layers(self):
        return input_image_layers(self._viewer)

    def _image_choices(self, _widget=None):
        return [(lyr.name, lyr) for lyr in self._image_layers()]

    def _kernel_choices(self, _widget=None):
        return [(p, p) for p in PRESETS] + [
            (f"layer: {lyr.name}", lyr) for lyr in self._image_layers()
        ]

    def _refresh_choices(self, *_):
        reset_keeping_choice(self.image, self.kernel)

    def _on_image_changed(self, layer):
        spatial_dims_for_choice(self, layer)

    def _update_device(self, *_):
        try:
            xp = get_array_module(self.backend.value)
            self.device.value = device_name(xp)
        except BackendUnavailableError as exc:
            self.device.value = "unavailable"
            self.device.tooltip = str(exc)

    # ---- parameters

    def params(self):
        """The library keywords set in the widget (``kernel`` may be an array)."""
        kernel = self.kernel.value
        if isinstance(kernel, Layer):
            kernel = layer_data(kernel)  # a multiscale layer's full resolution
        out = {
            "kernel": kernel,
            "size": parse_value(self.size.value, "size"),
            "stride": parse_value(self.stride.value, "stride", allow_none=False),
            "dilation": parse_value(self.dilation.value, "dilation", allow_none=False),
            "padding": self._padding_value(),
        }
        out.update(self._extra_values())
        return out

    def _padding_value(self):
        return parse_value(self.padding.value, "padding", words=("same", "valid"))

    def _extra_values(self):
        return {}

    def plan(self, layer=None):
        """Resolve the resampling of ``layer`` (default: the chosen image)."""
        layer = layer if layer is not None else self.image.value
        if layer is None:
            raise ValueError("choose an image layer to resample")
        return plan_resample(layer, self.op, self.spatial_dims.value, **self.params())

    def pipeline(self):
        """The recipe a run would store: the input's recipe plus this stage,
        on the spatial dims chosen here."""
        metadata = self.plan().kwargs["metadata"]
        pipeline = recipe_from_metadata(metadata)
        if pipeline is None:
            raise ValueError(f"no recipe for this result: {metadata[NO_RECIPE_KEY]}")
        return pipeline

    # ---- actions

    def _add_result(self, result):
        data, kwargs, layer_type = result
        layer = Layer.create(data, kwargs, layer_type)
        self._viewer.add_layer(layer)
        self.last_result = layer
        return layer

    def _set_running(self, running):
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def run(self, *, blocking=False):
        """Resample the chosen layer; the result is added to the viewer.

        With ``blocking=False`` (the Run button) the work runs in a napari
        worker with a progress bar and this returns the worker (``None`` when
        the parameters are rejected; the reason is shown as a notification).
        With ``blocking=True`` it runs here and returns the new layer.
        """
        try:
            plan = self.plan()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            show_error(error_message(exc, self.title))
            return None
        if getattr(self.image.value, "multiscale", False):
            show_info(
                f"{self.title}: {self.image.value.name!r} is multiscale; resampling its "
                "highest resolution (level 0)"
            )
        kw = {
            "backend": self.backend.value,
            "preserve_dtype": self.preserve_dtype.value,
        }
        if blocking:
            try:
                gen = iter_resample(plan, **kw)
                while True:
                    next(gen)
            except StopIteration as stop:
                return self._add_result(stop.value)
            except Exception as exc:  # noqa: BLE001
                show_error(error_message(exc, self.title))
                return None
        worker = start_resample_worker(
            plan,
            on_result=self._add_result,
            desc=f"{self.title}: {plan.kwargs['name']}",
            **kw,
        )
        worker.finished.connect(lambda: self._set_running(False))
        self._worker = worker
        self._set_running(True)
        worker.start()
        return worker

    def cancel(self):
        """Stop the running worker after the slice it is on."""
        if self._worker is not None:
            self._worker.quit()
            show_info(f"{self.title}: cancelled")

    def save_recipe(self, path=None):
        """Write the recipe a run would store (``Pipeline.to_json``) to ``path``."""
        path = Path(path if path is not None else self.recipe_path.value)
        try:
            self.pipeline().to_json(path)
        except Exception as exc:  # noqa: BLE001
            show_error(error_message(exc, f"{self.title}: save recipe"))
            return None
        show_info(f"recipe written to {path}")
        return path


class DownsampleWidget(_ResampleWidget):
    """Dilated downsample: strided, dilated cross-correlation of an image layer."""

    op = "down"
    title = "Dilated downsample"
    _padding_tip = (
        "'same' (ceil(L/stride) outputs), 'valid' or 'auto' (no padding), an int, one per axis, "
        "or (lo,hi) pairs per axis"
    )

    def _extra_params(self):
        self.mode = W.ComboBox(
            name="mode",
            choices=list(MODES),
            value=DEFAULTS["down"]["mode"],
            tooltip="How the border is padded",
        )
        return [self.mode]

    def _extra_values(self):
        return {"mode": self.mode.value}


class UpsampleWidget(_ResampleWidget):
    """Transpose upsample: transposed convolution of an image layer."""

    op = "up"
    title = "Transpose upsample"
    _padding_tip = (
        "'auto' (exactly stride*L outputs), 'valid', an int, one per axis or "
        "(lo,hi) pairs: pixels cropped from each end"
    )

    def _extra_params(self):
        self.output_padding = W.LineEdit(
            name="output_padding",
            label="output padding",
            value=_fmt(DEFAULTS["up"]["output_padding"]),
            tooltip="Extra pixels at the high end, < max(stride, dilation)",
        )
        self.output_size = W.LineEdit(
            name="output_size",
            label="output size",
            value=_fmt(DEFAULTS["up"]["output_size"]),
            tooltip="Wanted output length per spatial axis ('auto': from the "
            "padding); chooses the output padding",
        )
        return [self.output_padding, self.output_size]

    def _padding_value(self):
        return parse_value(self.padding.value, "padding", words=("same", "valid"))

    def _extra_values(self):
        return {
            "output_padding": parse_value(
                self.output_padding.value, "output_padding", allow_none=False
            ),
            "output_size": parse_value(self.output_size.value, "output_size"),
        }
