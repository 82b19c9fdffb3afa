"""OME-Zarr outputs follow NGFF axis order (time, channel, space), RGB included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_conv_resample import dilated_downsample, output_geometry
from napari_conv_resample.batch.io_zarr import ZarrSource, ngff_order
from napari_conv_resample.cli import main


def test_ngff_order():
    assert ngff_order("TZCYX") == ((0, 2, 1, 3, 4), "TCZYX")
    assert ngff_order("YXS") == ((2, 0, 1), "CYX")
    assert ngff_order("ZYX") == ((0, 1, 2), "ZYX")
    assert ngff_order("TCZYX") == ((0, 1, 2, 3, 4), "TCZYX")


@pytest.mark.parametrize("extra", [[], ["--chunks", "5"], ["--chunks", "5", "--workers", "1"]])
def test_rgb_and_imagej_order_to_ome_zarr(tmp_path, capsys, extra):
    rng = np.random.default_rng(4)
    d = tmp_path / "in"
    d.mkdir()
    rgb = (rng.random((33, 31, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(d / "rgb.tif", rgb, photometric="rgb", resolution=(2.0, 2.0))
    hyper = rng.random((2, 5, 3, 20, 18)).astype(np.float32)  # TZCYX (ImageJ order)
    tifffile.imwrite(
        d / "hyper.tif",
        hyper,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um", "finterval": 3.0},
    )
    out = tmp_path / "out"
    argv = ["down", d, "-o", out, "--format", "ome-zarr", "--json", "--no-progress"] + extra
    code = main([str(a) for a in argv])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    g = zarr.open_group(out / "rgb.ome.zarr", mode="r")
    ms = g.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["channel", "space", "space"]
    want = dilated_downsample(rgb, axes=(0, 1))
    np.testing.assert_array_equal(g["0"][...], np.moveaxis(want, -1, 0))
    geo = output_geometry("down", rgb.shape, axes=(0, 1))
    (scale,) = [t["scale"] for t in ms["datasets"][0]["coordinateTransformations"] if "scale" in t]
    assert scale[1:] == pytest.approx(geo.scale[:2])

    g = zarr.open_group(out / "hyper.ome.zarr", mode="r")
    ms = g.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a.get("unit") for a in ms["axes"]] == [
        "second",
        None,
        "micrometer",
        "micrometer",
        "micrometer",
    ]
    want = dilated_downsample(hyper, axes=(1, 3, 4))
    np.testing.assert_array_equal(g["0"][...], np.transpose(want, (0, 2, 1, 3, 4)))
    with ZarrSource(out / "hyper.ome.zarr") as src:
        assert src.meta.axes == "TCZYX"
        geo = output_geometry("down", hyper.shape, axes=(1, 3, 4), scale=(3.0, 2.0, 1.0, 0.5, 0.5))
        assert src.meta.scale == pytest.approx([geo.scale[i] for i in (0, 2, 1, 3, 4)])
        assert src.meta.translate == pytest.approx([geo.translate[i] for i in (0, 2, 1, 3, 4)])


def test_corrupt_zarr_stores_among_good_ones(tmp_path, capsys):
    d = tmp_path / "in"
    (d / "broken.zarr").mkdir(parents=True)
    (d / "broken.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "array"}')
    (d / "group.zarr").mkdir()
    (d / "group.zarr" / "zarr.json").write_text(
        '{"zarr_format": 3, "node_type": "group", "attributes": {}}'
    )
    (d / "garbage.zarr").mkdir()
    (d / "garbage.zarr" / "zarr.json").write_text("{not json")
    tifffile.imwrite(d / "ok.tif", np.ones((20, 20), np.uint8))
    out = tmp_path / "out"
    code = main(["down", str(d), "-o", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["done"] == 1 and report["failed"] == 3
    reasons = {f["input"].rsplit("/", 1)[1]: f["reason"] for f in report["files"]}
    assert "not a readable Zarr store" in reasons["broken.zarr"]
    assert "not a readable Zarr store" in reasons["garbage.zarr"]
    assert "multiscales" in reasons["group.zarr"]
    assert sorted(p.name for p in out.iterdir()) == ["ok.tif"]


def test_axes_ngff_cannot_hold_are_refused_before_writing(tmp_path, capsys):
    # Channels of RGB pictures (C and S) would become two channel axes, which
    # NGFF forbids: the file fails with the reason and nothing is written.
    rng = np.random.default_rng(5)
    d = tmp_path / "in"
    d.mkdir()
    cyxs = (rng.random((2, 16, 16, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(d / "cyxs.ome.tif", cyxs, photometric="rgb", metadata={"axes": "CYXS"})
    tcyx = rng.random((3, 2, 16, 16)).astype(np.float32)
    tifffile.imwrite(d / "tcyx.ome.tif", tcyx, metadata={"axes": "TCYX"})
    out = tmp_path / "out"
    argv = ["down", d, "-o", out, "--format", "ome-zarr", "--json", "--no-progress"]
    code = main([str(a) for a in argv])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    by_name = {r["input"].split("/")[-1]: r for r in report["files"]}
    bad = by_name["cyxs.ome.tif"]
    assert bad["status"] == "failed"
    assert "--format ome-zarr" in bad["reason"] and "'CYXS'" in bad["reason"]
    assert by_name["tcyx.ome.tif"]["status"] == "done"
    assert sorted(p.name for p in out.iterdir()) == ["tcyx.ome.zarr"]
    # The same file as TIFF is fine.
    argv = ["down", d / "cyxs.ome.tif", "-o", out, "--json", "--no-progress"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().out


def test_ngff_axes_problem():
    from napari_conv_resample.batch.io_zarr import ngff_axes_problem

    for ok in ("YX", "ZYX", "TCZYX", "YXS", "CYX", "QYX", "TZYX"):
        assert ngff_axes_problem(ok) is None, ok
    for bad in ("CYXS", "QCYX", "CX", "X", "TZCYXS"):
        assert ngff_axes_problem(bad), bad
