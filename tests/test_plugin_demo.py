"""The main job: the demo scene in a viewer, and ``python -m ...demo`` headless."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from _viewer_support import skip_without_viewer

skip_without_viewer()

from napari_conv_resample import Pipeline  # noqa: E402
from napari_conv_resample._widgets._demo_scene import (  # noqa: E402
    arrange_for_screenshot,
    build_scene,
)

pytestmark = pytest.mark.viewer


def test_demo_scene(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    scene = build_scene(viewer)
    src, down, up = scene["source"], scene["down"], scene["up"]
    assert down.name == f"{src.name} ↓2 d2 gaussian3"
    assert up.name == f"{down.name} ↑2 bilinear4"
    # physical scale of the sample carried through
    np.testing.assert_allclose(down.scale, np.asarray(src.scale) * 2)
    np.testing.assert_allclose(up.scale, src.scale)
    names = {lyr.name for lyr in viewer.layers}
    for key in ("sampled pixels", "receptive field", "coverage", "overlap", "picked pixel"):
        assert f"inspector: {key}" in names
    down_w, up_w, ins = scene["widgets"]
    recipe = Pipeline.from_json(__import__("json").dumps(up.metadata["conv_resample_recipe"]))
    assert ins.pipeline.stages == recipe.stages and recipe.spatial_dims == 2
    assert len(viewer.window.dock_widgets) >= 3
    arrange_for_screenshot(viewer, scene)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.std() > 0


def test_demo_main_headless_writes_png(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    png = tmp_path / "demo.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_conv_resample.demo",
            "--screenshot",
            str(png),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.is_file() and png.stat().st_size > 10_000
    assert f"wrote the demo scene to {png}" in proc.stdout
