"""Shared by the viewer tests: skip cleanly where no napari viewer can open."""

from __future__ import annotations

import os
import sys

import pytest


def skip_without_viewer():
    """Skip the calling test module without napari/Qt or without a display.

    Qt aborts the whole process when it cannot reach a display, so this is
    checked before anything creates a QApplication. Run the viewer tests
    under a virtual display: ``xvfb-run -a python -m pytest -m viewer``.
    """
    pytest.importorskip("napari")
    pytest.importorskip("qtpy")
    pytest.importorskip("pytestqt")
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        pytest.skip(
            "napari viewer tests need a display; run them under xvfb-run -a",
            allow_module_level=True,
        )
