"""How the plugin feels: time to result and the longest GUI freeze (issue 5).

Run from the repository root, with a display (or a virtual one)::

    xvfb-run -a python benchmarks/plugin_responsiveness.py

Opens a real napari viewer, adds a 4096x4096 float32 image and a
64x1024x1024 uint16 stack (8 µm-ish spacing), and presses Run in the
Dilated downsample and Transpose upsample widgets as a user would (the work
runs in a napari worker). For each run it prints the time from the click to
the result layer in the viewer (napari drawing it included) and the longest
gap between ticks of a 5 ms timer on the GUI thread: how long the window
stopped responding. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np

try:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication
except ImportError:  # pragma: no cover - optional
    sys.exit("needs napari with a Qt binding: pip install '.[all]'")

from napari_conv_resample._widgets import DownsampleWidget, UpsampleWidget

TICK_MS = 5


def press_run(viewer, widget, timeout_s=120.0):
    """Click Run; return (seconds until the result layer is in the viewer, longest GUI gap)."""
    app = QApplication.instance()
    ticks = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    before = len(viewer.layers)
    timer.start()
    t0 = time.perf_counter()
    ticks.append(t0)
    worker = widget.run()
    if worker is None:
        raise RuntimeError("the widget rejected its parameters")
    while len(viewer.layers) == before or not widget.run_button.enabled:
        app.processEvents()
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError(f"no result after {timeout_s} s")
        time.sleep(0.001)
    done = time.perf_counter()
    # Let napari draw the new layer, then stop the clock.
    for _ in range(5):
        app.processEvents()
    ticks.append(time.perf_counter())
    timer.stop()
    gaps = np.diff(ticks)
    return done - t0, float(gaps.max())


def main():
    rng = np.random.default_rng(0)
    viewer = napari.Viewer(show=True)
    image = viewer.add_image(
        rng.random((4096, 4096), dtype=np.float32), name="image 4096²", scale=(0.2, 0.2)
    )
    stack = viewer.add_image(
        rng.integers(0, 4096, size=(64, 1024, 1024), dtype=np.uint16),
        name="stack 64×1024²",
        scale=(1.0, 0.2, 0.2),
    )
    down, up = DownsampleWidget(viewer), UpsampleWidget(viewer)
    viewer.window.add_dock_widget(down)
    viewer.window.add_dock_widget(up)
    QApplication.instance().processEvents()

    gauss = {"kernel": "gaussian", "size": "", "stride": "2", "dilation": "1"}
    box_d2 = {"kernel": "box", "size": "3", "stride": "2", "dilation": "2"}
    bilinear = {"kernel": "bilinear", "size": "", "stride": "2"}
    cases = [
        (down, image, gauss, "down ×2 gaussian"),
        (down, image, box_d2, "down s2 d2 box3"),
        (up, image, bilinear, "up ×2 bilinear"),
        (down, stack, gauss, "down ×2 gaussian"),
        (up, stack, bilinear, "up ×2 bilinear"),
    ]
    rows = []
    for widget, layer, params, label in cases:
        widget.image.value = layer
        for name, value in params.items():
            getattr(widget, name).value = value
        seconds, gap = press_run(viewer, widget)
        out = viewer.layers[-1]
        rows.append((layer.name, label, out.data.shape, seconds, gap))
        viewer.layers.remove(out)  # keep memory flat between cases

    print(
        f"Machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, napari {napari.__version__}, NumPy {np.__version__}\n"
    )
    print("| layer | widget run | output shape | click to result (s) | longest GUI gap (ms) |")
    print("|---|---|---|---:|---:|")
    for name, label, shape, seconds, gap in rows:
        dims = "×".join(str(v) for v in shape)
        print(f"| {name} | {label} | {dims} | {seconds:.2f} | {1e3 * gap:.0f} |")
    viewer.close()


if __name__ == "__main__":
    main()
