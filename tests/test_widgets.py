"""The resampling dock widgets in a real napari viewer (needs a display: xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
from _viewer_support import skip_without_viewer

skip_without_viewer()

from napari.layers import Layer  # noqa: E402
from napari.utils.notifications import NotificationSeverity, notification_manager  # noqa: E402

from napari_conv_resample import (  # noqa: E402
    Pipeline,
    dilated_downsample,
    output_geometry,
    transpose_upsample,
)
from napari_conv_resample._widgets import (  # noqa: E402
    RECIPE_KEY,
    DownsampleWidget,
    SamplingInspector,
    UpsampleWidget,
    resample_layer,
)
from napari_conv_resample._widgets._layers import guess_spatial_dims  # noqa: E402

pytestmark = pytest.mark.viewer


def _errors_since(n):
    return [
        r for r in notification_manager.records[n:] if r.severity == NotificationSeverity.ERROR
    ]


def _run(widget, qtbot):
    """Run through the napari worker, as the Run button does; wait for it."""
    before = len(widget._viewer.layers)
    worker = widget.run()
    assert worker is not None
    # the widget's own finished handler is connected before the worker starts
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=60_000)
    qtbot.waitUntil(lambda: len(widget._viewer.layers) == before + 1, timeout=5_000)
    return widget._viewer.layers[-1]


def _world_of_argmax(layer):
    idx = np.unravel_index(np.argmax(layer.data), layer.data.shape)
    return np.asarray(layer.data_to_world(idx))


def _world_centroid(layer):
    data = np.asarray(layer.data, dtype=float)
    grids = np.indices(data.shape).reshape(data.ndim, -1)
    centre = grids @ data.ravel() / data.sum()
    return np.asarray(layer.data_to_world(centre))


@pytest.fixture
def bright(make_napari_viewer):
    viewer = make_napari_viewer()
    img = np.zeros((40, 48), np.float32)
    img[20, 24] = 100.0
    layer = viewer.add_image(img, name="cells", scale=(0.4, 0.3), translate=(5.0, -2.0))
    return viewer, layer


def test_downsample_2d_result_placement_and_recipe(bright, qtbot):
    viewer, layer = bright
    w = DownsampleWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.image.value = layer
    w.kernel.value = "gaussian"
    w.size.value = "3"
    w.stride.value = "2"
    w.dilation.value = "2"
    out = _run(w, qtbot)
    assert out.name == "cells ↓2 d2 gaussian3"
    geom = output_geometry(
        "down",
        layer.data.shape,
        scale=layer.scale,
        translate=layer.translate,
        kernel="gaussian",
        size=3,
        stride=2,
        dilation=2,
    )
    np.testing.assert_allclose(out.scale, geom.scale)
    np.testing.assert_allclose(out.translate, geom.translate)
    expected = dilated_downsample(layer.data, "gaussian", size=3, stride=2, dilation=2)
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)
    recipe = Pipeline.from_json(__import__("json").dumps(out.metadata[RECIPE_KEY]))
    assert [s.op for s in recipe.stages] == ["down"]
    assert recipe.stages[0].params["dilation"] == 2
    # with padding 'same' (lo=1) a k=3, s=2, d=2 kernel reads odd pixels only:
    # the bright pixel at (20, 24) is never read
    assert out.data.max() == 0
    # with dilation 1 the bright pixel's world position does not move (centroid)
    w.dilation.value = "1"
    out = _run(w, qtbot)
    assert out.name == "cells ↓2 gaussian3"
    np.testing.assert_allclose(_world_centroid(out), _world_centroid(layer), atol=1e-6)


def test_world_position_kept_after_down_up_and_both(bright, qtbot):
    viewer, layer = bright
    target = _world_of_argmax(layer)
    down = DownsampleWidget(viewer)
    down.image.value = layer
    down.padding.value = "1"  # k=3, p=1: output o centred on input 2*o
    d = down.run(blocking=True)
    np.testing.assert_allclose(_world_of_argmax(d), target, atol=1e-9)

    up = UpsampleWidget(viewer)
    up.image.value = layer
    up.size.value = "3"  # odd kernel: input i lands on output 2*i
    u = up.run(blocking=True)
    assert u.data.shape == (80, 96)
    np.testing.assert_allclose(_world_of_argmax(u), target, atol=1e-9)

    up.image.value = d
    both = up.run(blocking=True)
    np.testing.assert_allclose(_world_of_argmax(both), target, atol=1e-9)
    assert both.data.shape == layer.data.shape
    np.testing.assert_allclose(both.scale, layer.scale)
    np.testing.assert_allclose(both.translate, layer.translate)
    # its recipe holds both stages, and the source is the original layer
    assert [s["op"] for s in both.metadata[RECIPE_KEY]["stages"]] == ["down", "up"]
    assert both.metadata["conv_resample_source"]["layer"] == "cells"
    # default settings (half-pixel offsets): the centroid stays put
    up.size.value = "auto"
    for res in (up.run(blocking=True),):
        assert res.name.endswith("↑2 bilinear4")
        np.testing.assert_allclose(_world_centroid(res), _world_centroid(layer), atol=1e-6)


@pytest.mark.parametrize(
    "transform",
    [
        {"rotate": 30},
        {"shear": [0.5]},
        {"rotate": -20, "shear": [0.3], "affine": [[1, 0.2, 4], [0, 1.1, -1], [0, 0, 1]]},
    ],
)
def test_rotated_and_sheared_layers_keep_world_positions(make_napari_viewer, transform):
    """Every output pixel sits where its place in the input grid is in the world,
    also when the input is rotated or sheared (the grid's shift turns with it)."""
    viewer = make_napari_viewer()
    img = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    layer = viewer.add_image(img, scale=(0.4, 0.3), translate=(5.0, -2.0), **transform)
    cases = [
        ("down", {"kernel": "box", "size": 3, "stride": 2, "dilation": 4, "padding": "valid"}),
        ("up", {"kernel": "bilinear", "stride": 2}),
    ]
    for op, params in cases:
        out = Layer.create(*resample_layer(layer, op, **params))
        # On a unit grid, output pixel o lies at input index translate + scale * o.
        unit = output_geometry(op, img.shape, **params)
        for o in [(0, 0), (3, 5), tuple(n - 1 for n in out.data.shape)]:
            at = np.asarray(unit.translate) + np.asarray(unit.scale) * np.asarray(o)
            np.testing.assert_allclose(
                out.data_to_world(o), layer.data_to_world(at), atol=1e-9, err_msg=f"{op} {o}"
            )


def test_3d_anisotropic_stack(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    stack = rng.random((12, 32, 30)).astype(np.float32)
    layer = viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5), units="um")
    w = DownsampleWidget(viewer)
    w.image.value = layer
    assert w.spatial_dims.value == 3
    w.stride.value = "1,2,2"
    w.size.value = "1,3,3"
    out = _run(w, qtbot)
    assert out.data.shape == (12, 16, 15)
    np.testing.assert_allclose(out.scale, (2.0, 1.0, 1.0))
    assert str(out.units[0]) == "micrometer"
    expected = dilated_downsample(stack, "gaussian", size=(1, 3, 3), stride=(1, 2, 2))
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-6)

    up = UpsampleWidget(viewer)
    up.image.value = out
    up.stride.value = "1,2,2"
    assert up.spatial_dims.value == 3
    back = _run(up, qtbot)
    assert back.data.shape == (12, 32, 30)
    np.testing.assert_allclose(back.scale, layer.scale)


def test_timelapse_every_timepoint(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    movie = rng.random((5, 24, 26)).astype(np.float32)
    layer = viewer.add_image(
        movie, name="movie", scale=(10.0, 0.5, 0.5), axis_labels=("t", "y", "x")
    )
    w = DownsampleWidget(viewer)
    w.image.value = layer
    assert w.spatial_dims.value == 2  # time is never Z
    out = _run(w, qtbot)
    assert out.data.shape == (5, 12, 13)
    assert out.scale[0] == 10.0 and out.translate[0] == 0.0
    for t in range(5):
        np.testing.assert_allclose(out.data[t], dilated_downsample(movie[t]), rtol=1e-5, atol=1e-6)
    up = UpsampleWidget(viewer)
    up.image.value = layer
    res = _run(up, qtbot)
    assert res.data.shape == (5, 48, 52)
    for t in range(5):
        np.testing.assert_allclose(res.data[t], transpose_upsample(movie[t]), rtol=1e-5, atol=1e-6)


def test_rgb_stays_rgb(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (30, 34, 3), dtype=np.uint8)
    layer = viewer.add_image(rgb, name="photo", rgb=True, scale=(0.2, 0.2))
    w = DownsampleWidget(viewer)
    w.image.value = layer
    assert w.spatial_dims.value == 2
    w.preserve_dtype.value = True
    out = _run(w, qtbot)
    assert out.rgb and out.data.shape == (15, 17, 3)
    assert out.data.dtype == np.uint8
    np.testing.assert_allclose(out.scale, (0.4, 0.4))
    for c in range(3):
        ref = dilated_downsample(rgb[..., c], preserve_dtype=True)
        np.testing.assert_array_equal(out.data[..., c], ref)
    up = UpsampleWidget(viewer)
    up.image.value = layer
    res = _run(up, qtbot)
    assert res.rgb and res.data.shape == (60, 68, 3)
    assert res.data.dtype == np.float32  # preserve_dtype off
    assert tuple(res.contrast_limits) == (0.0, 255.0)


def test_custom_kernel_from_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    img = np.arange(20 * 20, dtype=np.float32).reshape(20, 20)
    layer = viewer.add_image(img, name="img")
    kern = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32)
    k_layer = viewer.add_image(kern, name="my kernel")
    w = DownsampleWidget(viewer)
    w.image.value = layer
    assert ("layer: my kernel", k_layer) in w._kernel_choices()
    w.kernel.value = k_layer
    out = w.run(blocking=True)
    assert out.name == "img ↓2 custom3"
    np.testing.assert_allclose(out.data, dilated_downsample(img, kern), rtol=1e-6)


def test_bad_parameters_become_notifications(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((16, 16), np.float32), name="img")
    w = DownsampleWidget(viewer)
    w.image.value = layer
    n = len(notification_manager.records)
    w.dilation.value = "9"  # dilated kernel spans 19 > 16 + padding? library says
    w.padding.value = "valid"
    assert w.run() is None
    errs = _errors_since(n)
    assert errs and "dilated kernel spans" in errs[-1].message
    assert len(viewer.layers) == 1
    w.dilation.value = "abc"
    assert w.run() is None
    assert "dilation='abc'" in _errors_since(n)[-1].message


def test_error_in_worker_becomes_notification(make_napari_viewer, qtbot):
    pytest.importorskip("napari")
    from napari_conv_resample import cupy_available

    if cupy_available():
        pytest.skip("CuPy works here: backend='cupy' does not fail")
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((16, 16), np.float32), name="img")
    w = DownsampleWidget(viewer)
    w.image.value = layer
    w.backend.value = "cupy"
    assert w.device.value == "unavailable"
    n = len(notification_manager.records)
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=30_000)
    qtbot.waitUntil(lambda: bool(_errors_since(n)), timeout=5_000)
    assert "backend='cupy' cannot run" in _errors_since(n)[-1].message
    assert len(viewer.layers) == 1
    assert w.run_button.enabled and not w.cancel_button.enabled


def test_cancel_stops_the_worker(make_napari_viewer, qtbot, monkeypatch):
    import time

    from napari_conv_resample._widgets import _layers

    # Each slice takes >= 10 ms, so the job lasts seconds however fast the
    # engine is: the test is about cancelling, not about speed.
    def slow_downsample(*args, **kwargs):
        time.sleep(0.01)
        return dilated_downsample(*args, **kwargs)

    monkeypatch.setattr(_layers, "dilated_downsample", slow_downsample)
    viewer = make_napari_viewer()
    movie = np.random.default_rng(3).random((400, 96, 96)).astype(np.float32)
    layer = viewer.add_image(movie, name="long", axis_labels=("t", "y", "x"))
    w = DownsampleWidget(viewer)
    w.image.value = layer
    worker = w.run()
    done = []
    worker.yielded.connect(done.append)
    aborted = []
    worker.aborted.connect(lambda: aborted.append(True))
    qtbot.waitUntil(lambda: len(done) >= 1, timeout=30_000)
    assert w.cancel_button.enabled
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        w.cancel()
    assert aborted
    assert done[-1][0] < 400
    qtbot.wait(50)
    assert [lyr.name for lyr in viewer.layers] == ["long"]
    assert w.run_button.enabled


def test_save_recipe_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((16, 16), np.float32), name="img")
    w = DownsampleWidget(viewer)
    w.image.value = layer
    first = w.run(blocking=True)
    up = UpsampleWidget(viewer)
    up.image.value = first
    path = up.save_recipe(tmp_path / "r.json")
    recipe = Pipeline.from_json(path)
    assert [s.op for s in recipe.stages] == ["down", "up"]
    # the saved recipe reproduces the result of running the two widgets
    second = up.run(blocking=True)
    np.testing.assert_allclose(recipe(layer.data), second.data, rtol=1e-6)


def test_resample_layer_returns_layer_data_tuple(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((3, 20, 20), np.float32), name="z", scale=(3, 1, 1), rotate=0)
    data, meta, kind = resample_layer(layer, "down", 2, kernel="box", size=2, padding=0)
    assert kind == "image" and data.shape == (3, 10, 10)
    assert meta["scale"] == (3.0, 2.0, 2.0) and meta["translate"] == (0.0, 0.5, 0.5)
    added = viewer.add_layer(Layer.create(data, meta, kind))
    assert added.name == "z ↓2 box2"
    assert guess_spatial_dims(layer) == 2  # 3 planes: too few for Z


def test_guess_spatial_dims_never_takes_time_or_channels_for_z():
    from napari.layers import Image

    z = np.zeros((48, 30, 30), np.float32)
    assert guess_spatial_dims(Image(z)) == 2  # no metadata: plane by plane
    assert guess_spatial_dims(Image(z, scale=(2.0, 0.5, 0.5))) == 3
    assert guess_spatial_dims(Image(z, axis_labels=("z", "y", "x"))) == 3
    assert guess_spatial_dims(Image(z, axis_labels=("t", "y", "x"), scale=(60, 1, 1))) == 2
    assert guess_spatial_dims(Image(np.zeros((3, 30, 30)), scale=(2, 1, 1))) == 2
    rgb = np.zeros((8, 30, 30, 3), np.uint8)
    assert guess_spatial_dims(Image(rgb, rgb=True, scale=(3, 1, 1))) == 3
    assert guess_spatial_dims(Image(np.zeros((5, 30, 30, 3)), rgb=True)) == 2


def test_guess_spatial_dims_reads_axes_metadata_and_time_units():
    from napari.layers import Image

    t = np.zeros((8, 30, 30), np.uint16)
    assert guess_spatial_dims(Image(t, scale=(1.0, 0.65, 0.65), units=("s", "µm", "µm"))) == 2
    assert guess_spatial_dims(Image(t, scale=(1.0, 0.5, 0.5), metadata={"axes": "TYX"})) == 2
    assert guess_spatial_dims(Image(t, metadata={"axes": "ZYX"})) == 3


def test_multiscale_uses_highest_resolution(make_napari_viewer):
    viewer = make_napari_viewer()
    full = np.random.default_rng(5).random((64, 64)).astype(np.float32)
    layer = viewer.add_image([full, full[::2, ::2]], multiscale=True, name="pyr")
    w = DownsampleWidget(viewer)
    w.image.value = layer
    n = len(notification_manager.records)
    out = w.run(blocking=True)
    assert out.data.shape == (32, 32)
    np.testing.assert_allclose(out.data, dilated_downsample(full), rtol=1e-6)
    assert any("highest resolution" in r.message for r in notification_manager.records[n:])


def test_recipe_of_a_per_plane_run_reproduces_it_in_batch(make_napari_viewer, tmp_path):
    """A 2-D (YX) run on a z-stack saves a recipe that filters YX planes in
    the batch tool too (it filtered ZYX: another shape, another Z spacing); a
    chain of 3-D then 2-D stages cannot be one recipe and says so."""
    import tifffile

    from napari_conv_resample.cli import main

    rng = np.random.default_rng(12)
    stack = (rng.random((9, 40, 44)) * 200).astype(np.uint8)
    src = tmp_path / "in" / "stack.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, stack, imagej=True, metadata={"axes": "ZYX", "spacing": 0.5})
    viewer = make_napari_viewer()
    layer = viewer.add_image(stack, name="stack", scale=(0.5, 1, 1))
    w = DownsampleWidget(viewer)
    w.image.value = layer
    w.spatial_dims.value = 2
    result = w.run(blocking=True)
    assert result.data.shape == (9, 20, 22)
    path = w.save_recipe(tmp_path / "planes.json")
    # a 2-D run on the result continues the same recipe
    again = DownsampleWidget(viewer)
    again.image.value = result
    again.spatial_dims.value = 2
    assert again.pipeline().spatial_dims == 2 and len(again.pipeline()) == 2
    out = tmp_path / "out"
    assert main(["run", str(path), str(src), "-o", str(out), "--no-progress"]) == 0
    np.testing.assert_allclose(tifffile.imread(out / "stack.tif"), result.data, rtol=1e-6)

    # 3-D on the 2-D result: no recipe, and saving one says why
    deep = DownsampleWidget(viewer)
    deep.image.value = result
    deep.spatial_dims.value = 3
    n = len(notification_manager.records)
    assert deep.save_recipe(tmp_path / "mixed.json") is None
    assert "2-D (YX) and then 3-D" in _errors_since(n)[-1].message
    assert not (tmp_path / "mixed.json").exists()
    mixed = deep.run(blocking=True)
    assert "conv_resample_recipe" not in mixed.metadata


def test_results_keep_blending_and_drop_the_input_files_record(make_napari_viewer):
    """Channel layers shown additively give additive results; what the reader
    recorded of the input's file (path, voxel size) does not pass for the
    result's; the inspector's typed stages use the widgets' border mode."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.ones((20, 24), np.float32),
        blending="additive",
        metadata={"source": "/data/a.tif", "conv_resample_meta": {"scale": [1, 1]}, "note": 1},
    )
    w = DownsampleWidget(viewer)
    w.image.value = layer
    result = w.run(blocking=True)
    assert result.blending == "additive"
    assert "source" not in result.metadata and "conv_resample_meta" not in result.metadata
    assert result.metadata["note"] == 1
    ins = SamplingInspector(viewer)
    assert ins.mode.value == w.mode.value == "reflect"
    ins.op.value = "up"
    ins.op.value = "down"
    assert ins.mode.value == "reflect"


def test_a_recipe_without_its_source_record_still_chains(make_napari_viewer):
    """Layers from older versions or other tools may carry a recipe but no
    source record: a run on them appends its stage."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.ones((24, 24), np.float32),
        metadata={RECIPE_KEY: {"stages": [{"op": "down", "stride": 2}]}},
    )
    w = DownsampleWidget(viewer)
    w.image.value = layer
    result = w.run(blocking=True)
    recipe = Pipeline.from_json(__import__("json").dumps(result.metadata[RECIPE_KEY]))
    assert len(recipe) == 2 and recipe.spatial_dims == 2


def test_a_preserve_dtype_chain_is_reproduced_by_its_recipe(make_napari_viewer, tmp_path):
    """Widget runs with preserve dtype round each result to uint16; the saved
    recipe records it, so the batch tool (--preserve-dtype, also chunked)
    gives the napari result bit for bit (it rounded only at the end before)."""
    import tifffile

    from napari_conv_resample.batch.runner import open_source
    from napari_conv_resample.cli import main

    rng = np.random.default_rng(11)
    data = (rng.random((40, 44)) * 4000).astype(np.uint16)
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, name="cells")
    down = DownsampleWidget(viewer)
    down.image.value = layer
    down.preserve_dtype.value = True
    first = down.run(blocking=True)
    assert first.data.dtype == np.uint16
    up = UpsampleWidget(viewer)
    up.image.value = first
    up.preserve_dtype.value = True
    second = up.run(blocking=True)
    down.image.value = second
    third = down.run(blocking=True)
    path = down.save_recipe(tmp_path / "r.json")
    recipe = Pipeline.from_json(path)
    assert recipe.rounded == (0, 1)
    np.testing.assert_array_equal(recipe(data, preserve_dtype=True), third.data)
    # Without the record the chain differs (rounding once at the end).
    plain = Pipeline(recipe.stages)(data, preserve_dtype=True)
    assert not np.array_equal(plain, third.data)
    src = tmp_path / "cells.tif"
    tifffile.imwrite(src, data)
    for extra in ([], ["--chunks", "7"]):
        out = tmp_path / f"out{len(extra)}"
        argv = ["run", str(path), str(src), "-o", str(out), "--preserve-dtype", "--no-progress"]
        assert main(argv + extra) == 0
        with open_source(out / "cells.tif") as res:
            np.testing.assert_array_equal(res.read(), third.data)


def test_spatial_dims_survive_a_rename_and_follow_a_result_recipe(make_napari_viewer):
    """Renaming the input re-emits it (magicgui resets the choices): the
    user's 2-D stays. A 2-D result of a time-lapse (its Y/X scale changed,
    which looks like Z spacing) continues in 2-D."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 16, 16), np.float32), name="other", scale=(5.0, 1.0, 1.0))
    stack = viewer.add_image(
        np.random.default_rng(0).random((8, 20, 20)).astype(np.float32),
        name="beads",
        scale=(2.0, 0.5, 0.5),
    )
    w = DownsampleWidget(viewer)
    ins = SamplingInspector(viewer)
    for widget in (w, ins):
        widget.image.value = stack
        assert widget.spatial_dims.value == 3
        widget.spatial_dims.value = 2
    stack.name = "beads renamed"  # its item is replaced: the box stays on it
    assert w.image.value is stack and ins.image.value is stack
    assert w.spatial_dims.value == 2 and ins.spatial_dims.value == 2
    assert w.run(blocking=True).data.shape == (8, 10, 10)
    movie = viewer.add_image(np.random.default_rng(1).random((5, 24, 24)).astype(np.float32))
    up = UpsampleWidget(viewer)
    up.image.value = movie
    assert up.spatial_dims.value == 2
    bigger = up.run(blocking=True)
    assert bigger.data.shape == (5, 48, 48) and tuple(bigger.scale) == (1.0, 0.5, 0.5)
    w.image.value = bigger
    assert w.spatial_dims.value == 2
    assert w.run(blocking=True).data.shape == (5, 24, 24)
    # A batch recipe of one spatial axis (TX) is no choice of the widgets: 2.
    line = viewer.add_image(
        np.zeros((6, 30), np.float32),
        metadata={"conv_resample_recipe": {"stages": [{"op": "down"}], "spatial_dims": 1}},
    )
    w.image.value = line
    assert w.spatial_dims.value == 2


def test_a_multiscale_layer_as_custom_kernel_uses_its_full_resolution(bright, qtbot):
    viewer, layer = bright
    taps = np.arange(16, dtype=np.float32).reshape(4, 4) / 120
    pyramid_kernel = viewer.add_image([taps, taps[::2, ::2]], multiscale=True, name="taps")
    w = DownsampleWidget(viewer)
    w.image.value = layer
    w.kernel.value = pyramid_kernel
    w.stride.value = "2"
    w.padding.value = "1"
    before = len(notification_manager.records)
    out = _run(w, qtbot)
    assert not _errors_since(before)
    want = dilated_downsample(layer.data, taps, stride=2, padding=1)
    np.testing.assert_allclose(out.data, want, rtol=1e-6)
