"""Test configuration: only the ``viewer`` marker of the napari viewer tests."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "viewer: needs a real napari viewer and a display (run under xvfb-run -a)",
    )
