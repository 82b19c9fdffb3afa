"""Multiscale pyramids: the library's ``pyramid`` and ``conv-resample down/run --levels``.

Every level is checked against the library's own operators, the OME-Zarr
placement of every dataset against the output geometry, the chunked and
dask paths against the in-memory one, and the files are read back with zarr
and through the plugin's reader into a napari viewer model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_conv_resample import (
    Pipeline,
    Stage,
    dilated_downsample,
    level_placements,
    output_geometry,
    pyramid,
    pyramid_specs,
)
from napari_conv_resample.cli import main

UM = "micrometer"


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _multiscale(path):
    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    ms = attrs["ome"]["multiscales"][0] if "ome" in attrs else attrs["multiscales"][0]
    placed = []
    for ds in ms["datasets"]:
        tr = {t["type"]: t for t in ds["coordinateTransformations"]}
        placed.append((ds["path"], tr["scale"]["scale"], tr["translation"]["translation"]))
    return group, ms, placed


@pytest.fixture
def stack(tmp_path):
    """An ImageJ z-stack (0.2 µm pixels, 1.5 µm steps) and its pixels."""
    rng = np.random.default_rng(11)
    data = (rng.random((5, 100, 90)) * 4000).astype(np.uint16)
    d = tmp_path / "in"
    d.mkdir()
    tifffile.imwrite(
        d / "stack.tif",
        data,
        imagej=True,
        resolution=(5.0, 5.0),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"},
    )
    return d / "stack.tif", data


# -- library -------------------------------------------------------------------


def test_levels_are_repeated_downsamplings():
    rng = np.random.default_rng(0)
    x = rng.random((64, 50)).astype(np.float32)
    levels = pyramid(x, 3, kernel="gaussian", stride=2, dilation=1)
    assert levels[0] is x
    assert [a.shape for a in levels] == [(64, 50), (32, 25), (16, 13), (8, 7)]
    want = x
    for got in levels[1:]:
        want = dilated_downsample(want, "gaussian", stride=2)
        np.testing.assert_array_equal(got, want)


def test_integer_levels_keep_their_dtype_only_when_asked():
    x = (np.random.default_rng(1).random((3, 40, 40)) * 60000).astype(np.uint16)
    kept = pyramid(x, 2, stride=(1, 2, 2), preserve_dtype=True)
    assert [a.dtype for a in kept] == [np.uint16] * 3
    # Each level is rounded from the rounded level before it.
    lvl1 = dilated_downsample(x, stride=(1, 2, 2), preserve_dtype=True)
    np.testing.assert_array_equal(kept[1], lvl1)
    np.testing.assert_array_equal(
        kept[2], dilated_downsample(lvl1, stride=(1, 2, 2), preserve_dtype=True)
    )
    floats = pyramid(x, 2, stride=(1, 2, 2))
    assert [a.dtype for a in floats] == [np.uint16, np.float32, np.float32]


def test_a_pipeline_makes_each_level_and_axes_carry_time():
    x = np.random.default_rng(2).random((4, 32, 32)).astype(np.float32)
    pipe = Pipeline([Stage("down", kernel="box", size=2, stride=2, padding=0)])
    levels = pyramid(x, 2, pipeline=pipe, axes=(1, 2))
    assert [a.shape for a in levels] == [(4, 32, 32), (4, 16, 16), (4, 8, 8)]
    np.testing.assert_allclose(levels[2], x.reshape(4, 8, 4, 8, 4).mean(axis=(2, 4)), rtol=1e-6)


def test_bad_levels_name_the_parameter_and_say_how_many_fit():
    x = np.ones((64, 48), np.float32)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=rf"levels must be an integer >= 1, got {bad!r}"):
            pyramid(x, bad)
    with pytest.raises(
        ValueError, match=r"levels=10: at most 6 levels fit an image of shape \(64, 48\): level 7 "
    ):
        pyramid(x, 10)
    up = Pipeline([Stage("up", stride=2)])
    with pytest.raises(
        ValueError, match=r"level 1 would not be smaller .*\(64, 48\) -> \(128, 96\)"
    ):
        pyramid(x, 1, pipeline=up)
    flat = Pipeline([Stage("down", stride=1)])
    with pytest.raises(ValueError, match="make no smaller level"):
        pyramid(x, 1, pipeline=flat)
    with pytest.raises(TypeError, match="either pipeline or the down keywords"):
        pyramid(x, 1, pipeline=flat, stride=2)


def test_level_placements_follow_the_output_geometry():
    pipe = Pipeline([Stage("down", stride=(1, 2, 2))])
    shape, scale, translate = (5, 100, 91), (1.5, 0.2, 0.2), (3.0, -1.0, 2.0)
    placed = level_placements(pyramid_specs(pipe, shape, 3), scale, translate)
    assert placed[0] == (scale, translate)
    for s, t in placed[1:]:
        geo = output_geometry("down", shape, scale=scale, translate=translate, stride=(1, 2, 2))
        assert s == pytest.approx(geo.scale) and t == pytest.approx(geo.translate)
        shape, scale, translate = geo.shape, geo.scale, geo.translate


# -- batch ---------------------------------------------------------------------


def test_levels_write_an_ome_zarr_pyramid_placed_level_by_level(tmp_path, capsys, stack):
    src, data = stack
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["down", src, "-o", out, "--stride", "1,2,2", "--levels", "3", "--preserve-dtype"]
        + ["--json"],
        capsys,
    )
    assert code == 0, stdout
    report = json.loads(stdout)["files"][0]
    assert report["level_shapes"] == [[5, 100, 90], [5, 50, 45], [5, 25, 23], [5, 13, 12]]
    # A TIFF input gives an OME-Zarr: the one multiscale format written.
    path = out / "stack.ome.zarr"
    group, ms, placed = _multiscale(path)
    assert [a.get("unit") for a in ms["axes"]] == [UM, UM, UM]
    want = pyramid(data, 3, stride=(1, 2, 2), preserve_dtype=True)
    specs = pyramid_specs(Pipeline([Stage("down", stride=(1, 2, 2))]), data.shape, 3)
    where = level_placements(specs, (1.5, 0.2, 0.2), (0.0, 0.0, 0.0))
    assert [p for p, _, _ in placed] == ["0", "1", "2", "3"]
    for (name, scale, translate), level, (s, t) in zip(placed, want, where):
        got = group[name][...]
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, level)
        assert scale == pytest.approx(s) and translate == pytest.approx(t)
    # Level 1 is exactly the output of the same run without --levels.
    code, _, _ = run_cli(
        ["down", src, "-o", tmp_path / "one", "--stride", "1,2,2", "--preserve-dtype"], capsys
    )
    assert code == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "one" / "stack.tif"), group["1"][...])
    made = dict(group.attrs)["conv_resample"]
    assert made["levels"] == 3 and "chain" not in made


def test_float_levels_from_integers_and_chunked_equals_in_memory(tmp_path, capsys, stack):
    src, data = stack
    base = ["down", src, "--stride", "1,2,2", "--dilation", "1,2,2", "--levels", "2"]
    code, stdout, _ = run_cli(base + ["-o", tmp_path / "mem"], capsys)
    assert code == 0, stdout
    code, stdout, _ = run_cli(base + ["-o", tmp_path / "chunk", "--chunks", "2,16,16"], capsys)
    assert code == 0, stdout
    mem = zarr.open_group(tmp_path / "mem" / "stack.ome.zarr", mode="r")
    chk = zarr.open_group(tmp_path / "chunk" / "stack.ome.zarr", mode="r")
    assert chk["1"].chunks == (2, 16, 16)
    want = pyramid(data, 2, stride=(1, 2, 2), dilation=(1, 2, 2))
    for k in range(3):
        assert mem[str(k)].dtype == np.float32  # dataset 0: the input as float32
        np.testing.assert_array_equal(mem[str(k)][...], want[k].astype(np.float32))
        np.testing.assert_array_equal(chk[str(k)][...], mem[str(k)][...])


def test_rgb_pyramid_is_stored_in_ngff_order_and_read_in_chunks(tmp_path, capsys):
    rgb = (np.random.default_rng(3).random((40, 36, 3)) * 255).astype(np.uint8)
    src = tmp_path / "rgb.tif"
    tifffile.imwrite(src, rgb, photometric="rgb")
    base = ["down", src, "--levels", "2", "--preserve-dtype"]
    assert run_cli(base + ["-o", tmp_path / "a"], capsys)[0] == 0
    assert run_cli(base + ["-o", tmp_path / "b", "--chunks", "8"], capsys)[0] == 0
    want = pyramid(rgb, 2, axes=(0, 1), preserve_dtype=True)
    for d in ("a", "b"):
        group, ms, _ = _multiscale(tmp_path / d / "rgb.ome.zarr")
        assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]  # YXS stored as CYX
        for k in range(3):
            np.testing.assert_array_equal(np.moveaxis(group[str(k)][...], 0, -1), want[k])


def test_levels_on_a_loopback_dask_cluster(tmp_path, capsys, stack):
    distributed = pytest.importorskip("distributed")
    src, data = stack
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        dashboard_address=None,
        host="127.0.0.1",
    ) as cluster:
        code, stdout, _ = run_cli(
            ["down", src, "-o", tmp_path / "out", "--stride", "1,2,2", "--levels", "3"]
            + ["--scheduler", cluster.scheduler_address, "--chunks", "3,16,16"],
            capsys,
        )
    assert code == 0, stdout
    group = zarr.open_group(tmp_path / "out" / "stack.ome.zarr", mode="r")
    for k, level in enumerate(pyramid(data, 3, stride=(1, 2, 2))):
        np.testing.assert_array_equal(group[str(k)][...], level.astype(np.float32))
    assert not list((tmp_path / "out").glob(".*"))  # no gate, lock or partial left


def test_reruns_compare_the_levels(tmp_path, capsys, stack):
    src, _ = stack
    base = ["down", src, "-o", tmp_path / "out", "--stride", "1,2,2"]
    assert run_cli(base + ["--levels", "2"], capsys)[0] == 0
    code, stdout, _ = run_cli(base + ["--levels", "2", "--json"], capsys)
    assert json.loads(stdout)["files"][0]["reason"].startswith("output exists, made with these")
    code, stdout, _ = run_cli(base + ["--levels", "3", "--json"], capsys)
    reason = json.loads(stdout)["files"][0]["reason"]
    assert "different settings (--levels)" in reason
    code, stdout, _ = run_cli(base + ["--format", "ome-zarr", "--json"], capsys)
    assert "different settings (--levels)" in json.loads(stdout)["files"][0]["reason"]


def test_bad_levels_options_exit_2_before_any_work(tmp_path, capsys, stack):
    src, _ = stack
    out = tmp_path / "out"
    for extra, message in [
        (["--levels", "0"], "--levels 0: give the number of levels below the input, >= 1"),
        (["--levels", "2", "--format", "zarr"], "--format zarr holds one resolution"),
        (["--levels", "two"], "--levels: invalid int value: 'two'"),
    ]:
        code, _, stderr = run_cli(["down", src, "-o", out] + extra, capsys)
        assert code == 2 and message in stderr, stderr
    code, _, stderr = run_cli(["up", src, "-o", out, "--levels", "2"], capsys)
    assert code == 2 and "unrecognized arguments: --levels" in stderr
    assert not out.exists()


def test_a_file_too_small_for_its_levels_fails_and_leaves_nothing(tmp_path, capsys, stack):
    src, _ = stack
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["down", src, "-o", out, "--stride", "1,2,2", "--levels", "9", "--json"], capsys
    )
    assert code == 1
    reason = json.loads(stdout)["files"][0]["reason"]
    assert reason.startswith(
        "ValueError: --levels 9: at most 7 levels fit an image of shape (5, 100, 90): "
        "level 8 would not be smaller than level 7 (mode='reflect' needs padding"
    )
    assert not out.exists() or not any(out.iterdir())
    # Filtering the channel axis would give levels with other channels.
    czyx = np.zeros((2, 4, 32, 32), np.float32)
    tifffile.imwrite(tmp_path / "c.tif", czyx, photometric="minisblack", metadata={"axes": "CZYX"})
    code, stdout, _ = run_cli(
        ["down", tmp_path / "c.tif", "-o", out, "--levels", "1", "--axes", "CZYX", "--json"],
        capsys,
    )
    assert code == 1
    assert "keeps all time points and channels; the stages filter C" in stdout


def test_run_recipe_levels_and_a_pyramid_as_input(tmp_path, capsys, stack):
    src, data = stack
    pipe = Pipeline([Stage("down", kernel="box", size=2, stride=2, padding=0)], spatial_dims=2)
    recipe = tmp_path / "r.json"
    pipe.to_json(recipe)
    code, stdout, _ = run_cli(["run", recipe, src, "-o", tmp_path / "p", "--levels", "2"], capsys)
    assert code == 0, stdout
    group = zarr.open_group(tmp_path / "p" / "stack.ome.zarr", mode="r")
    assert [group[str(k)].shape for k in range(3)] == [(5, 100, 90), (5, 50, 45), (5, 25, 22)]
    # A pyramid as input is read at full resolution (dataset 0: the input),
    # and its output records no chain through the pyramid's recipe.
    code, stdout, _ = run_cli(
        ["run", recipe, tmp_path / "p" / "stack.ome.zarr", "-o", tmp_path / "q"], capsys
    )
    assert code == 0, stdout
    again = zarr.open_group(tmp_path / "q" / "stack.ome.zarr", mode="r")
    np.testing.assert_array_equal(again["0"][...], group["1"][...])
    made = dict(again.attrs)["conv_resample"]
    assert "chain" not in made and made["input"]["shape"] == [5, 100, 90]


def test_the_reader_opens_a_pyramid_as_one_multiscale_layer(tmp_path, capsys, stack):
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from napari_conv_resample.batch.napari_reader import read

    src, data = stack
    out = tmp_path / "out"
    assert run_cli(["down", src, "-o", out, "--stride", "1,2,2", "--levels", "2"], capsys)[0] == 0
    [(levels, kwargs, kind)] = read(out / "stack.ome.zarr")
    assert kind == "image" and kwargs["multiscale"] is True
    assert [tuple(a.shape) for a in levels] == [(5, 100, 90), (5, 50, 45), (5, 25, 23)]
    assert kwargs["scale"] == pytest.approx((1.5, 0.2, 0.2))
    # Its full resolution is the input, not a result: no recipe for the inspector.
    assert "conv_resample_recipe" not in kwargs["metadata"]
    viewer = ViewerModel()
    layer = viewer.add_image(levels, **kwargs)
    assert layer.multiscale and len(layer.data) == 3
    np.testing.assert_array_equal(np.asarray(layer.data[0]), data.astype(np.float32))
    assert tuple(layer.scale) == pytest.approx((1.5, 0.2, 0.2))


def _channel_pyramid(tmp_path, capsys, czyx):
    """The OME-Zarr pyramid (2 levels, YX filtered) of a CZYX TIFF of ``czyx``."""
    tifffile.imwrite(tmp_path / "c.tif", czyx, photometric="minisblack", metadata={"axes": "CZYX"})
    code, stdout, _ = run_cli(
        ["down", tmp_path / "c.tif", "-o", tmp_path / "o", "--levels", "2", "--axes", "YX"],
        capsys,
    )
    assert code == 0, stdout
    return tmp_path / "o" / "c.ome.zarr"


def test_the_reader_splits_the_channels_of_a_pyramid(tmp_path, capsys):
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from napari_conv_resample.batch.napari_reader import read

    czyx = np.random.default_rng(4).random((2, 4, 32, 32)).astype(np.float32)
    [(levels, kwargs, _)] = read(_channel_pyramid(tmp_path, capsys, czyx))
    assert kwargs["channel_axis"] == 0 and kwargs["multiscale"] is True
    layers = ViewerModel().add_image(levels, **kwargs)
    assert len(layers) == 2
    assert [tuple(a.shape) for a in layers[1].data] == [(4, 32, 32), (4, 16, 16), (4, 8, 8)]
    want = pyramid(czyx[1], 2, axes=(1, 2))
    np.testing.assert_array_equal(np.asarray(layers[1].data[2]), want[2])


@pytest.mark.parametrize("chunks", [None, "2,16,16"])
def test_levels_as_a_tiled_ome_tiff_with_subifds(tmp_path, capsys, stack, chunks):
    src, data = stack
    argv = ["down", src, "-o", tmp_path / "out", "--stride", "1,2,2", "--levels", "3"]
    argv += ["--format", "tiff", "--preserve-dtype"] + (["--chunks", chunks] if chunks else [])
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0, stdout
    path = tmp_path / "out" / "stack.tif"
    want = pyramid(data, 3, stride=(1, 2, 2), preserve_dtype=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and not tif.is_imagej and len(tif.series) == 1
        series = tif.series[0]
        assert series.axes == "ZYX" and len(series.levels) == 4
        for level, expected in zip(series.levels, want):
            assert level.keyframe.is_tiled and level.dtype == np.uint16
            np.testing.assert_array_equal(level.asarray(), expected)
        pixels = tif.ome_metadata
    assert 'PhysicalSizeX="0.2"' in pixels and 'PhysicalSizeZ="1.5"' in pixels
    # The record is read back: a rerun knows the output is up to date.
    code, stdout, _ = run_cli(argv + ["--json"], capsys)
    assert json.loads(stdout)["files"][0]["reason"].startswith("output exists, made with these")


def test_tiff_pyramids_keep_planes_and_open_as_multiscale_rgb(tmp_path, capsys, stack):
    src, _ = stack
    code, stdout, _ = run_cli(
        ["down", src, "-o", tmp_path / "z", "--levels", "2", "--format", "tiff", "--json"],
        capsys,
    )
    assert code == 1
    assert "differ in Y and X only (they hang under each plane), these stages change Z" in stdout
    thin = tmp_path / "thin.tif"
    tifffile.imwrite(thin, np.zeros((64, 4), np.float32))
    code, stdout, _ = run_cli(
        ["down", thin, "-o", tmp_path / "t", "--levels", "2", "--format", "tiff", "--json"],
        capsys,
    )
    assert code == 1 and "level 2 has shape (16, 1): write fewer levels" in stdout
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from napari_conv_resample.batch.napari_reader import read

    rgb = (np.random.default_rng(6).random((64, 48, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    for chunks in ([], ["--chunks", "16"]):
        out = tmp_path / f"rgb{len(chunks)}"
        argv = ["down", tmp_path / "rgb.tif", "-o", out, "--levels", "2", "--format", "tiff"]
        code, stdout, _ = run_cli(argv + ["--preserve-dtype"] + chunks, capsys)
        assert code == 0, stdout
        [(levels, kwargs, _)] = read(out / "rgb.tif")
        assert kwargs["rgb"] is True and kwargs["multiscale"] is True
        want = pyramid(rgb, 2, axes=(0, 1), preserve_dtype=True)
        assert [tuple(a.shape) for a in levels] == [a.shape for a in want]
        for got, expected in zip(levels, want):
            np.testing.assert_array_equal(np.asarray(got), expected)
        layer = ViewerModel().add_image(levels, **kwargs)
        assert layer.rgb and layer.multiscale


def test_the_reader_opens_pyramids_other_tools_wrote(tmp_path):
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from napari_conv_resample.batch.napari_reader import read

    z = np.random.default_rng(7).random((3, 64, 48)).astype(np.float32)
    levels = [z, z[:, ::2, ::2].copy(), z[:, ::4, ::4].copy()]
    with tifffile.TiffWriter(tmp_path / "p.ome.tif", ome=True) as tif:
        tif.write(z, tile=(32, 32), subifds=2, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5})
        for level in levels[1:]:
            tif.write(level, tile=(16, 16), subfiletype=1, metadata=None)
    # NGFF 0.4 with scale-only transforms, as many tools write it.
    group = zarr.open_group(tmp_path / "p.ome.zarr", mode="w", zarr_format=2)
    axes = [{"name": a, "type": "space"} for a in "zyx"]
    datasets = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1, f, f]}]}
        for k, f in enumerate((1, 2, 4))
    ]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    for k, level in enumerate(levels):
        group.create_array(str(k), shape=level.shape, dtype=level.dtype)[...] = level
    for name in ("p.ome.tif", "p.ome.zarr"):
        [(data, kwargs, _)] = read(tmp_path / name)
        assert kwargs["multiscale"] is True, name
        for got, want in zip(data, levels):
            np.testing.assert_array_equal(np.asarray(got), want)
        assert ViewerModel().add_image(data, **kwargs).multiscale


def test_bad_parameters_are_reported_as_such_and_lists_are_images():
    with pytest.raises(ValueError, match="kernel='bogus'") as err:
        pyramid(np.ones((64, 48), np.float32), 2, kernel="bogus")
    assert "smaller" not in str(err.value)
    levels = pyramid(list(range(20)), 2, kernel="box", size=2, padding=0)
    assert [len(a) for a in levels] == [20, 10, 5]


def _other_tools_store(path, levels, axes="czyx", placements=None):
    group = zarr.open_group(path, mode="w", zarr_format=2)
    kinds = {"c": "channel", "t": "time"}
    md = [{"name": a, "type": kinds.get(a, "space")} for a in axes]
    datasets = []
    for k, level in enumerate(levels):
        group.create_array(str(k), shape=level.shape, dtype=level.dtype)[...] = level
        # Scale-only transforms from the shapes, as many tools write them.
        ratio = [n0 / max(n, 1) for n0, n in zip(levels[0].shape, level.shape)]
        scale, translate = placements[k] if placements else (ratio, None)
        tr = [{"type": "scale", "scale": list(scale)}]
        if translate is not None:
            tr.append({"type": "translation", "translation": list(translate)})
        datasets.append({"path": str(k), "coordinateTransformations": tr})
    group.attrs["multiscales"] = [{"version": "0.4", "axes": md, "datasets": datasets}]


def test_the_reader_keeps_only_levels_that_form_a_pyramid_where_napari_draws_them(tmp_path):
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from napari_conv_resample.batch.napari_reader import read

    c = np.random.default_rng(8).random((3, 4, 32, 32)).astype(np.float32)
    half, quarter = c[:, :, ::2, ::2], c[:, :, ::4, ::4]
    cases = {
        "fewer channels": [c, c[:2, :, ::2, ::2]],
        "an empty level": [c, np.zeros((3, 4, 0, 16), np.float32)],
        "growing again": [c, quarter, half],
    }
    for name, levels in cases.items():
        path = tmp_path / f"{name}.ome.zarr"
        _other_tools_store(path, levels)
        [(data, kwargs, _)] = read(path)
        want = 2 if name == "growing again" else None  # the levels before the bad one
        if want:
            assert [tuple(a.shape) for a in data] == [c.shape, quarter.shape], name
        else:
            assert "multiscale" not in kwargs and tuple(data.shape) == c.shape, name
        assert len(ViewerModel().add_image(data, **kwargs)) == 3  # one layer per channel
    # A level placed far from where napari would draw it: full resolution, with a warning.
    placed = [([1, 1, 1, 1], [0, 0, 0, 0]), ([1, 1, 2, 2], [0, 0, 9.0, 0.5])]
    _other_tools_store(tmp_path / "off.ome.zarr", [c, half], placements=placed)
    with pytest.warns(UserWarning, match="draw level 1 of this pyramid more than one"):
        [(data, kwargs, _)] = read(tmp_path / "off.ome.zarr")
    assert "multiscale" not in kwargs and tuple(data.shape) == c.shape
    placed[1] = ([1, 1, 2, 2], [0, 0, 0.5, 0.5])  # the usual half-pixel shift: kept
    _other_tools_store(tmp_path / "ok.ome.zarr", [c, half], placements=placed)
    [(data, kwargs, _)] = read(tmp_path / "ok.ome.zarr")
    assert kwargs["multiscale"] is True


def test_a_stack_without_axes_metadata_gets_a_pyramid_and_the_report_places_levels(
    tmp_path, capsys
):
    q = np.random.default_rng(9).random((8, 64, 48)).astype(np.float32)
    tifffile.imwrite(tmp_path / "q.tif", q)  # no axes: read as QYX
    code, stdout, _ = run_cli(
        ["down", tmp_path / "q.tif", "-o", tmp_path / "o", "--levels", "2", "--axes", "0,1,2"]
        + ["--json"],
        capsys,
    )
    assert code == 0, stdout
    report = json.loads(stdout)["files"][0]
    specs = pyramid_specs(Pipeline([Stage("down")]), q.shape, 2)
    where = level_placements(specs, (1.0,) * 3, (0.0,) * 3)
    assert [[p["scale"], p["translate"]] for p in report["level_placements"]] == [
        [list(s), list(t)] for s, t in where
    ]
    # shape_out (level 1) and meta_out describe the same array.
    assert report["shape_out"] == report["level_shapes"][1] == [4, 32, 24]
    assert report["meta_out"]["scale"] == list(where[1][0])
    group = zarr.open_group(tmp_path / "o" / "q.ome.zarr", mode="r")
    for k, level in enumerate(pyramid(q, 2)):
        np.testing.assert_array_equal(group[str(k)][...], level)


def test_a_pyramid_of_an_output_keeps_its_chain(tmp_path, capsys, stack):
    src, data = stack
    first = ["--stride", "1,2,2", "--preserve-dtype"]
    assert run_cli(["down", src, "-o", tmp_path / "a"] + first, capsys)[0] == 0
    mid = tmp_path / "a" / "stack.tif"
    argv = ["down", mid, "-o", tmp_path / "p", "--kernel", "box", "--size", "1,2,2"]
    argv += ["--stride", "1,2,2", "--padding", "0", "--levels", "2", "--preserve-dtype"]
    assert run_cli(argv, capsys)[0] == 0
    pyr = tmp_path / "p" / "stack.ome.zarr"
    made = dict(zarr.open_group(pyr, mode="r").attrs)["conv_resample"]
    assert made["source"]["input"]["name"] == "stack.tif"  # how dataset 0 was made
    # A run on the pyramid records the whole chain from the first file,
    # and the chain run on that file gives the same pixels.
    code, stdout, _ = run_cli(["down", pyr, "-o", tmp_path / "c", "--preserve-dtype"], capsys)
    assert code == 0, stdout
    out = zarr.open_group(tmp_path / "c" / "stack.ome.zarr", mode="r")
    chain = dict(out.attrs)["conv_resample"]["chain"]
    assert chain["input"]["shape"] == list(data.shape)
    assert len(chain["recipe"]["stages"]) == 2
    recipe = tmp_path / "chain.json"
    recipe.write_text(json.dumps(chain["recipe"]))
    code, stdout, _ = run_cli(
        ["run", recipe, src, "-o", tmp_path / "r", "--preserve-dtype"], capsys
    )
    assert code == 0, stdout
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "r" / "stack.tif"), out["0"][...])
    # The reader gives the pyramid layer (its dataset 0) the recipe that made it.
    pytest.importorskip("napari")
    from napari_conv_resample.batch.napari_reader import read

    [(_, kwargs, _)] = read(pyr)
    assert len(kwargs["metadata"]["conv_resample_recipe"]["stages"]) == 1
    # A float copy of an integer input is not that input: no record for dataset 0.
    code, _, _ = run_cli(argv[:-1] + ["-o", tmp_path / "f"], capsys)
    made = dict(zarr.open_group(tmp_path / "f" / "stack.ome.zarr", mode="r").attrs)
    assert "source" not in made["conv_resample"]


def test_pyramid_layers_get_contrast_limits_of_their_data(tmp_path, capsys):
    pytest.importorskip("napari")
    from napari_conv_resample.batch.napari_reader import read

    czyx = np.zeros((2, 6, 64, 64), np.float32)
    czyx[0, 2:, 16:48, 16:48] = 150.0  # the first plane is background only
    czyx[1, 1:, 8:40, 8:40] = 9.0
    [(levels, kwargs, _)] = read(_channel_pyramid(tmp_path, capsys, czyx))
    smallest = np.asarray(levels[-1])
    want = [[float(c.min()), float(c.max())] for c in smallest]
    np.testing.assert_allclose(kwargs["contrast_limits"], want)
    assert want[0][1] > 100 and want[1][1] > 5


def test_unitless_images_stay_unitless_in_ome_tiff_and_length_one_axes_keep_levels(
    tmp_path, capsys
):
    from napari_conv_resample.batch.io_tiff import TiffSource

    stack = np.random.default_rng(10).random((4, 64, 48)).astype(np.float32)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack", metadata={"axes": "ZYX"})
    # One z-slice, written by the tool: it keeps the length-1 Z axis.
    argv = ["down", tmp_path / "s.tif", "-o", tmp_path / "m", "--stride", "4,1,1", "--size"]
    argv += ["1,1,1", "--padding", "0", "--kernel", "box", "--suffix", "_one"]
    assert run_cli(argv, capsys)[0] == 0
    plain = stack[:1]
    argv = ["down", tmp_path / "m" / "s_one.tif", "-o", tmp_path / "o", "--stride", "1,2,2"]
    argv += ["--size", "1,3,3", "--levels", "2", "--format", "tiff"]
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0, stdout
    with TiffSource(tmp_path / "o" / "s_one.tif") as src:
        assert src.meta.units == (None, None, None)  # OME's default would be µm
        assert src.shape == (1, 64, 48) and src.meta.axes == "ZYX"
        levels = src.levels
        assert [tuple(a.shape) for a in levels] == [(1, 32, 24), (1, 16, 12)]
        want = pyramid(plain, 2, stride=(1, 2, 2), size=(1, 3, 3))
        for got, expected in zip(levels, want[1:]):
            np.testing.assert_array_equal(np.asarray(got), expected)


def test_tiff_pyramids_need_ome_and_warn_like_zarr_where_napari_misplaces_levels(tmp_path, capsys):
    half = np.random.default_rng(12).random((4, 40, 48)).astype(np.float16)
    tifffile.imwrite(tmp_path / "h.tif", half, photometric="minisblack", metadata={"axes": "ZYX"})
    argv = ["down", tmp_path / "h.tif", "--stride", "1,2,2", "--levels", "2", "--json"]
    argv += ["--preserve-dtype"]
    code, stdout, _ = run_cli(argv + ["-o", tmp_path / "t", "--format", "tiff"], capsys)
    assert code == 1 and "an OME-TIFF, and OME has no float16 pixels" in stdout
    q = np.zeros((5, 32, 32), np.uint16)  # a plain stack: its unnamed axis Q
    tifffile.imwrite(tmp_path / "q.tif", q)
    argv = ["down", tmp_path / "q.tif", "--axes", "YX", "--levels", "1", "--json"]
    code, stdout, _ = run_cli(argv + ["-o", tmp_path / "qt", "--format", "tiff"], capsys)
    assert (
        code == 1
        and "OME names only the axes T, C, Z, Y, X (S), Y X (S) last, not 'QYX'" in stdout
    )
    assert run_cli(argv + ["-o", tmp_path / "z"], capsys)[0] == 0  # OME-Zarr holds it
    pytest.importorskip("napari")
    from napari_conv_resample.batch.napari_reader import read

    img = np.random.default_rng(13).random((64, 64)).astype(np.float32)
    tifffile.imwrite(tmp_path / "m.tif", img)
    for fmt, name in (("tiff", "m.tif"), ("ome-zarr", "m.ome.zarr")):
        out = tmp_path / fmt
        argv = ["down", tmp_path / "m.tif", "-o", out, "--levels", "2", "--size", "7"]
        assert run_cli(argv + ["--padding", "0", "--format", fmt], capsys)[0] == 0
        with pytest.warns(UserWarning, match="napari would draw level 1 of this pyramid"):
            [(data, kwargs, _)] = read(out / name)
        assert "multiscale" not in kwargs and tuple(data.shape) == (64, 64)


def test_a_pyramid_of_a_pyramid_keeps_the_chain_to_the_first_file(tmp_path, capsys, stack):
    src, _ = stack
    keep = ["--stride", "1,2,2", "--preserve-dtype"]
    assert run_cli(["down", src, "-o", tmp_path / "a"] + keep, capsys)[0] == 0
    first = tmp_path / "a" / "stack.tif"
    assert run_cli(["down", first, "-o", tmp_path / "p", "--levels", "1"] + keep, capsys)[0] == 0
    again = ["down", tmp_path / "p" / "stack.ome.zarr", "-o", tmp_path / "q", "--levels", "1"]
    assert run_cli(again + keep, capsys)[0] == 0
    code, _, _ = run_cli(
        ["down", tmp_path / "q" / "stack.ome.zarr", "-o", tmp_path / "c"] + keep, capsys
    )
    assert code == 0
    made = dict(zarr.open_group(tmp_path / "c" / "stack.ome.zarr", mode="r").attrs)
    chain = made["conv_resample"]["chain"]
    assert chain["input"]["name"] == "stack.tif" and chain["input"]["shape"] == [5, 100, 90]
    assert len(chain["recipe"]["stages"]) == 2


def test_rgb_pictures_stay_rgb_through_ome_zarr(tmp_path, capsys):
    from napari_conv_resample.batch.io_zarr import ZarrSource, create_output
    from napari_conv_resample.batch.metadata import ImageMeta

    rgb = (np.random.default_rng(14).random((40, 36, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    keep = ["--preserve-dtype"]
    assert (
        run_cli(
            ["down", tmp_path / "rgb.tif", "-o", tmp_path / "z", "--format", "ome-zarr"] + keep,
            capsys,
        )[0]
        == 0
    )
    store = tmp_path / "z" / "rgb.ome.zarr"
    group = zarr.open_group(store, mode="r")
    attrs = dict(group.attrs)
    assert attrs["rgb_samples"] is True
    assert [c["color"] for c in attrs["omero"]["channels"]] == ["FF0000", "00FF00", "0000FF"]
    with ZarrSource(store) as src:
        assert src.meta.axes == "SYX"
    want = dilated_downsample(rgb, axes=(0, 1), preserve_dtype=True)
    # Back to TIFF: an RGB picture again (planar), not three grey channels.
    code, _, _ = run_cli(
        ["down", store, "-o", tmp_path / "t", "--kernel", "box", "--size", "1"]
        + ["--stride", "1", "--format", "tiff"]
        + keep,
        capsys,
    )
    assert code == 0
    with tifffile.TiffFile(tmp_path / "t" / "rgb.ome.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        np.testing.assert_array_equal(np.moveaxis(tif.asarray(), 0, -1), want)
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from napari_conv_resample.batch.napari_reader import read

    [(data, kwargs, _)] = read(store)
    assert kwargs["rgb"] is True
    np.testing.assert_array_equal(np.asarray(data), want)
    assert ViewerModel().add_image(data, **kwargs).rgb
    # NGFF 0.5 (Zarr v3) keeps the colours under "ome".
    meta = ImageMeta(
        "YXS", (1.0,) * 3, (0.0,) * 3, (None,) * 3, "ome-zarr", {"ngff_version": "0.5"}
    )
    create_output(tmp_path / "v5.ome.zarr", "ome-zarr", rgb.shape, rgb.dtype, rgb.shape, meta)[
        ...
    ] = rgb
    attrs = dict(zarr.open_group(tmp_path / "v5.ome.zarr", mode="r").attrs)
    assert attrs["rgb_samples"] is True and len(attrs["ome"]["omero"]["channels"]) == 3
    with ZarrSource(tmp_path / "v5.ome.zarr") as src:
        assert src.meta.axes == "SYX"
        np.testing.assert_array_equal(np.moveaxis(src.read(), 0, -1), rgb)


def test_inspect_shows_each_level_without_writing(tmp_path, capsys, stack):
    src, data = stack
    code, stdout, _ = run_cli(
        ["inspect", "--stride", "1,2,2", "--input", src, "--levels", "2"], capsys
    )
    assert code == 0, stdout
    specs = pyramid_specs(Pipeline([Stage("down", stride=(1, 2, 2))]), data.shape, 2)
    where = level_placements(specs, (1.5, 0.2, 0.2), (0.0,) * 3)
    assert "  level 0: (5, 100, 90), scale (1.5, 0.2, 0.2), translate (0, 0, 0)" in stdout
    assert (
        f"  level 2: (5, 25, 23), scale (1.5, 0.8, 0.8), translate (0, {where[2][1][1]:.6g}, 0.2)"
        in stdout
    )
    assert not list(tmp_path.glob("**/*.zarr"))
    code, _, stderr = run_cli(["inspect", "--stride", "2", "--levels", "2"], capsys)
    assert code == 2 and "--levels: give the image with --input" in stderr
    code, _, stderr = run_cli(["inspect", "--input", src, "--levels", "0"], capsys)
    assert code == 2 and "--levels 0: give the number of levels" in stderr


def test_an_rgb_z_stack_round_trips_through_ome_zarr_to_tiff(tmp_path, capsys):
    zyxs = (np.random.default_rng(15).random((3, 32, 30, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", zyxs, photometric="rgb", metadata={"axes": "ZYXS"})
    keep = ["--preserve-dtype", "--stride", "1,2,2"]
    argv = ["down", tmp_path / "s.tif", "-o", tmp_path / "z", "--format", "ome-zarr"]
    assert run_cli(argv + keep, capsys)[0] == 0
    store = tmp_path / "z" / "s.ome.zarr"
    for extra in ([], ["--chunks", "8"]):
        out = tmp_path / f"t{len(extra)}"
        argv = ["down", store, "-o", out, "--format", "tiff", "--axes", "YX"] + extra
        code, stdout, _ = run_cli(argv + ["--preserve-dtype"], capsys)
        assert code == 0, stdout
        stored = zarr.open_group(store, mode="r")["0"][...]  # CZYX: a z-stack's colours
        want = dilated_downsample(stored, axes=(2, 3), preserve_dtype=True)
        np.testing.assert_array_equal(tifffile.imread(out / "s.ome.tif"), want)


def test_contrast_limits_of_rgb_flat_bool_and_large_levels(monkeypatch):
    from napari_conv_resample.batch import napari_reader

    rgba = np.zeros((8, 8, 4), np.uint16)
    rgba[..., :3] = np.arange(64).reshape(8, 8, 1) * 100
    rgba[..., 3] = 60000  # alpha is left out
    assert napari_reader._level_limits([rgba], None, rgb=True) == [0.0, 6300.0]
    assert napari_reader._level_limits([np.full((4, 4), 700.0)], None) == [0.0, 700.0]
    assert napari_reader._level_limits([np.ones((4, 4), bool)], None) == [0.0, 1.0]
    monkeypatch.setattr(napari_reader, "LIMITS_SAMPLE", 1000)
    big = np.arange(2 * 40 * 64 * 64, dtype=np.float32).reshape(2, 40, 64, 64)
    sample = napari_reader._limits_sample(big, {0})
    assert sample.shape[0] == 2 and sample.size <= 2 * 1000
    limits = napari_reader._level_limits([big], 0)
    assert limits[0][0] == 0.0 and limits[1][0] == big[1].min()
    assert limits[1][1] <= big[1].max() and limits[1][1] > big[1].mean()

    # NaNs spread by downsampling: a level with none finite defers to the next larger.
    full = np.linspace(500, 1500, 64 * 64, dtype=np.float32).reshape(64, 64)
    nan = np.full((4, 4), np.nan, np.float32)
    two = np.stack([full[::8, ::8], np.full((8, 8), np.nan, np.float32)])
    assert napari_reader._level_limits([full, nan], None) == [500.0, 1500.0]
    limits = napari_reader._level_limits([np.stack([full, full]), two], 0)
    assert limits[0][0] == 500.0 and limits[1] == [500.0, 1500.0]


def test_inspect_plans_a_tiff_pyramid_with_format(tmp_path, capsys):
    cyxs = np.zeros((2, 40, 40, 3), np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", cyxs, photometric="rgb", metadata={"axes": "CYXS"})
    base = ["inspect", "--stride", "2", "--input", tmp_path / "c.tif", "--levels", "1", "--axes"]
    code, stdout, _ = run_cli(base + ["YX", "--format", "tiff"], capsys)
    assert code == 0 and "  level 1: (2, 20, 20, 3)" in stdout, stdout
    code, stdout, _ = run_cli(base + ["YX"], capsys)  # OME-Zarr cannot hold CYXS
    assert code == 1 and "OME-Zarr allows one time axis and one channel" in stdout
    code, _, stderr = run_cli(base + ["YX", "--format", "zarr"], capsys)
    assert code == 2 and "--format zarr holds one resolution" in stderr
