"""The Sampling inspector in a real napari viewer (needs a display: xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
from _viewer_support import skip_without_viewer

skip_without_viewer()

from napari.utils._test_utils import read_only_mouse_event  # noqa: E402
from napari.utils.interactions import (  # noqa: E402
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)
from napari.utils.notifications import NotificationSeverity, notification_manager  # noqa: E402

from napari_conv_resample import (  # noqa: E402
    Pipeline,
    Stage,
    coverage_map,
    output_geometry,
    overlap_map,
    sampled_mask,
    zero_inserted,
)
from napari_conv_resample._widgets import (  # noqa: E402
    DownsampleWidget,
    SamplingInspector,
    UpsampleWidget,
)
from napari_conv_resample._widgets._demo_scene import viewer_camera  # noqa: E402

pytestmark = pytest.mark.viewer

DOWN = {"kernel": "box", "size": 3, "stride": 2, "dilation": 2, "padding": 0}


def click(viewer, world, button=1):
    """A press and a release at ``world``, through napari's own dispatch."""
    press = read_only_mouse_event(type="mouse_press", button=button, position=world)
    mouse_press_callbacks(viewer, press)
    release = read_only_mouse_event(type="mouse_release", button=button, position=world)
    mouse_release_callbacks(viewer, release)


def drag(viewer, start, end):
    press = read_only_mouse_event(type="mouse_press", button=1, position=start)
    mouse_press_callbacks(viewer, press)
    move = read_only_mouse_event(type="mouse_move", button=1, position=end, is_dragging=True)
    mouse_move_callbacks(viewer, move)
    mouse_release_callbacks(
        viewer, read_only_mouse_event(type="mouse_release", button=1, position=end)
    )


@pytest.fixture
def scene(make_napari_viewer):
    viewer = make_napari_viewer()
    img = np.random.default_rng(0).random((30, 34)).astype(np.float32)
    layer = viewer.add_image(img, name="img", scale=(0.5, 0.4), translate=(2.0, -1.0))
    ins = SamplingInspector(viewer)
    viewer.window.add_dock_widget(ins)
    ins.image.value = layer
    return viewer, layer, ins


def test_clicked_pixel_layers_equal_library_masks(scene):
    viewer, layer, ins = scene
    ins.set_pipeline([Stage("down", **DOWN)])
    geom = output_geometry(
        "down", layer.data.shape, scale=layer.scale, translate=layer.translate, **DOWN
    )
    target = (5, 9)
    world = np.asarray(geom.translate) + np.asarray(geom.scale) * target
    click(viewer, tuple(world + 0.1 * np.asarray(geom.scale)))
    assert ins.out_index_value == target
    assert ins.out_index.value == "5,9"
    mask = sampled_mask(layer.data.shape, target, size=3, stride=2, dilation=2)
    sampled = ins.layers["sampled"]
    assert sampled in viewer.layers and sampled.name == "inspector: sampled pixels"
    np.testing.assert_array_equal(sampled.data > 0, mask)
    assert np.count_nonzero(mask) == 9
    # on the input layer's grid
    np.testing.assert_allclose(sampled.scale, layer.scale)
    np.testing.assert_allclose(sampled.translate, layer.translate)
    rf = Pipeline([Stage("down", **DOWN)]).receptive_field(layer.data.shape, target)
    np.testing.assert_array_equal(ins.layers["receptive_field"].data, rf)
    cov = coverage_map(layer.data.shape, size=3, stride=2, dilation=2)
    np.testing.assert_array_equal(ins.layers["coverage"].data, cov)
    assert (cov == 0).any()  # k=3, s=2, d=2 never reads odd pixels
    assert "overlap" not in ins.layers
    assert "rf size" in ins.summary.value and "(5, 9)" in ins.summary.value
    # the picked-pixel marker sits on the world position of the output pixel
    picked = ins.layers["picked"]
    np.testing.assert_allclose(picked.data_to_world(picked.data[0]), world)


def test_layers_update_in_place(scene):
    viewer, layer, ins = scene
    ins.set_pipeline([Stage("down", **DOWN)])
    ins.update((1, 1))
    names = [lyr.name for lyr in viewer.layers]
    objs = dict(ins.layers)
    geom = output_geometry(
        "down", layer.data.shape, scale=layer.scale, translate=layer.translate, **DOWN
    )
    for target in [(3, 4), (6, 2), (0, 0)]:
        click(viewer, tuple(np.asarray(geom.translate) + np.asarray(geom.scale) * target))
        assert ins.out_index_value == target
        assert [lyr.name for lyr in viewer.layers] == names
        assert all(ins.layers[k] is objs[k] for k in objs)
        np.testing.assert_array_equal(
            ins.layers["sampled"].data > 0,
            sampled_mask(layer.data.shape, target, size=3, stride=2, dilation=2),
        )
    # a drag pans, it does not pick
    drag(viewer, (2.0, 2.0), (6.0, 6.0))
    assert ins.out_index_value == (0, 0)
    # right clicks and clicks outside the output are ignored
    click(viewer, (2.0, 2.0), button=2)
    click(viewer, (-50.0, -50.0))
    assert ins.out_index_value == (0, 0)
    # typed index
    ins.out_index.value = "2, 3"
    ins._show_clicked()
    assert ins.out_index_value == (2, 3)
    # the user deletes an overlay: it comes back, only once
    viewer.layers.remove(ins.layers["coverage"])
    ins.update((1, 2))
    assert [lyr.name for lyr in viewer.layers].count("inspector: coverage") == 1


def test_chain_from_result_layers_with_up_stage(scene, qtbot):
    viewer, layer, ins = scene
    down = DownsampleWidget(viewer)
    down.image.value = layer
    for k, v in {"kernel": "box", "size": "3", "stride": "2", "dilation": "2"}.items():
        getattr(down, k).value = v
    down.padding.value = "0"
    d = down.run(blocking=True)
    up = UpsampleWidget(viewer)
    up.image.value = d
    up.size.value = "3"
    u = up.run(blocking=True)
    ins.image.value = d  # load_from_layer must switch back to the source
    ins.recipe_layer.reset_choices()
    ins.recipe_layer.value = u
    ins._load_clicked()
    assert ins.image.value is layer
    pipeline = Pipeline.from_json(__import__("json").dumps(u.metadata["conv_resample_recipe"]))
    # the recipe's stages, on the spatial dims it records (the inspector's own choice)
    assert ins.pipeline.stages == pipeline.stages and len(pipeline) == 2
    assert pipeline.spatial_dims == 2 == ins.spatial_dims.value

    # click on the up result's pixel (7, 8): its own world position
    target = (7, 8)
    click(viewer, tuple(u.data_to_world(target)))
    assert ins.out_index_value == target
    np.testing.assert_array_equal(
        ins.layers["receptive_field"].data,
        pipeline.receptive_field(layer.data.shape, target),
    )
    # sampled pixels of the last (up) stage live on the downsampled grid
    last = Pipeline([pipeline.stages[-1]])
    np.testing.assert_array_equal(
        ins.layers["sampled"].data > 0, last.receptive_field(d.data.shape, target) > 0
    )
    np.testing.assert_allclose(ins.layers["sampled"].scale, d.scale)
    np.testing.assert_allclose(ins.layers["sampled"].translate, d.translate)
    # overlap map on the upsampled grid (its own geometry)
    spec = pipeline.stages[1].spec(d.data.shape)
    ov = overlap_map(
        d.data.shape,
        size=3,
        stride=2,
        padding=tuple(zip(spec.pad_lo, spec.pad_hi)),
        output_padding=spec.output_padding,
    )
    np.testing.assert_array_equal(ins.layers["overlap"].data, ov)
    np.testing.assert_allclose(ins.layers["overlap"].scale, u.scale)
    np.testing.assert_allclose(ins.layers["overlap"].translate, u.translate)
    # zero-inserted view of the up stage's input (the downsampled image)
    zi = zero_inserted(
        d.data.astype(np.float64),
        size=3,
        stride=2,
        padding=tuple(zip(spec.pad_lo, spec.pad_hi)),
        output_padding=spec.output_padding,
    )
    np.testing.assert_allclose(ins.layers["zero_inserted"].data, zi, rtol=1e-6)
    # the world position of input pixel i of the up stage is the same in the
    # zero-inserted view (index 1 + 2*i here) and in the downsampled layer
    zlayer = ins.layers["zero_inserted"]
    np.testing.assert_allclose(
        zlayer.data_to_world((1 + 2 * 3, 1 + 2 * 4)), d.data_to_world((3, 4))
    )
    assert "2      up" in ins.summary.value


def test_stage_editor_and_errors(scene):
    viewer, _layer, ins = scene
    n = len(notification_manager.records)
    ins._add_clicked()
    ins.op.value = "up"
    assert ins.kernel.value == "bilinear" and not ins.mode.enabled
    ins._add_clicked()
    assert [s.op for s in ins.pipeline.stages] == ["down", "up"]
    assert "inspector: overlap" in [lyr.name for lyr in viewer.layers]
    ins.out_index.value = "999,0"
    ins._show_clicked()
    errs = [
        r for r in notification_manager.records[n:] if r.severity == NotificationSeverity.ERROR
    ]
    assert errs and "outside the final output" in errs[-1].message
    ins.clear_button.changed.emit(True)
    assert ins.pipeline is None


def test_3d_stack_overlays(make_napari_viewer):
    viewer = make_napari_viewer()
    stack = np.zeros((10, 20, 22), np.float32)
    layer = viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    ins = SamplingInspector(viewer)
    ins.image.value = layer
    assert ins.spatial_dims.value == 3
    stage = Stage("down", kernel="box", size=(1, 3, 3), stride=(1, 2, 2), padding=0)
    ins.set_pipeline([stage])
    ins.update((4, 3, 5))
    mask = sampled_mask(stack.shape, (4, 3, 5), size=(1, 3, 3), stride=(1, 2, 2))
    np.testing.assert_array_equal(ins.layers["sampled"].data > 0, mask)
    np.testing.assert_allclose(ins.layers["sampled"].scale, layer.scale)


def test_screenshot_shows_the_overlay(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(np.zeros((40, 40), np.float32), name="black")
    ins = SamplingInspector(viewer)
    ins.image.value = layer
    ins.set_pipeline([Stage("down", kernel="box", size=3, stride=4, dilation=3, padding=0)])
    ins.update((4, 4))
    for key in ("receptive_field", "coverage", "picked"):
        ins.layers[key].visible = False
    viewer.reset_view()
    sampled = ins.layers["sampled"]
    shot_on = viewer.screenshot(canvas_only=True, flash=False)
    sampled.visible = False
    shot_off = viewer.screenshot(canvas_only=True, flash=False)
    diff = np.abs(shot_on[..., :3].astype(int) - shot_off[..., :3].astype(int)).sum(-1)
    assert diff.any()
    # map world -> canvas pixels with the camera, as the canvas does
    h, w = diff.shape
    camera = viewer_camera(viewer)
    zoom, centre = camera.zoom, np.asarray(camera.center[-2:])
    mask = sampled.data > 0

    def canvas(idx):
        world = np.asarray(sampled.data_to_world(idx))
        rc = (world - centre) * zoom + np.array([h, w]) / 2.0
        return tuple(int(v) for v in rc)

    for idx in zip(*np.nonzero(mask)):
        assert diff[canvas(idx)] > 0, idx
    for idx in [(0, 0), (30, 5), (39, 39), (15, 16)]:
        assert not mask[idx]
        assert diff[canvas(idx)] == 0, idx


def test_large_image_picks_run_in_a_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((1100, 1000), np.float32), name="big")
    ins = SamplingInspector(viewer)
    ins.image.value = layer
    ins.set_pipeline([Stage("down", **DOWN)])
    geom = output_geometry("down", layer.data.shape, **DOWN)
    for target in [(100, 200), (300, 400)]:  # the second replaces a pending pick
        click(viewer, tuple(np.asarray(geom.translate) + np.asarray(geom.scale) * target))
    assert ins.out_index_value == (300, 400)
    mask = sampled_mask(layer.data.shape, (300, 400), size=3, stride=2, dilation=2)

    def shown():
        lyr = ins.layers.get("sampled")
        return lyr is not None and np.array_equal(lyr.data > 0, mask)

    qtbot.waitUntil(shown, timeout=60_000)
    qtbot.waitUntil(lambda: ins._busy is None, timeout=60_000)
    assert [lyr.name for lyr in viewer.layers].count("inspector: sampled pixels") == 1


def test_rotated_input_switching_inputs_and_a_bad_index(make_napari_viewer):
    """Overlays of a rotated input sit with it; a later plain 2-D input (after a
    3-D one) gets plain, 2-D overlays; a bad pixel index is a message."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(3)
    rotated = viewer.add_image(
        rng.random((30, 34)).astype(np.float32), scale=(0.5, 0.4), translate=(2, -1), rotate=30
    )
    vol = viewer.add_image(rng.random((8, 20, 22)).astype(np.float32), scale=(2, 0.5, 0.5))
    plain = viewer.add_image(rng.random((24, 26)).astype(np.float32))
    ins = SamplingInspector(viewer)
    viewer.window.add_dock_widget(ins)

    ins.image.value = rotated
    ins.set_pipeline([Stage("down", **DOWN), Stage("down", **DOWN)])
    target = ins.update((2, 3))
    # The picked marker lies where the library's own result puts that pixel.
    result = DownsampleWidget(viewer)
    result.image.value = rotated
    for key, value in DOWN.items():
        getattr(result, key).value = str(value)
    once = result.run(blocking=True)
    result.image.value = once
    twice = result.run(blocking=True)
    picked = ins.layers["picked"]
    np.testing.assert_allclose(
        picked.data_to_world(picked.data[0]), twice.data_to_world(target), atol=1e-9
    )
    assert ins.world_to_out_index(twice.data_to_world(target)) == target

    ins.image.value = vol
    ins.set_pipeline([Stage("down", kernel="box", size=3, stride=2)])
    ins.update(None)
    assert ins.layers["picked"].ndim == 3
    ins.image.value = plain
    n_errors = len(notification_manager.records)
    ins._show_clicked()
    errors = [
        r
        for r in notification_manager.records[n_errors:]
        if r.severity == NotificationSeverity.ERROR
    ]
    assert not errors
    assert ins.layers["picked"].ndim == 2
    # the rotated input's transform is not kept by the reused overlays
    np.testing.assert_allclose(ins.layers["receptive_field"].rotate, np.eye(2), atol=1e-12)

    ins.out_index.value = "abc"
    ins._show_clicked()  # no exception: an error notification
    assert notification_manager.records[-1].severity == NotificationSeverity.ERROR


def test_a_removed_inspector_stops_picking(make_napari_viewer):
    """After its dock is removed, clicks in the canvas make no overlay layers."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(1).random((30, 34)).astype(np.float32))
    ins = SamplingInspector(viewer)
    dock = viewer.window.add_dock_widget(ins)
    ins.image.value = layer
    ins.set_pipeline([Stage("down", **DOWN)])
    # Never clicked while docked: the dock is seen all the same.
    n_layers = len(viewer.layers)
    viewer.window.remove_dock_widget(dock)
    click(viewer, (10.0, 12.0))
    assert len(viewer.layers) == n_layers
    assert ins._on_mouse not in viewer.mouse_drag_callbacks


def test_renamed_layers_and_overlays_in_the_choices(make_napari_viewer):
    """Combos follow renames; 'Use its stages' finds a renamed source by its grid;
    the inspector's overlays are not offered as inputs."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.random.default_rng(2).random((30, 34)).astype(np.float32),
        name="blobs",
        scale=(0.5, 0.4),
        translate=(2.0, -1.0),
    )
    down = DownsampleWidget(viewer)
    down.image.value = layer
    result = down.run(blocking=True)
    ins = SamplingInspector(viewer)
    viewer.window.add_dock_widget(ins)
    layer.name = "renamed"
    for combo in (ins.image, down.image):
        texts = [combo.native.itemText(i) for i in range(combo.native.count())]
        assert "renamed" in texts and "blobs" not in texts
    ins.load_from_layer(result)
    assert ins.image.value is layer
    ins.update(None)
    inputs = [lyr for _, lyr in down._image_choices()]
    assert ins.layers["receptive_field"] in viewer.layers
    assert ins.layers["receptive_field"] not in inputs and layer in inputs


def test_zero_inserted_view_of_a_rotated_input_and_a_queued_pick(make_napari_viewer, qtbot):
    """The zero-inserted view turns with a rotated input; a pick queued after
    switching inputs is drawn with its own input's transforms."""
    viewer = make_napari_viewer()
    img = np.zeros((20, 22), np.float32)
    img[7, 9] = 1
    layer = viewer.add_image(img, scale=(0.5, 0.4), translate=(2.0, -1.0), rotate=30)
    ins = SamplingInspector(viewer)
    ins.image.value = layer
    ins.set_pipeline([Stage("up", kernel="bilinear", size=4, stride=2, padding=1)])
    ins.update((5, 6))
    view = ins.layers["zero_inserted"]
    at = np.argwhere(np.asarray(view.data) == 1)
    assert len(at) == 1
    np.testing.assert_allclose(view.data_to_world(at[0]), layer.data_to_world((7, 9)), atol=1e-9)

    big = np.zeros((1100, 1000), np.float32)
    rotated = viewer.add_image(big, name="A", rotate=30)
    plain = viewer.add_image(big, name="B")
    ins.set_pipeline([Stage("down", **DOWN)])
    ins.image.value = rotated
    ins.update(None, blocking=False)
    ins.image.value = plain
    ins.update((10, 10), blocking=False)
    qtbot.waitUntil(lambda: ins._busy is None and ins._pending is None, timeout=60_000)
    np.testing.assert_allclose(ins.layers["receptive_field"].rotate, np.eye(2), atol=1e-12)


def test_closed_resample_widgets_are_freed(make_napari_viewer):
    """Following layer renames holds a widget weakly: a closed one is freed."""
    import gc
    import weakref

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8), np.float32))
    refs = []
    for _ in range(3):
        w = DownsampleWidget(viewer)
        dock = viewer.window.add_dock_widget(w)
        viewer.window.remove_dock_widget(dock)
        refs.append(weakref.ref(w))
        del w, dock
    gc.collect()
    viewer.add_image(np.zeros((8, 8), np.float32))  # the dead connections go
    gc.collect()
    assert all(r() is None for r in refs)


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")
def test_rotated_time_lapse_overlays_turn_with_the_plane(make_napari_viewer):
    """A TYX layer rotated in its YX plane: the (YX) overlays and picks carry
    that rotation, as they do for a plain 2-D input."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(4)
    turn = np.eye(3)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    turn[1:, 1:] = [[c, -s], [s, c]]
    movie = viewer.add_image(
        rng.random((4, 30, 34)).astype(np.float32),
        scale=(1, 0.5, 0.4),
        translate=(0, 2, -1),
        rotate=turn,
        affine=np.diag([1.0, 1.5, 1.5, 1.0]),
    )
    down = DownsampleWidget(viewer)
    down.image.value = movie
    down.spatial_dims.value = 2
    result = down.run(blocking=True)
    ins = SamplingInspector(viewer)
    ins.image.value = movie
    ins.spatial_dims.value = 2
    ins.load_from_layer(result)
    target = ins.update((5, 7))
    picked = ins.layers["picked"]
    assert picked.ndim == 2
    np.testing.assert_allclose(
        picked.data_to_world(picked.data[0]), result.data_to_world((0, *target))[1:], atol=1e-9
    )
    rf = ins.layers["receptive_field"]
    centre = np.argwhere(rf.data > 0).mean(axis=0)
    np.testing.assert_allclose(
        rf.data_to_world(centre), movie.data_to_world((0, *centre))[1:], atol=1e-9
    )
    # a click on a result pixel picks it, and the marker lands on it
    world = result.data_to_world((2, 3, 4))
    click(viewer, world)
    assert ins.out_index_value == (3, 4)
    picked = ins.layers["picked"]
    np.testing.assert_allclose(picked.data_to_world(picked.data[0]), world[1:], atol=1e-9)
    # a rotation that mixes time with space cannot be drawn on YX overlays
    mixed = np.eye(3)
    mixed[:2, :2] = [[c, -s], [s, c]]
    movie.rotate = mixed
    ins.update(None)
    np.testing.assert_allclose(ins.layers["picked"].rotate, np.eye(2), atol=1e-12)


def test_chain_edits_keep_the_pick_only_where_it_fits(make_napari_viewer):
    """A pick outside a changed chain's output falls back to the centre; a
    stage the input refuses is not added; a typed index of the wrong length or
    with fractions is an error naming out_index."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(6).random((60, 64)).astype(np.float32))
    ins = SamplingInspector(viewer)
    ins.image.value = layer
    ins.set_pipeline([Stage("up", kernel="bilinear", stride=2)])
    assert ins.update((100, 110)) == (100, 110)
    ins.clear_button.changed.emit(True)
    ins.op.value = "down"
    ins._add_clicked()
    assert ins.out_index_value == (15, 16)  # the centre of the 30x32 output
    np.testing.assert_array_equal(ins.layers["picked"].data, [[15, 16]])

    n = len(notification_manager.records)
    ins.stride.value = "0"
    ins._add_clicked()
    assert len(ins.pipeline.stages) == 1  # refused, not kept
    ins.stride.value = "2"
    ins._add_clicked()
    assert len(ins.pipeline.stages) == 2
    for text in ("5,6,7", "3", "2.5,3"):
        ins.out_index.value = text
        ins._show_clicked()
    errors = [
        r.message
        for r in notification_manager.records[n:]
        if r.severity == NotificationSeverity.ERROR
    ]
    assert len(errors) == 4 and all("out_index" in m for m in errors[1:]), errors
    assert "stride" in errors[0] and "0" in errors[0]
    assert ins.out_index_value == (7, 8)  # the new chain's centre, kept


def test_add_stage_without_an_input_keeps_the_stage(make_napari_viewer):
    viewer = make_napari_viewer()
    ins = SamplingInspector(viewer)
    n = len(notification_manager.records)
    ins._add_clicked()
    assert ins.image.value is None and len(ins.pipeline.stages) == 1
    assert notification_manager.records[n:]  # "choose the input image layer"
    layer = viewer.add_image(np.ones((20, 20), np.float32))
    ins.image.value = layer
    ins._add_clicked()
    assert len(ins.pipeline.stages) == 2


def test_a_batch_output_opened_in_napari_carries_its_recipe(make_napari_viewer, tmp_path):
    """A batch result opened with the plugin's reader (even before its input)
    gives the inspector its chain and input; a widget stage on it extends the
    recipe, which the batch tool then reproduces on the input file."""
    import tifffile

    from napari_conv_resample.batch.napari_reader import read
    from napari_conv_resample.batch.runner import open_source
    from napari_conv_resample.cli import main

    rng = np.random.default_rng(3)
    data = rng.random((5, 30, 32)).astype(np.float32)
    src = tmp_path / "in" / "cells.ome.tif"
    src.parent.mkdir()
    md = {"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5}
    tifffile.imwrite(src, data, metadata=md)
    out = tmp_path / "out"
    argv = ["down", str(src), "-o", str(out), "--kernel", "gaussian", "--stride", "1,2,2"]
    assert main(argv + ["--no-progress"]) == 0
    viewer = make_napari_viewer()
    for path in (out / "cells.ome.tif", src):  # the result first: it keeps the name
        for layer_data, kwargs, _ in read(str(path)):
            viewer.add_image(layer_data, **kwargs)
    result, layer = viewer.layers
    assert layer.name != "cells"  # napari numbered the input's name
    ins = SamplingInspector(viewer)
    pipeline = ins.load_from_layer(result)
    assert ins.image.value is layer and ins.spatial_dims.value == 3
    assert pipeline.stages == [Stage("down", kernel="gaussian", stride=(1, 2, 2))]
    ins.update(None)  # the overlays are drawn on the input's grid
    rf = ins.layers["receptive_field"]
    np.testing.assert_allclose(rf.scale[-3:], layer.scale[-3:])

    down = DownsampleWidget(viewer)
    down.image.value = result
    down.stride.value = "2"
    down.kernel.value = "box"
    second = down.run(blocking=True)
    recipe = down.save_recipe(tmp_path / "recipe.json")
    assert recipe is not None
    again = tmp_path / "again"
    assert main(["run", str(recipe), str(src), "-o", str(again), "--no-progress"]) == 0
    with open_source(again / "cells.ome.tif") as res:
        np.testing.assert_allclose(res.read(), second.data, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(res.meta.scale, second.scale)
        np.testing.assert_allclose(res.meta.translate, second.translate)


def test_batch_outputs_of_channels_and_of_batch_outputs_find_their_input(
    make_napari_viewer, tmp_path
):
    """Channel layers of a batch output load the input's same channel; a
    layer named like the source but on another grid is not taken for it; a
    damaged record is ignored (the file still opens and resamples)."""
    import json

    import tifffile

    from napari_conv_resample.batch.metadata import PROVENANCE_TIFF_TAG
    from napari_conv_resample.batch.napari_reader import read
    from napari_conv_resample.cli import main

    rng = np.random.default_rng(5)
    src = tmp_path / "ij.tif"
    data = (rng.random((4, 2, 24, 24)) * 1000).astype(np.uint16)
    md = {"axes": "ZCYX", "spacing": 0.5, "unit": "um"}
    tifffile.imwrite(src, data, imagej=True, metadata=md, resolution=(5.0, 5.0))
    out = tmp_path / "out"
    assert main(["down", str(src), "-o", str(out), "--stride", "2", "--no-progress"]) == 0
    out2 = tmp_path / "out2"
    assert main(["down", str(out), "-o", str(out2), "--stride", "2", "--no-progress"]) == 0
    viewer = make_napari_viewer()

    def open_file(path):
        for layer_data, kwargs, _ in read(str(path)):
            viewer.add_image(layer_data, **kwargs)
        return list(viewer.layers)[-2:]

    inputs = open_file(src)
    results = open_file(out / "ij.tif")
    ins = SamplingInspector(viewer)
    ins.load_from_layer(results[1])
    assert ins.image.value is inputs[1]  # 'ij [c1]' for 'ij [c1] [1]'
    # out2 was made from out/ij.tif: its record chains back to ij.tif, so
    # the inspector takes both stages and the original's channel.
    viewer.layers.remove(results[0])
    viewer.layers.remove(results[1])
    again = open_file(out2 / "ij.tif")
    assert len(ins.load_from_layer(again[1]).stages) == 2 and ins.image.value is inputs[1]
    # Without the original, a same-named layer on another grid is not taken for it.
    for lyr in inputs:
        viewer.layers.remove(lyr)
    viewer.add_image(np.zeros((4, 9, 9), np.float32), name="ij [c0]")
    with pytest.raises(ValueError, match="is not in the viewer"):
        ins.load_from_layer(again[0])

    # A hand-edited record that no longer reads as a recipe: ignored.
    damaged = tmp_path / "damaged.tif"
    with tifffile.TiffFile(out / "ij.tif") as tif:
        made = json.loads(tif.pages[0].tags[PROVENANCE_TIFF_TAG].value)
        pixels = tif.asarray()
    made["recipe"]["stages"][0]["op"] = "sideways"
    made["input"]["axes"] = None
    tifffile.imwrite(
        damaged, pixels[:, 0], extratags=[(PROVENANCE_TIFF_TAG, "s", 0, json.dumps(made), True)]
    )
    ((plane, kwargs, _),) = read(str(damaged))
    assert not any(k.startswith("conv_resample_recipe") for k in kwargs["metadata"])
    viewer.add_image(plane, **kwargs)
    SamplingInspector(viewer)  # builds its recipe-layer choices over every layer
