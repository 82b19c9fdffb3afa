"""The demo scene: a sample image, a downsampled and an upsampled result and
the sampling inspector's layers, with the three widgets docked.

Used by ``python -m napari_conv_resample.demo`` (interactive or rendered to
a PNG) and by the tests.
"""

from __future__ import annotations

import numpy as np

PLUGIN = "napari-conv-resample"
WIDGETS = ("Dilated downsample", "Transpose upsample", "Sampling inspector")


def _sample_image():
    """``(data, layer kwargs)`` of the 2-D nuclei sample (synthetic fallback)."""
    try:
        from ..sample_data import load_sample

        return load_sample("nuclei_2d")
    except Exception as exc:  # noqa: BLE001 - the demo still runs on a synthetic image
        print(f"sample data unavailable ({exc}); using a synthetic image")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    img = np.zeros((256, 256), np.float32)
    for cy, cx, r in rng.uniform((20, 20, 6), (236, 236, 14), (40, 3)):
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return img.astype(np.float32), {"name": "nuclei", "scale": (0.5, 0.5)}


def _dock(viewer, widget_name, factory):
    """Dock a widget through the plugin manager when installed, else directly."""
    try:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, widget_name, tabify=True)
        return widget
    except Exception:  # noqa: BLE001 - not installed as a plugin (e.g. PYTHONPATH=src)
        widget = factory(viewer)
        viewer.window.add_dock_widget(widget, name=widget_name, area="right", tabify=True)
        return widget


def build_scene(viewer, *, pick=None):
    """Fill ``viewer`` with the demo scene; returns the widgets and layers.

    ``pick`` is the output pixel the inspector shows (default: the up
    result's brightest pixel).
    """
    from ._inspector import SamplingInspector
    from ._resample_widgets import DownsampleWidget, UpsampleWidget

    data, meta = _sample_image()
    source = viewer.add_image(data, **meta)
    down = _dock(viewer, WIDGETS[0], DownsampleWidget)
    up = _dock(viewer, WIDGETS[1], UpsampleWidget)
    inspector = _dock(viewer, WIDGETS[2], SamplingInspector)
    down.image.value = source
    down.kernel.value = "gaussian"
    down.size.value = "3"
    down.stride.value = "2"
    down.dilation.value = "2"
    down_layer = down.run(blocking=True)
    up.image.value = down_layer
    up_layer = up.run(blocking=True)
    inspector.recipe_layer.reset_choices()
    inspector.recipe_layer.value = up_layer
    inspector.load_from_layer(up_layer)
    if pick is None:  # the brightest pixel: the middle of a nucleus
        pick = np.unravel_index(np.argmax(up_layer.data), up_layer.data.shape)
    inspector.update(pick)
    return {
        "source": source,
        "down": down_layer,
        "up": up_layer,
        "widgets": (down, up, inspector),
        "inspector_layers": dict(inspector.layers),
    }


def arrange_for_screenshot(viewer, scene, *, field_of_view=40):
    """Grid view: each result beside the input, overlays on top of their grid.

    Every tile shows the same ``field_of_view`` input pixels around the
    picked output pixel.
    """
    ins = scene["inspector_layers"]
    order = [
        scene["source"],
        ins["receptive_field"],
        scene["down"],
        ins["sampled"],
        scene["up"],
        ins["picked"],
        ins["coverage"],
        ins["overlap"],
    ]
    for key in ("coverage", "overlap"):
        ins[key].visible = True
    ins["coverage"].blending = "translucent"
    ins["overlap"].opacity = 0.6
    ins["zero_inserted"].visible = False
    for i, layer in enumerate(order):
        viewer.layers.move(viewer.layers.index(layer), i)
    grid = getattr(getattr(viewer, "canvas", None), "grid", None) or viewer.grid
    grid.stride = 2
    grid.enabled = True
    _process_events()
    viewer.reset_view()
    _process_events()
    picked = ins["picked"]
    centre = picked.data_to_world(picked.data[0])
    source = scene["source"]
    canvas_h, canvas_w = viewer.window._qt_viewer.canvas.size
    rows, cols = grid.actual_shape(viewer.layers)
    tile = min(canvas_w / cols, canvas_h / rows)
    _narrow_docks(viewer, 440)
    _process_events()
    canvas_h, canvas_w = viewer.window._qt_viewer.canvas.size
    tile = min(canvas_w / cols, canvas_h / rows)
    camera = viewer_camera(viewer)
    camera.center = tuple(centre)
    camera.zoom = tile / (field_of_view * float(max(source.scale[-2:])))
    _process_events()


def viewer_camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _process_events():
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        for _ in range(3):
            app.processEvents()


def _narrow_docks(viewer, width):
    """Give the canvas the room: right-hand docks ``width`` pixels wide."""
    from qtpy.QtCore import Qt

    try:
        window = viewer.window._qt_window
        docks = [
            w.native.parent() if hasattr(w, "native") else w.parent()
            for w in viewer.window.dock_widgets.values()
        ]
        docks = [d for d in docks if d is not None]
        if docks:
            window.resizeDocks(docks, [width] * len(docks), Qt.Orientation.Horizontal)
    except Exception:  # noqa: BLE001, S110 - cosmetic only
        pass


DEFAULT_SCREENSHOT = "demo_output/demo.png"
_UNDER_XVFB = "NAPARI_CONV_RESAMPLE_DEMO_XVFB"


def has_display():
    """True when a GUI can open here (always on macOS/Windows)."""
    import sys

    if not sys.platform.startswith("linux"):
        return True
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def reexec_under_xvfb(module, argv):
    """Run ``python -m module argv`` under ``xvfb-run -a``; its exit status.

    ``None`` when ``xvfb-run`` is not installed.
    """
    import os
    import shutil
    import subprocess
    import sys

    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        return None
    env = {**os.environ, _UNDER_XVFB: "1"}
    cmd = [xvfb, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, "-m", module]
    return subprocess.call(cmd + list(argv), env=env)


def render_scene(path, *, size=(1500, 950)):
    """Build the demo scene in a (virtual) display and save a PNG of the window."""
    from pathlib import Path

    import napari

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-conv-resample demo")
    try:
        viewer.window._qt_window.resize(*size)
        scene = build_scene(viewer)
        arrange_for_screenshot(viewer, scene)
        viewer.screenshot(str(path), canvas_only=False, flash=False)
    finally:
        viewer.close()
    return path


def open_scene():
    """Open napari with the demo scene and run its event loop."""
    import napari

    viewer = napari.Viewer(title="napari-conv-resample demo")
    scene = build_scene(viewer)
    arrange_for_screenshot(viewer, scene)
    napari.run()
    return viewer
