"""Outputs of ``conv-resample`` opened through napari: at the right place, in world units.

napari's builtin reader drops scale/translate (and cannot open an OME-Zarr
group), so the package's reader (:mod:`napari_conv_resample.batch.napari_reader`)
is checked the way napari uses it: an npe2 reader contribution, ``ViewerModel.open``
(no Qt, no display needed). The contribution is registered here under a test
plugin name so the test does not depend on the manifest's state.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

from napari_conv_resample import dilated_downsample, output_geometry, transpose_upsample
from napari_conv_resample.batch.io_zarr import create_output
from napari_conv_resample.batch.metadata import ImageMeta
from napari_conv_resample.batch.napari_reader import get_reader
from napari_conv_resample.cli import main

pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

PLUGIN = "conv-resample-reader-test"


@pytest.fixture(scope="module")
def viewer_open():
    from napari.components import ViewerModel

    pm = npe2.PluginManager.instance()
    pm.discover()
    installed = pm._manifests.get("napari-conv-resample")
    # The installed plugin's own manifest when it declares the reader (the real
    # path users take); otherwise (run from a source tree) a test registration.
    name = PLUGIN
    if installed is not None and installed.contributions.readers:
        name = installed.name
    elif PLUGIN not in pm._manifests:
        pm.register(
            npe2.PluginManifest(
                name=PLUGIN,
                contributions={
                    "commands": [
                        {
                            "id": f"{PLUGIN}.read",
                            "python_name": "napari_conv_resample.batch.napari_reader:get_reader",
                            "title": "read",
                        }
                    ],
                    "readers": [
                        {
                            "command": f"{PLUGIN}.read",
                            "filename_patterns": ["*.tif", "*.tiff", "*.zarr"],
                            "accepts_directories": True,
                        }
                    ],
                },
            )
        )
    viewer = ViewerModel()

    def open_(path):
        return viewer.open(str(path), plugin=name)

    yield open_
    viewer.layers.clear()


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(2)
    a = (rng.random((6, 40, 36)) * 3000).astype(np.uint16)
    d = tmp_path / "in"
    d.mkdir()
    tifffile.imwrite(
        d / "ij.tif",
        a,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um", "xorigin": 4.0, "yorigin": 2.0},
    )
    tifffile.imwrite(
        d / "cells.ome.tif",
        a,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 0.5,
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZ": 2.0,
            "PhysicalSizeZUnit": "µm",
            "Plane": {"PositionX": [10.0] * 6, "PositionY": [20.0] * 6, "PositionZ": [3.0] * 6},
        },
    )
    c = np.stack([a, a[::-1]])
    meta = ImageMeta(
        "CZYX",
        (1.0, 2.0, 0.5, 0.5),
        (0.0, 10.0, 20.0, 30.0),
        (None, "micrometer", "micrometer", "micrometer"),
        "ome-zarr",
        {"ngff_version": "0.4"},
    )
    arr = create_output(d / "multi.ome.zarr", "ome-zarr", c.shape, c.dtype, (1, 3, 16, 16), meta)
    arr[...] = c
    rgb = (rng.random((33, 31, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(d / "rgb.tif", rgb, photometric="rgb")
    placed = {
        "ij": ((1.5, 0.25, 0.25), (0.0, -0.5, -1.0)),
        "cells": ((2.0, 0.5, 0.5), (3.0, 20.0, 10.0)),
        "multi": ((2.0, 0.5, 0.5), (10.0, 20.0, 30.0)),
    }
    return d, a, rgb, placed


def test_reader_claims_only_images(tmp_path, inputs):
    d, *_ = inputs
    assert get_reader(str(d / "ij.tif")) is not None
    assert get_reader(str(d / "multi.ome.zarr")) is not None
    assert get_reader([str(d / "ij.tif"), str(d / "rgb.tif")]) is None
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None


@pytest.mark.parametrize("op", ["down", "up"])
def test_outputs_open_in_napari_at_their_place(tmp_path, capsys, inputs, viewer_open, op):
    d, a, rgb, placed = inputs
    out = tmp_path / op
    params = {"stride": 2, "dilation": 2} if op == "down" else {"stride": 2}
    argv = [op, d, "-o", out, "--no-progress"] + [f"--{k}={v}" for k, v in params.items()]
    assert main([str(v) for v in argv]) == 0, capsys.readouterr()
    func = dilated_downsample if op == "down" else transpose_upsample
    for stem, path in (
        ("ij", out / "ij.tif"),
        ("cells", out / "cells.ome.tif"),
        ("multi", out / "multi.ome.zarr"),
    ):
        scale, translate = placed[stem]
        layers_in = viewer_open(d / path.name)
        layers = viewer_open(path)
        geo = output_geometry(op, a.shape, scale=scale, translate=translate, **params)
        assert len(layers) == len(layers_in) == (2 if stem == "multi" else 1)
        for lin, lout in zip(layers_in, layers):
            # The input opens where its metadata says, the output where place_output puts it.
            np.testing.assert_allclose(lin.scale, scale)
            np.testing.assert_allclose(lin.translate, translate)
            np.testing.assert_allclose(lout.scale, geo.scale)
            np.testing.assert_allclose(lout.translate, geo.translate)
            assert tuple(lout.data.shape) == geo.shape
            assert str(lout.units[-1]) == "micrometer"
            assert lout.axis_labels == ("z", "y", "x")
        np.testing.assert_array_equal(np.asarray(layers[0].data), func(a, **params))
    # RGB stays one RGB layer, pixel units.
    (layer,) = viewer_open(out / "rgb.tif")
    assert layer.rgb and layer.data.shape[-1] == 3
    np.testing.assert_array_equal(layer.data, func(rgb, axes=(0, 1), **params))
    geo = output_geometry(op, rgb.shape, axes=(0, 1), **params)
    np.testing.assert_allclose(layer.scale, geo.scale[:2])
    np.testing.assert_allclose(layer.translate, geo.translate[:2])


def test_down_then_up_lands_on_the_input_grid(tmp_path, capsys, inputs, viewer_open):
    """DESIGN §3: down then up with the same settings returns to the original grid."""
    d, a, _, placed = inputs
    small, back = tmp_path / "small", tmp_path / "back"
    common = ["--stride", "2", "--no-progress"]
    assert (
        main(
            [
                "down",
                str(d / "cells.ome.tif"),
                "-o",
                str(small),
                "--kernel",
                "box",
                "--size",
                "2",
                "--padding",
                "0",
            ]
            + common
        )
        == 0
    )
    assert (
        main(
            [
                "up",
                str(small / "cells.ome.tif"),
                "-o",
                str(back),
                "--kernel",
                "box",
                "--size",
                "2",
                "--padding",
                "0",
            ]
            + common
        )
        == 0
    )
    capsys.readouterr()
    (lin,) = viewer_open(d / "cells.ome.tif")
    (lout,) = viewer_open(back / "cells.ome.tif")
    np.testing.assert_allclose(lout.scale, lin.scale)
    np.testing.assert_allclose(lout.translate, lin.translate)
    assert lout.data.shape == lin.data.shape


def test_planar_rgb_and_two_sample_tiffs_open(tmp_path, capsys, viewer_open):
    """Samples stored by plane (SYX) open as RGB; two samples per pixel open as
    two channel layers; inputs and the batch tool's outputs alike."""
    rng = np.random.default_rng(8)
    d = tmp_path / "in"
    d.mkdir()
    planar = (rng.random((3, 32, 40)) * 255).astype(np.uint8)
    tifffile.imwrite(d / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    pairs = (rng.random((32, 40, 2)) * 255).astype(np.uint8)
    tifffile.imwrite(d / "pairs.tif", pairs, photometric="minisblack", extrasamples=[0])
    out = tmp_path / "out"
    assert main(["down", str(d), "-o", str(out), "--no-progress"]) == 0, capsys.readouterr()
    (layer,) = viewer_open(d / "planar.tif")
    assert layer.rgb
    np.testing.assert_array_equal(layer.data, np.moveaxis(planar, 0, -1))
    (layer,) = viewer_open(out / "planar.tif")
    assert layer.rgb and layer.data.shape == (16, 20, 3)
    want = dilated_downsample(planar, axes=(1, 2))
    np.testing.assert_array_equal(layer.data, np.moveaxis(want, 0, -1))
    for path, shape in ((d / "pairs.tif", (32, 40)), (out / "pairs.tif", (16, 20))):
        layers = viewer_open(path)
        assert len(layers) == 2 and not layers[0].rgb
        assert [lyr.data.shape for lyr in layers] == [shape, shape]
    np.testing.assert_array_equal(viewer_open(d / "pairs.tif")[1].data, pairs[..., 1])


def test_imagej_composite_samples_open_as_channels(tmp_path, capsys, viewer_open):
    """An ImageJ composite stored as 3 samples per pixel (16-bit fluorescence,
    like ImageJ's HeLa sample) opens as three channel layers, not one RGB; so
    does the batch tool's output of it (samples written as non-RGB)."""
    rng = np.random.default_rng(9)
    data = (rng.random((20, 24, 3)) * 3000).astype(np.uint16)
    path = tmp_path / "hela_like.tif"
    # tifffile writes no 16-bit RGB ImageJ file: the description as ImageJ wrote it
    ij = "ImageJ=1.53t\nimages=1\nchannels=3\nmode=composite\n"
    tifffile.imwrite(path, data, photometric="rgb", description=ij, metadata=None)
    layers = viewer_open(path)
    assert len(layers) == 3 and not layers[0].rgb
    np.testing.assert_array_equal(layers[2].data, data[..., 2])
    out = tmp_path / "out"
    argv = ["down", str(path), "-o", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr()
    (written,) = list(out.iterdir())
    layers = viewer_open(written)
    assert len(layers) == 3 and not layers[0].rgb
    want = dilated_downsample(data, axes=(0, 1))
    np.testing.assert_allclose(layers[1].data, want[..., 1], rtol=1e-6)
    # A plain Zarr output keeps them channels too (it was one RGB picture).
    argv = ["down", str(path), "-o", str(tmp_path / "z"), "--format", "zarr", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr()
    layers = viewer_open(tmp_path / "z" / "hela_like.zarr")
    assert len(layers) == 3 and not layers[0].rgb
    np.testing.assert_allclose(np.asarray(layers[1].data), want[..., 1], rtol=1e-6)


def test_channel_names_are_carried_and_shown(tmp_path, capsys, viewer_open):
    """OME-TIFF channel names survive a run to OME-TIFF and to OME-Zarr, and
    name the channel layers; resampling the channel axis drops them."""
    import zarr

    rng = np.random.default_rng(4)
    data = (rng.random((2, 3, 24, 20)) * 1000).astype(np.uint16)
    src = tmp_path / "in" / "cells.ome.tif"
    src.parent.mkdir()
    tifffile.imwrite(
        src, data, ome=True, metadata={"axes": "CZYX", "Channel": {"Name": ["DAPI", "GFP"]}}
    )

    def names(path):  # the shared viewer numbers repeated names: "cells [DAPI] [1]"
        return [re.sub(r" \[\d+\]$", "", lyr.name) for lyr in viewer_open(path)]

    assert names(src) == ["cells [DAPI]", "cells [GFP]"]
    out = tmp_path / "out"
    assert main(["down", str(src), "-o", str(out), "--no-progress"]) == 0, capsys.readouterr()
    assert names(out / "cells.ome.tif") == ["cells [DAPI]", "cells [GFP]"]
    argv = ["down", str(src), "-o", str(tmp_path / "z"), "--format", "ome-zarr", "--no-progress"]
    assert main(argv) == 0
    argv = ["down", str(src), "-o", str(tmp_path / "plain"), "--format", "zarr", "--no-progress"]
    assert main(argv) == 0
    assert names(tmp_path / "plain" / "cells.zarr") == ["cells [DAPI]", "cells [GFP]"]
    attrs = dict(zarr.open_group(tmp_path / "z" / "cells.ome.zarr", mode="r").attrs)
    assert [c["label"] for c in attrs["omero"]["channels"]] == ["DAPI", "GFP"]
    # back from OME-Zarr to OME-TIFF
    argv = ["down", str(tmp_path / "z"), "-o", str(tmp_path / "t"), "--format", "tiff"]
    assert main(argv + ["--no-progress"]) == 0
    (back,) = list((tmp_path / "t").iterdir())
    assert names(back) == ["cells [DAPI]", "cells [GFP]"]
    # two channels resampled into one: no names
    argv = ["down", str(src), "-o", str(tmp_path / "c"), "--axes", "CZYX", "--kernel", "box"]
    assert main(argv + ["--size", "2", "--no-progress"]) == 0
    (one,) = list((tmp_path / "c").iterdir())
    with tifffile.TiffFile(one) as tif:
        assert "DAPI" not in (tif.ome_metadata or "")


def test_colour_photometrics_are_colours_and_grey_samples_are_channels():
    """JPEG colour TIFFs store YCbCr (tifffile decodes it to RGB): colours, as
    RGB is; grey samples (MINISBLACK) and ImageJ composites are channels."""
    from types import SimpleNamespace

    from napari_conv_resample.batch.io_tiff import samples_are_channels

    def tif(photometric):
        return SimpleNamespace(pages=[SimpleNamespace(photometric=photometric)])

    grid = ("YXS", (1.0,) * 3, (0.0,) * 3, (None,) * 3)
    plain = ImageMeta(*grid, "plain", {})
    composite = ImageMeta(*grid, "imagej", {"mode": "composite"})
    ph = tifffile.PHOTOMETRIC
    assert not samples_are_channels(tif(ph.RGB), plain)
    assert not samples_are_channels(tif(ph.YCBCR), plain)
    assert samples_are_channels(tif(ph.MINISBLACK), plain)
    assert samples_are_channels(tif(ph.RGB), composite)


def test_demo_tiffs_open_where_the_demo_says_they_sit(tmp_path, capsys):
    """The demo's library results are written with their origin (ImageJ
    x/y/zorigin), so the reader places them as output_geometry did."""
    from napari_conv_resample.demo import write_library_results

    for path, shape, scale, translate in write_library_results(tmp_path):
        ((data, kwargs, _),) = get_reader(str(path))(str(path))
        assert data.shape == shape
        assert kwargs["scale"] == pytest.approx(scale)
        assert kwargs["translate"] == pytest.approx(translate)
