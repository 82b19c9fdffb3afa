"""The npe2 plugin: manifest, widgets found through the plugin manager, menus,
sample data, run on 2-D, 3-D, time-lapse and RGB layers (needs xvfb-run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _viewer_support import skip_without_viewer

skip_without_viewer()

import npe2  # noqa: E402
from npe2 import PluginManager, PluginManifest  # noqa: E402

from napari_conv_resample import dilated_downsample, transpose_upsample  # noqa: E402
from napari_conv_resample._widgets import (  # noqa: E402
    DownsampleWidget,
    SamplingInspector,
    UpsampleWidget,
)

pytestmark = pytest.mark.viewer

PLUGIN = "napari-conv-resample"
REPO_MANIFEST = Path(__file__).resolve().parents[1] / "napari.yaml"
WIDGETS = {
    "Dilated downsample": DownsampleWidget,
    "Transpose upsample": UpsampleWidget,
    "Sampling inspector": SamplingInspector,
}


def _installed_manifest():
    try:
        return PluginManifest.from_distribution(PLUGIN)
    except Exception:  # noqa: BLE001 - not installed (e.g. PYTHONPATH=src)
        return None


@pytest.fixture(scope="module")
def manifest():
    installed = _installed_manifest()
    if installed is not None:
        return installed
    if not REPO_MANIFEST.is_file():
        pytest.skip("no napari.yaml and the plugin is not installed")
    return PluginManifest.from_file(REPO_MANIFEST)


@pytest.fixture(scope="module")
def plugin(manifest):
    """The plugin registered with npe2's plugin manager (installed or from the repo)."""
    pm = PluginManager.instance()
    pm.discover()
    registered_here = False
    if PLUGIN not in pm._manifests:
        pm.register(manifest)
        registered_here = True
    yield pm
    if registered_here:
        pm.unregister(PLUGIN)


def test_manifest_validates(manifest):
    assert manifest.name == PLUGIN
    # pydantic validation again, from the raw file the wheel ships
    text = manifest.yaml()
    again = PluginManifest.from_yaml(text) if hasattr(PluginManifest, "from_yaml") else None
    assert again is None or again.name == PLUGIN
    contributions = manifest.contributions
    names = {w.display_name for w in contributions.widgets}
    assert names == set(WIDGETS)
    for cmd in contributions.commands:
        assert cmd.id.startswith(PLUGIN + ".")
        # every python_name imports
        assert callable(npe2.manifest.utils.import_python_name(cmd.python_name))
    assert "napari/layers/filter" in contributions.menus
    submenu = contributions.menus["napari/layers/filter"][0].submenu
    assert [s.label for s in contributions.submenus if s.id == submenu] == ["Conv resample"]
    assert len(contributions.menus[submenu]) == 3
    assert len(contributions.sample_data or []) >= 2


def test_installed_manifest_matches_repo():
    installed = _installed_manifest()
    if installed is None or not REPO_MANIFEST.is_file():
        pytest.skip("plugin not installed (non-editable install ships napari.yaml)")
    repo = PluginManifest.from_file(REPO_MANIFEST)
    assert installed.contributions == repo.contributions, (
        "the installed napari.yaml is stale: reinstall with `pip install --no-deps .`"
    )


def test_widgets_through_plugin_manager(plugin, make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    img = np.random.default_rng(0).random((24, 26)).astype(np.float32)
    layer = viewer.add_image(img, name="img", scale=(0.5, 0.5))
    widgets = {}
    for name, cls in WIDGETS.items():
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        assert isinstance(widget, cls)
        widgets[name] = widget
    down = widgets["Dilated downsample"]
    assert down.image.value is layer
    out = down.run(blocking=True)
    np.testing.assert_allclose(out.data, dilated_downsample(img), rtol=1e-6)
    np.testing.assert_allclose(out.scale, (1.0, 1.0))
    up = widgets["Transpose upsample"]
    up.image.value = out
    back = up.run(blocking=True)
    assert back.data.shape == img.shape
    ins = widgets["Sampling inspector"]
    ins.recipe_layer.value = back
    ins._load_clicked()
    assert ins.image.value is layer
    assert {"sampled", "receptive_field", "coverage", "overlap"} <= set(ins.layers)


def test_submenu_in_layers_filter_menu(plugin, make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    app = get_app_model()
    items = app.menus.get_menu("napari/layers/filter")
    submenus = [getattr(i, "submenu", None) for i in items]
    sub = next(s for s in submenus if s and "conv" in s)
    titles = [i.command.title for i in app.menus.get_menu(sub)]
    assert len(titles) == 3
    assert all(any(w in t for t in titles) for w in WIDGETS)


@pytest.mark.parametrize(
    "kind",
    ["2d", "3d", "timelapse", "rgb"],
)
def test_plugin_widgets_on_layer_kinds(plugin, make_napari_viewer, kind, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(4)
    if kind == "2d":
        data, kw, n_sp, shape_down = rng.random((20, 22)), {}, 2, (10, 11)
    elif kind == "3d":
        data = rng.random((8, 20, 22))
        kw, n_sp, shape_down = {"scale": (3.0, 1.0, 1.0)}, 3, (4, 10, 11)
    elif kind == "timelapse":
        data = rng.random((4, 20, 22))
        kw, n_sp, shape_down = {"axis_labels": ("t", "y", "x")}, 2, (4, 10, 11)
    else:
        data = rng.integers(0, 255, (20, 22, 3)).astype(np.uint8)
        kw, n_sp, shape_down = {"rgb": True}, 2, (10, 11, 3)
    layer = viewer.add_image(data, name=kind, **kw)
    _, down = viewer.window.add_plugin_dock_widget(PLUGIN, "Dilated downsample")
    _, up = viewer.window.add_plugin_dock_widget(PLUGIN, "Transpose upsample")
    down.image.value = layer
    assert down.spatial_dims.value == n_sp
    worker = down.run()
    assert worker is not None
    qtbot.waitUntil(lambda: down.last_result is not None, timeout=60_000)
    out = down.last_result
    assert out.data.shape == shape_down
    assert out.rgb == (kind == "rgb")
    if kind == "3d":
        expected = dilated_downsample(data)
    elif kind == "rgb":
        expected = np.stack([dilated_downsample(data[..., c]) for c in range(3)], -1)
    elif kind == "timelapse":
        expected = np.stack([dilated_downsample(f) for f in data])  # every frame
    else:
        expected = dilated_downsample(data)
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)
    up.image.value = layer
    assert up.spatial_dims.value == n_sp
    up.run()
    qtbot.waitUntil(lambda: up.last_result is not None, timeout=60_000)
    res = up.last_result
    if kind == "timelapse":
        expected = np.stack([transpose_upsample(f) for f in data])
        np.testing.assert_allclose(res.data, expected, rtol=1e-5, atol=1e-5)
    spatial = slice(0, 2) if kind == "rgb" else slice(-n_sp, None)
    assert res.data.shape[spatial] == tuple(2 * n for n in data.shape[spatial])


def test_sample_data_contributions(plugin, make_napari_viewer, manifest):
    viewer = make_napari_viewer()
    keys = [s.key for s in manifest.contributions.sample_data or []]
    if not keys:
        pytest.skip("no sample data contributed yet")
    for key in keys:
        layers = viewer.open_sample(PLUGIN, key)
        assert layers
    scales = [tuple(lyr.scale) for lyr in viewer.layers]
    # at least one anisotropic 3-D image with its physical scale
    assert any(len(s) == 3 and s[0] != s[-1] for s in scales)
    assert any(len(s) == 2 for s in scales)
