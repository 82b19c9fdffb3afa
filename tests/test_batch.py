"""Batch runs on OME-Zarr/Zarr and out of core: metadata read back with zarr, chunked
output equal to in-memory, a loopback dask cluster, interrupted runs resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_conv_resample import Pipeline, Stage, output_geometry
from napari_conv_resample.batch import chunked
from napari_conv_resample.batch.io_zarr import ZarrSource, create_output
from napari_conv_resample.batch.metadata import ImageMeta
from napari_conv_resample.cli import main
from napari_conv_resample.operators import cast_result

SRC = str(Path(__file__).resolve().parents[1] / "src")
UM = "micrometer"


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def write_ome_zarr(path, data, axes, scale, translate, version="0.4", chunks=None):
    units = tuple(UM if a in "ZYX" else None for a in axes)
    meta = ImageMeta(axes, scale, translate, units, "ome-zarr", {"ngff_version": version})
    arr = create_output(path, "ome-zarr", data.shape, data.dtype, chunks or data.shape, meta)
    arr[...] = data
    return meta


@pytest.fixture
def czyx():
    rng = np.random.default_rng(5)
    return (rng.random((2, 6, 40, 36)) * 4000).astype(np.uint16)


def _ngff(path):
    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    ms = attrs["ome"]["multiscales"] if "ome" in attrs else attrs["multiscales"]
    ds = ms[0]["datasets"][0]
    tr = {t["type"]: t for t in ds["coordinateTransformations"]}
    return group, ms[0], tr["scale"]["scale"], tr["translation"]["translation"]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("chunks", [None, "7"])
def test_ome_zarr_roundtrip(tmp_path, capsys, czyx, version, chunks):
    scale, translate = (1.0, 2.0, 0.5, 0.5), (0.0, 1.0, 3.0, 4.0)
    src = tmp_path / "in" / "cells.ome.zarr"
    write_ome_zarr(src, czyx, "CZYX", scale, translate, version, chunks=(1, 3, 16, 16))
    out = tmp_path / "out"
    argv = ["down", src, "-o", out, "--stride", "1,2,2", "--dilation", "1,2,2", "--json"]
    if chunks:
        argv += ["--chunks", chunks]
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0, stdout
    params = dict(stride=(1, 2, 2), dilation=(1, 2, 2), axes=(1, 2, 3))
    geo = output_geometry("down", czyx.shape, scale=scale, translate=translate, **params)
    group, ms, got_scale, got_translate = _ngff(out / "cells.ome.zarr")
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert [a.get("unit") for a in ms["axes"]] == [None, UM, UM, UM]
    assert got_scale == pytest.approx(geo.scale)
    assert got_translate == pytest.approx(geo.translate)
    assert group.metadata.zarr_format == (3 if version == "0.5" else 2)
    if version == "0.4":  # NGFF's Zarr v2 chunk keys are '/'-separated
        zarray = json.loads((out / "cells.ome.zarr" / "0" / ".zarray").read_text())
        assert zarray["dimension_separator"] == "/"
    want = Pipeline([Stage("down", stride=(1, 2, 2), dilation=(1, 2, 2))])(czyx, axes=(1, 2, 3))
    np.testing.assert_array_equal(group["0"][...], want)
    res = ZarrSource(out / "cells.ome.zarr")
    assert res.meta.axes == "CZYX" and res.meta.scale == pytest.approx(geo.scale)


def test_format_conversions_keep_metadata(tmp_path, capsys, czyx):
    scale, translate = (1.0, 2.0, 0.5, 0.5), (0.0, 1.0, 3.0, 4.0)
    src = tmp_path / "cells.ome.zarr"
    write_ome_zarr(src, czyx, "CZYX", scale, translate)
    geo = output_geometry("up", czyx.shape, scale=scale, translate=translate, axes=(2, 3))
    for fmt, name in (("tiff", "cells.ome.tif"), ("zarr", "cells.zarr")):
        out = tmp_path / f"out-{fmt}"
        code, stdout, _ = run_cli(
            ["up", src, "-o", out, "--axes", "YX", "--format", fmt, "--chunks", "16"], capsys
        )
        assert code == 0, stdout
        if fmt == "tiff":
            from napari_conv_resample.batch.io_tiff import TiffSource

            with TiffSource(out / name) as res:
                assert res.meta.flavor == "ome" and res.meta.axes == "CZYX"
                assert res.meta.scale == pytest.approx(geo.scale)
                assert res.meta.translate == pytest.approx(geo.translate)
                data = res.read()
        else:
            arr = zarr.open_array(out / name, mode="r")
            assert arr.metadata.dimension_names == ("c", "z", "y", "x")
            assert arr.attrs["scale"] == pytest.approx(list(geo.scale))
            data = arr[...]
        want = Pipeline([Stage("up")])(czyx, axes=(2, 3))
        np.testing.assert_array_equal(data, want)


@pytest.mark.parametrize("flavor", ["ome", "imagej", "plain"])
def test_chunked_tiff_output_equals_in_memory(tmp_path, capsys, flavor):
    rng = np.random.default_rng(2)
    a = (rng.random((5, 70, 90)) * 255).astype(np.uint8)
    d = tmp_path / "in"
    d.mkdir()
    kw = {
        "ome": dict(ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3}),
        "imagej": dict(imagej=True, metadata={"axes": "ZYX", "spacing": 2.0}),
        "plain": dict(metadata={"axes": "ZYX"}),
    }[flavor]
    tifffile.imwrite(d / "a.tif", a, **kw)
    recipe = Pipeline(
        [
            Stage("down", kernel="binomial", size=5, stride=(1, 2, 2), mode="replicate"),
            Stage("up", kernel="bilinear", stride=(1, 3, 3)),
        ]
    )
    path = tmp_path / "r.json"
    recipe.to_json(path)
    outs = {}
    for name, extra in (("mem", []), ("chunk", ["--chunks", "2,16,24"])):
        out = tmp_path / name
        code, stdout, _ = run_cli(
            ["run", path, d, "-o", out, "--preserve-dtype", "--json"] + extra, capsys
        )
        assert code == 0, stdout
        with tifffile.TiffFile(out / "a.tif") as t:
            outs[name] = t.asarray()
            assert {"ome": t.is_ome, "imagej": t.is_imagej, "plain": t.is_shaped}[flavor]
            if flavor != "imagej" and name == "chunk":
                assert t.pages[0].is_tiled
    np.testing.assert_array_equal(outs["chunk"], outs["mem"])
    np.testing.assert_array_equal(outs["mem"], cast_result(recipe(a), a.dtype, True))


def test_loopback_dask_cluster(tmp_path, capsys, czyx):
    distributed = pytest.importorskip("distributed")
    src = tmp_path / "in.ome.zarr"
    write_ome_zarr(src, czyx, "CZYX", (1.0, 2.0, 0.5, 0.5), (0.0,) * 4)
    tif = tmp_path / "in.tif"
    tifffile.imwrite(tif, czyx[0], imagej=True, metadata={"axes": "ZYX"})
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",  # a real loopback address (in-process clusters default to inproc)
        dashboard_address=None,
        host="127.0.0.1",
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        out = tmp_path / "out"
        code, stdout, _ = run_cli(
            ["down", src, tif, "-o", out, "--scheduler", cluster.scheduler_address]
            + ["--chunks", "3,8,8", "--mode", "circular", "--json"],
            capsys,
        )
    assert code == 0, stdout
    report = json.loads(stdout)
    assert report["done"] == 2
    pipe = Pipeline([Stage("down", mode="circular")])
    got = zarr.open_group(out / "in.ome.zarr", mode="r")["0"][...]
    np.testing.assert_array_equal(got, pipe(czyx, axes=(1, 2, 3)))
    np.testing.assert_array_equal(tifffile.imread(out / "in.tif"), pipe(czyx[0]))


def test_unreachable_scheduler_exits_2(tmp_path, capsys, czyx):
    import dask

    src = tmp_path / "a.tif"
    tifffile.imwrite(src, czyx[0])
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, _, stderr = run_cli(
            ["down", src, "-o", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:1"], capsys
        )
    assert code == 2 and "dask cluster" in stderr


def _inputs(tmp_path, n=3, shape=(4, 48, 40)):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(9)
    for i in range(n):
        data = rng.random(shape).astype(np.float32)
        tifffile.imwrite(d / f"f{i}.tif", data, photometric="minisblack", metadata={"axes": "ZYX"})
    return d


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_mid_write_then_resumed(tmp_path, capsys, monkeypatch, exc):
    d = _inputs(tmp_path)
    out = tmp_path / "out"
    real = chunked.compute_region
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # in the middle of the second file
            raise exc("stopped mid-write")
        return real(*args, **kwargs)

    monkeypatch.setattr(chunked, "compute_region", flaky)
    code, stdout, _ = run_cli(["down", d, "-o", out, "--chunks", "2,16,16"], capsys)
    assert code == (130 if exc is KeyboardInterrupt else 1)
    names = sorted(p.name for p in out.iterdir())
    if exc is KeyboardInterrupt:
        assert names == ["f0.tif"]  # nothing after the interrupt, nothing half-written
    else:
        assert names == ["f0.tif", "f2.tif"] and "f1.tif" in stdout
    monkeypatch.setattr(chunked, "compute_region", real)
    code, stdout, _ = run_cli(["down", d, "-o", out, "--chunks", "2,16,16", "--json"], capsys)
    report = json.loads(stdout)
    assert code == 0
    status = {Path(f["input"]).name: f["status"] for f in report["files"]}
    assert status["f0.tif"] == "skipped" and status["f1.tif"] == "done"
    for i in range(3):
        want = Pipeline([Stage("down")])(tifffile.imread(d / f"f{i}.tif"))
        np.testing.assert_array_equal(tifffile.imread(out / f"f{i}.tif"), want)
    assert sorted(p.name for p in out.iterdir()) == ["f0.tif", "f1.tif", "f2.tif"]


def test_killed_subprocess_leaves_nothing_finished_looking(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(d / "big.tif", rng.random((600, 600)).astype(np.float32))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "napari_conv_resample", "down", str(d), "-o", str(out)]
    argv += ["--chunks", "4", "--no-progress", "--format", "ome-zarr"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = out / ".big.ome.zarr.partial"
    deadline = time.time() + 60
    while not (partial / "0").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "big.ome.zarr").exists()
    assert partial.exists()  # hidden, named .partial: nothing looks finished
    code = main(
        ["down", str(d), "-o", str(out), "--format", "ome-zarr", "--chunks", "128"]
        + ["--no-progress"]
    )
    assert code == 0
    assert not partial.exists()
    got = zarr.open_group(out / "big.ome.zarr", mode="r")["0"][...]
    want = Pipeline([Stage("down")])(tifffile.imread(d / "big.tif"))
    np.testing.assert_array_equal(got, want)


def test_workers_option_runs_a_local_cluster(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    d = _inputs(tmp_path, n=1)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["down", d, "-o", out, "--workers", "1", "--json"], capsys)
    assert code == 0, stdout
    report = json.loads(stdout)
    assert report["done"] == 1 and report["files"][0]["chunks"]
    want = Pipeline([Stage("down")])(tifffile.imread(d / "f0.tif"))
    np.testing.assert_array_equal(tifffile.imread(out / "f0.tif"), want)


def _ome_planes(path):
    """Every OME ``Plane`` element's attributes, in file order."""
    import xml.etree.ElementTree as ET

    with tifffile.TiffFile(path) as tif:
        root = ET.fromstring(tif.ome_metadata)
    return [dict(p.attrib) for p in root.iter() if p.tag.endswith("}Plane")]


def test_ome_stage_positions_in_their_own_unit_and_per_plane(tmp_path, capsys):
    """A stage position in µm with a pixel size in nm is read in nm; written
    planes carry their own slice's Z position."""
    from napari_conv_resample.batch.io_tiff import TiffSource

    rng = np.random.default_rng(1)
    data = (rng.random((3, 32, 40)) * 1000).astype(np.uint16)
    src = tmp_path / "in" / "nm.ome.tif"
    src.parent.mkdir()
    tifffile.imwrite(
        src,
        data,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 65.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 65.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.5,
            "PhysicalSizeZUnit": "µm",
            "Plane": {
                "PositionX": [1500.0] * 3,
                "PositionXUnit": ["µm"] * 3,
                "PositionY": [2.0] * 3,
                "PositionYUnit": ["mm"] * 3,
                "PositionZ": [3.0, 3.5, 4.0],
                "PositionZUnit": ["µm"] * 3,
            },
        },
    )
    with TiffSource(src) as s:
        assert s.meta.axes == "ZYX"
        np.testing.assert_allclose(s.meta.translate, (3.0, 2e6, 1.5e6))
        assert s.meta.units == (UM, "nanometer", "nanometer")

    out = tmp_path / "out"
    code, _, err = run_cli(["down", src, "-o", out, "--stride", "1,2,2"], capsys)
    assert code == 0, err
    geom = output_geometry(
        "down", data.shape, scale=(0.5, 65.0, 65.0), translate=(3.0, 2e6, 1.5e6), stride=(1, 2, 2)
    )
    planes = _ome_planes(out / "nm.ome.tif")
    assert len(planes) == geom.shape[0]
    for k, plane in enumerate(planes):
        assert plane["PositionXUnit"] == "nm" and plane["PositionZUnit"] == "µm"
        np.testing.assert_allclose(float(plane["PositionX"]), geom.translate[2])
        np.testing.assert_allclose(float(plane["PositionY"]), geom.translate[1])
        np.testing.assert_allclose(
            float(plane["PositionZ"]), geom.translate[0] + k * geom.scale[0]
        )
    with TiffSource(out / "nm.ome.tif") as s:
        np.testing.assert_allclose(s.meta.translate, geom.translate)
        np.testing.assert_allclose(s.meta.scale, geom.scale)


@pytest.mark.parametrize("flavor", ["imagej", "ome", "plain"])
def test_an_axis_reduced_to_one_slice_is_kept(tmp_path, capsys, flavor):
    """ImageJ and OME readers drop length-1 axes; the tool records its axes and
    puts them back, with their scale and origin (a z-stack reduced to one slice
    stays ZYX, a TZYX one stays TZYX)."""
    from napari_conv_resample.batch.io_tiff import TiffSource, write_tiff
    from napari_conv_resample.batch.napari_reader import _lazy

    rng = np.random.default_rng(2)
    data = (rng.random((2, 5, 32, 30)) * 1000).astype(np.uint16)
    meta = ImageMeta(
        "TZYX", (1.0, 2.0, 0.5, 0.5), (0.0, 7.0, 1.0, -2.0), (None, UM, UM, UM), flavor
    )
    src = tmp_path / "in" / ("s.ome.tif" if flavor == "ome" else "s.tif")
    src.parent.mkdir()
    write_tiff(src, data, meta)
    out = tmp_path / "out"
    argv = ["down", src, "-o", out, "--size", "1,3,3", "--stride", "8,2,2", "--axes", "ZYX"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    geom = output_geometry(
        "down",
        data.shape,
        scale=meta.scale,
        translate=meta.translate,
        axes=(1, 2, 3),
        size=(1, 3, 3),
        stride=(8, 2, 2),
    )
    assert geom.shape == (2, 1, 16, 15)
    with TiffSource(out / src.name) as res:
        assert res.shape == geom.shape and res.meta.axes == "TZYX"
        np.testing.assert_allclose(res.meta.scale, geom.scale)
        np.testing.assert_allclose(res.meta.translate, geom.translate)
        whole = res.read()
        assert whole.shape == geom.shape
        np.testing.assert_array_equal(
            res.region((slice(1, 2), slice(None), slice(3, 9))), whole[1:2, :, 3:9]
        )
        np.testing.assert_array_equal(np.asarray(_lazy(res)), whole)
    # Files without the tool's record keep tifffile's axes.
    plain2d = tmp_path / "p.tif"
    tifffile.imwrite(plain2d, data[:, :1], imagej=True, metadata={"axes": "TZYX"})
    with TiffSource(plain2d) as other:
        assert other.meta.axes == "TYX" and other.shape == (2, 32, 30)


def test_an_output_another_run_is_writing_is_skipped(tmp_path, capsys):
    """Two runs into one folder: the second skips what the first is writing
    (it would remove the first's temporary files); a killed run's lock is free."""
    d = _inputs(tmp_path, n=2)
    out = tmp_path / "out"
    out.mkdir()
    held = out / ".f0.tif.lock"
    holder = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(held)!r}, os.O_CREAT | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'otherhost 4242')\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        code, stdout, _ = run_cli(["down", d, "-o", out, "--json"], capsys)
        report = json.loads(stdout)
        status = {Path(f["input"]).name: f for f in report["files"]}
        assert code == 0 and status["f1.tif"]["status"] == "done"
        assert status["f0.tif"]["status"] == "skipped"
        assert "another run (otherhost 4242)" in status["f0.tif"]["reason"]
        assert not (out / "f0.tif").exists() and held.exists()
    finally:
        other.kill()
        other.wait()
    # Its holder was killed: the kernel freed the lock; no lock is left behind.
    code, stdout, _ = run_cli(["down", d, "-o", out, "--json"], capsys)
    assert code == 0 and (out / "f0.tif").exists()
    assert sorted(p.name for p in out.iterdir()) == ["f0.tif", "f1.tif"]


def test_single_strip_tiffs_are_read_by_region_not_whole(tmp_path):
    """An uncompressed one-strip TIFF (tifffile's default) is one zarr chunk: the
    source maps it instead, so a region reads only its own pages."""
    from napari_conv_resample.batch.io_tiff import TiffSource, write_tiff

    data = np.random.default_rng(3).random((3, 1, 64, 80)).astype(np.float32)
    meta = ImageMeta("TZYX", (1.0,) * 4, (0.0,) * 4, (None,) * 4, "imagej")
    path = tmp_path / "strip.tif"
    write_tiff(path, data, meta)
    with TiffSource(path) as src:
        assert src.shape == data.shape and src.mapped() is not None

        def whole(*_a, **_k):
            raise AssertionError("read through the one-chunk zarr view")

        src._series.aszarr = whole
        index = (slice(1, 3), slice(None), slice(10, 30), slice(5, 77))
        np.testing.assert_array_equal(src.region(index), data[index])
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(
        tiled, data[:, 0], tile=(32, 32), photometric="minisblack", metadata={"axes": "ZYX"}
    )
    with TiffSource(tiled) as src:
        assert src.mapped() is None  # tiles: the zarr view reads only the tiles needed
        np.testing.assert_array_equal(src.region((slice(0, 2), slice(3, 40))), data[:2, 0, 3:40])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_channels_and_bioformats2raw_layout(tmp_path, capsys, czyx, version):
    """Channel names and colours (omero) are kept; a bioformats2raw store (the
    image in its group '0') is read."""
    omero = {
        "channels": [
            {"label": "DAPI", "color": "0000FF", "window": {"start": 0, "end": 4000}},
            {"label": "GFP", "color": "00FF00", "window": {"start": 10, "end": 3000}},
        ]
    }
    scale, translate = (1.0, 2.0, 0.5, 0.5), (0.0, 1.0, 3.0, 4.0)
    root = tmp_path / "in" / "plate.ome.zarr"
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(root, mode="w", zarr_format=fmt)
    layout = {"bioformats2raw.layout": 3}
    group.attrs.update({"ome": {"version": "0.5", **layout}} if version == "0.5" else layout)
    units = (None, UM, UM, UM)
    meta = ImageMeta("CZYX", scale, translate, units, "ome-zarr", {"ngff_version": version})
    meta.extra["omero"] = omero
    arr = create_output(root / "0", "ome-zarr", czyx.shape, czyx.dtype, (1, 3, 16, 16), meta)
    arr[...] = czyx
    out = tmp_path / "out"
    code, stdout, err = run_cli(["down", root, "-o", out, "--stride", "1,2,2", "--json"], capsys)
    assert code == 0, stdout + err
    result, ms, got_scale, got_translate = _ngff(out / "plate.ome.zarr")
    geo = output_geometry(
        "down", czyx.shape, scale=scale, translate=translate, stride=(1, 2, 2), axes=(1, 2, 3)
    )
    assert got_scale == pytest.approx(geo.scale) and got_translate == pytest.approx(geo.translate)
    attrs = dict(result.attrs)
    kept = attrs["ome"]["omero"] if version == "0.5" else attrs["omero"]
    assert kept == omero


def test_output_locks_exclude_each_other_and_free_on_release(tmp_path):
    from napari_conv_resample.batch.runner import release_lock, take_lock

    lock = tmp_path / ".x.tif.lock"
    fd, holder = take_lock(lock)
    assert fd is not None and holder is None
    again, holder = take_lock(lock)  # another open file: the kernel lock excludes it
    assert again is None and str(os.getpid()) in holder
    release_lock(lock, fd)
    assert not lock.exists()
    fd, holder = take_lock(lock)
    assert fd is not None
    release_lock(lock, fd)


def test_channel_metadata_is_dropped_when_channels_are_resampled(tmp_path, capsys, czyx):
    omero = {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}
    meta = ImageMeta("CZYX", (1.0,) * 4, (0.0,) * 4, (None, UM, UM, UM), "ome-zarr")
    meta.extra.update(ngff_version="0.4", omero=omero)
    src = tmp_path / "in" / "c.ome.zarr"
    create_output(src, "ome-zarr", czyx.shape, czyx.dtype, (1, 3, 16, 16), meta)[...] = czyx
    out = tmp_path / "out"
    argv = ["down", src, "-o", out, "--axes", "CZYX", "--kernel", "box", "--size", "1"]
    code, _, err = run_cli(argv + ["--stride", "2,1,1,1", "--padding", "0"], capsys)
    assert code == 0, err
    group, *_ = _ngff(out / "c.ome.zarr")
    assert group["0"].shape[0] == 1 and "omero" not in dict(group.attrs)
    # The same number of channels, but each output channel mixes its neighbours.
    argv = ["down", src, "-o", out / "mixed", "--axes", "CZYX", "--kernel", "box", "--size", "3"]
    code, _, err = run_cli(argv + ["--stride", "1", "--padding", "same"], capsys)
    assert code == 0, err
    group, *_ = _ngff(out / "mixed" / "c.ome.zarr")
    assert group["0"].shape[0] == 2 and "omero" not in dict(group.attrs)
    # A kernel of one tap along C keeps every channel what it was, and its name.
    argv = ["down", src, "-o", out / "kept", "--axes", "CZYX", "--kernel", "box"]
    code, _, err = run_cli(argv + ["--size", "1,3,3,3", "--stride", "1,2,2,2"], capsys)
    assert code == 0, err
    group, *_ = _ngff(out / "kept" / "c.ome.zarr")
    assert group["0"].shape[0] == 2 and dict(group.attrs)["omero"] == omero


def test_ctrl_c_with_workers_cancels_chunks_and_keeps_nothing(tmp_path):
    """SIGINT while a local dask cluster writes chunks: exit 130, the chunks are
    cancelled, and neither the partial output nor the lock is left behind."""
    pytest.importorskip("distributed")
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    data = rng.random((600, 600)).astype(np.float32)
    tifffile.imwrite(d / "big.tif", data)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "napari_conv_resample", "down", str(d), "-o", str(out)]
    argv += ["--chunks", "4", "--no-progress", "--format", "ome-zarr", "--workers", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = out / ".big.ome.zarr.partial"
    deadline = time.time() + 120
    # Wait until workers have written chunks (more than the array's metadata).
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and sum(1 for _ in partial.rglob("*")) > 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr
    assert b"CRITICAL" not in stderr and b"distributed.worker" not in stderr  # no log noise
    assert sorted(p.name for p in out.iterdir()) == []  # no partial, scratch or lock
    np.testing.assert_array_equal(tifffile.imread(d / "big.tif"), data)  # input intact


def test_ctrl_c_swallowed_by_a_callback_still_stops_the_run(tmp_path, capsys, monkeypatch):
    """Python drops a KeyboardInterrupt raised in a gc or __del__ callback;
    the run must stop at its next chunk all the same."""
    d = _inputs(tmp_path, n=2)
    out = tmp_path / "out"
    real = chunked.compute_region
    calls = {"n": 0}

    def swallowing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            try:  # what an "Exception ignored in ..." callback does to it
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt:
                pass
        return real(*args, **kwargs)

    monkeypatch.setattr(chunked, "compute_region", swallowing)
    code, _, stderr = run_cli(["down", d, "-o", out, "--chunks", "2,16,16"], capsys)
    assert code == 130 and "interrupted" in stderr
    assert calls["n"] == 2  # stopped at the chunk after the interrupt
    assert list(out.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_pyramidal_ome_tiff_in_chunks_equals_in_memory(tmp_path, capsys):
    """A pyramid's series opens as a group of levels: chunks read level 0."""
    data = np.random.default_rng(0).integers(0, 255, (256, 240), dtype=np.uint8)
    src = tmp_path / "in" / "pyramid.ome.tif"
    src.parent.mkdir()
    with tifffile.TiffWriter(src, ome=True) as tw:
        tw.write(data, subifds=2, tile=(64, 64), metadata={"axes": "YX", "PhysicalSizeX": 0.3})
        tw.write(data[::2, ::2], subfiletype=1, tile=(64, 64))
        tw.write(data[::4, ::4], subfiletype=1, tile=(64, 64))
    for name, extra in (("mem", []), ("chunked", ["--chunks", "64"])):
        code, stdout, _ = run_cli(["down", src, "-o", tmp_path / name, "--json", *extra], capsys)
        assert code == 0, stdout
    want = tifffile.imread(tmp_path / "mem" / "pyramid.ome.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "chunked" / "pyramid.ome.tif"), want)
    np.testing.assert_array_equal(want, Pipeline([Stage("down")])(data))


def test_worker_sources_are_opened_anew_when_the_file_is_replaced(tmp_path):
    """A long-lived worker keeps sources open; a file replaced under the same
    path (as rsync does) must not be read from the old one."""
    from napari_conv_resample.batch import runner

    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.full((16, 16), 100, np.float32))
    specs = Pipeline([Stage("down", kernel="box", size=1, padding=0)]).specs((16, 16))
    target = zarr.open_array(tmp_path / "out.zarr", mode="w", shape=(8, 8), dtype="f4")
    gate = tmp_path / "gate"
    gate.touch()
    args = (str(tmp_path / "out.zarr"), specs, ((0, 8), (0, 8)), {"in_dtype": np.float32})
    runner._remote_chunk(str(path), *args, None, str(gate))
    assert float(target[0, 0]) == 100
    new = tmp_path / "new.tif"
    tifffile.imwrite(new, np.full((16, 16), 7, np.float32))
    os.replace(new, path)
    runner._remote_chunk(str(path), *args, None, str(gate))
    assert float(target[0, 0]) == 7
    os.unlink(gate)  # a stopped run: the chunk is not written
    with pytest.raises(RuntimeError, match="has stopped"):
        runner._remote_chunk(str(path), *args, None, str(gate))


def test_a_partial_output_that_cannot_be_removed_is_reported_not_raised(
    tmp_path, capsys, monkeypatch
):
    """Cleaning up after a failed file never stops the batch."""
    from napari_conv_resample.batch import runner

    d = _inputs(tmp_path, n=2)
    real = chunked.compute_region

    def failing(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def stuck(path, tries=5):
        return False

    monkeypatch.setattr(chunked, "compute_region", failing)
    monkeypatch.setattr(runner, "_remove", stuck)
    code, stdout, _ = run_cli(
        ["down", d, "-o", tmp_path / "out", "--chunks", "2,16,16", "--json"], capsys
    )
    report = json.loads(stdout)
    assert code == 1 and report["failed"] == 2
    assert all("could not be removed" in f["reason"] for f in report["files"])
    monkeypatch.setattr(chunked, "compute_region", real)


def test_imagej_outputs_are_never_bigtiff():
    """ImageJ cannot open BigTIFF; tifffile writes large hyperstacks as classic
    TIFF with contiguous data (one IFD) instead."""
    from napari_conv_resample.batch.io_tiff import write_kwargs

    big = (40, 8192, 8192)  # 10 GiB as float32
    ij = ImageMeta("ZYX", (1.0, 0.5, 0.5), (0.0,) * 3, (UM,) * 3, "imagej", {})
    ome = ImageMeta("ZYX", (1.0, 0.5, 0.5), (0.0,) * 3, (UM,) * 3, "ome", {})
    flavor, kw = write_kwargs(ij, big, np.float32)
    assert flavor == "imagej" and kw["bigtiff"] is False
    flavor, kw = write_kwargs(ome, big, np.float32)
    assert flavor == "ome" and kw["bigtiff"] is True
    assert write_kwargs(ome, (4, 64, 64), np.float32)[1]["bigtiff"] is False


@pytest.mark.parametrize(
    "fmt, extra, name",
    [
        ("tiff", [], "cells.ome.tif"),
        ("tiff", ["--chunks", "8"], "cells.ome.tif"),
        ("zarr", [], "cells.zarr"),
        ("ome-zarr", ["--chunks", "8"], "cells.ome.zarr"),
    ],
)
def test_outputs_record_how_they_were_made_and_reruns_compare(tmp_path, capsys, fmt, extra, name):
    """Every output stores its recipe and input; a rerun skips an output made
    with the same settings and says which settings differ when it is stale."""
    from napari_conv_resample.batch.metadata import PROVENANCE
    from napari_conv_resample.batch.runner import open_source

    rng = np.random.default_rng(8)
    data = (rng.random((6, 20, 22)) * 1000).astype(np.uint16)
    src = tmp_path / "in" / "cells.ome.tif"
    src.parent.mkdir()
    md = {"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5}
    tifffile.imwrite(src, data, metadata=md)
    out = tmp_path / "out"
    base = ["down", src, "-o", out, "--format", fmt, "--stride", "1,2,2"] + extra
    code, stdout, err = run_cli(base + ["--json"], capsys)
    assert code == 0, stdout + err
    with open_source(out / name) as res:
        made = res.meta.extra[PROVENANCE]
    stages = [{"op": "down", "stride": [1, 2, 2]}]
    assert made["recipe"] == {
        "format": "napari-conv-resample recipe",
        "version": 2,
        "stages": stages,
        "spatial_dims": 3,
    }
    recipe = Pipeline.from_json(json.dumps(made["recipe"]))
    assert recipe.stages == [Stage("down", stride=(1, 2, 2))]
    assert made["spatial_axes"] == "ZYX" and made["preserve_dtype"] is False
    assert made["input"] == {
        "name": "cells.ome.tif",
        "axes": "ZYX",
        "dtype": "uint16",
        "shape": [6, 20, 22],
        "scale": [2.0, 0.5, 0.5],
        "translate": [0.0, 0.0, 0.0],
        "units": [UM, UM, UM],
    }

    def reason(argv):
        code, stdout, err = run_cli(argv + ["--json"], capsys)
        assert code == 0, stdout + err
        (f,) = json.loads(stdout)["files"]
        assert f["status"] == "skipped"
        return f["reason"]

    same = "output exists, made with these settings (use --overwrite to redo)"
    assert reason(base) == same
    # The same settings spelled otherwise (defaults written out) are the same.
    spelled = ["--kernel", "gaussian", "--size", "3", "--padding", "same", "--mode", "reflect"]
    assert reason(base + spelled) == same
    stale = reason(base[: -2 - len(extra)] + ["--stride", "2"] + extra)
    assert "made with different settings (stages)" in stale and "--overwrite" in stale
    stale = reason(base + ["--preserve-dtype"])
    assert "(--preserve-dtype)" in stale
    # The input changed size since: the output no longer is its result.
    tifffile.imwrite(src, data[:, :10], metadata=md)
    assert "(input (dtype, shape or placement))" in reason(base)
    code, stdout, _ = run_cli(base + ["--no-progress"], capsys)
    assert "skipped: " in stdout and "different settings" in stdout
    # Options this input refuses are reported, not hidden behind the skip.
    code, stdout, _ = run_cli(base + ["--padding", "7", "--mode", "reflect", "--json"], capsys)
    (f,) = json.loads(stdout)["files"]
    assert code == 1 and f["status"] == "failed" and "padding" in f["reason"]
    # --overwrite redoes it with these settings; then it is up to date again.
    code, stdout, err = run_cli(base + ["--overwrite", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["done"] == 1, stdout + err
    assert reason(base) == same


def test_an_output_without_a_record_is_kept_whatever_its_settings(tmp_path, capsys):
    src = tmp_path / "in" / "a.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, np.ones((8, 8), np.float32))
    out = tmp_path / "out"
    out.mkdir()
    tifffile.imwrite(out / "a.tif", np.zeros((2, 2), np.float32))  # someone else's file
    code, stdout, _ = run_cli(["down", src, "-o", out, "--no-progress"], capsys)
    assert code == 0 and "records no settings" in stdout and "whatever its settings" in stdout
    np.testing.assert_array_equal(tifffile.imread(out / "a.tif"), np.zeros((2, 2)))


def test_imagej_axis_units_and_time_intervals_survive(tmp_path, capsys):
    """ImageJ's zunit/yunit/tunit are read and written back; a 1 s interval
    is a calibration like any other (ImageJ and OME)."""
    from napari_conv_resample.batch.runner import open_source

    d = tmp_path / "in"
    d.mkdir()
    data = np.zeros((3, 4, 16, 16), np.uint16)
    md = {"axes": "TZYX", "unit": "nm", "spacing": 0.2, "zunit": "micron"}
    md.update(finterval=5, tunit="min")
    tifffile.imwrite(d / "ij.tif", data, imagej=True, resolution=(1 / 65, 1 / 65), metadata=md)
    one = {"axes": "TZYX", "TimeIncrement": 1.0, "TimeIncrementUnit": "s"}
    tifffile.imwrite(d / "ome.ome.tif", data, metadata=one)
    tifffile.imwrite(d / "ij1.tif", data, imagej=True, metadata={"axes": "TZYX", "finterval": 1.0})
    with open_source(d / "ij.tif") as src:
        assert src.meta.units == ("minute", "micrometer", "nanometer", "nanometer")
        assert src.meta.scale == pytest.approx((5.0, 0.2, 65.0, 65.0))
    out = tmp_path / "out"
    code, stdout, err = run_cli(["down", d, "-o", out, "--stride", "1,2,2", "--json"], capsys)
    assert code == 0, stdout + err
    with tifffile.TiffFile(out / "ij.tif") as tif:
        ij = tif.imagej_metadata
        assert (ij["unit"], ij["zunit"], ij["finterval"], ij["tunit"]) == ("nm", "um", 5.0, "min")
    with open_source(out / "ij.tif") as res:
        assert res.meta.units == ("minute", "micrometer", "nanometer", "nanometer")
        assert res.meta.scale == pytest.approx((5.0, 0.2, 130.0, 130.0))
    for name in ("ome.ome.tif", "ij1.tif"):
        with open_source(out / name) as res:
            assert (res.meta.scale[0], res.meta.units[0]) == (1.0, "second"), name


def test_scheduler_workers_in_another_folder_get_absolute_paths(tmp_path, monkeypatch, capsys):
    """Workers of a --scheduler cluster run in folders of their own: relative
    input and output paths reach them absolute (a decoy file at the same
    relative path in the workers' folder is not read)."""
    distributed = pytest.importorskip("distributed")
    client_dir, worker_dir = tmp_path / "client", tmp_path / "worker"
    for d in (client_dir, worker_dir):
        (d / "in").mkdir(parents=True)
    x = np.arange(48 * 40, dtype=np.float32).reshape(48, 40)
    tifffile.imwrite(client_dir / "in" / "b.tif", x)
    tifffile.imwrite(worker_dir / "in" / "b.tif", np.full_like(x, 7.0))
    monkeypatch.chdir(worker_dir)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        monkeypatch.chdir(client_dir)
        argv = ["down", "in/b.tif", "-o", "out", "--scheduler", cluster.scheduler_address]
        code, stdout, _ = run_cli(argv + ["--chunks", "16", "--json"], capsys)
    assert code == 0, stdout
    np.testing.assert_array_equal(
        tifffile.imread(client_dir / "out" / "b.tif"), Pipeline([Stage("down")])(x)
    )


@pytest.mark.parametrize("chunks", [[], ["--chunks", "16"]])
@pytest.mark.parametrize("flavor", ["plain", "imagej"])
def test_tiff_outputs_one_pixel_wide_or_without_a_y_axis(tmp_path, capsys, flavor, chunks):
    """A TIFF output whose X axis is one pixel is written plane by plane
    (tifffile takes a trailing length-1 axis for samples: tiles landed wrong,
    ImageJ files were unreadable); axes ZX too; a 1-D image is refused."""
    from napari_conv_resample.batch.runner import open_source

    rng = np.random.default_rng(1)
    d = tmp_path / "in"
    d.mkdir()
    x = rng.integers(0, 60000, (4, 40, 2)).astype(np.uint16)
    kw = {"imagej": True} if flavor == "imagej" else {}
    tifffile.imwrite(d / "w.tif", x, photometric="minisblack", metadata={"axes": "ZYX"}, **kw)
    zx = rng.random((6, 40)).astype(np.float32)
    zarr.create_array(store=str(d / "zx.zarr"), data=zx, dimension_names=["z", "x"], zarr_format=3)
    zarr.create_array(store=str(d / "line.zarr"), data=zx[0], zarr_format=3)
    out = tmp_path / "out"
    argv = ["down", d, "-o", out, "--format", "tiff", "--json"] + chunks
    code, stdout, _ = run_cli(argv, capsys)
    report = {f["input"].rsplit("/", 1)[1]: f for f in json.loads(stdout)["files"]}
    assert code == 1
    assert "1-D" in report["line.zarr"]["reason"] and not (out / "line.tif").exists()
    with open_source(out / "w.tif") as res:
        np.testing.assert_array_equal(res.read(), Pipeline([Stage("down")])(x))
    with open_source(out / "zx.ome.tif") as res:
        assert res.meta.axes == "ZX"
        np.testing.assert_array_equal(res.read(), Pipeline([Stage("down")])(zx))


def test_tiled_tiff_of_one_pixel_planes_is_read_in_chunks(tmp_path, capsys):
    # tifffile's zarr view of tiles larger than 1x1 planes fails: read whole.
    a = np.arange(6, dtype=np.uint16).reshape(3, 2, 1, 1)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, a, tile=(16, 16), metadata={"axes": "CZYX"})
    argv = ["down", src, "-o", tmp_path / "o", "--axes", "CZ", "--kernel", "box", "--size", "1"]
    code, stdout, _ = run_cli(argv + ["--chunks", "1,1", "--json"], capsys)
    assert code == 0, stdout
    got = tifffile.imread(tmp_path / "o" / "in.tif").reshape(2, 1, 1, 1)
    np.testing.assert_array_equal(got, a[::2, ::2].astype(np.float32))


def test_records_without_rounding_read_as_not_rounded_and_yxc_zarr_to_tiff(tmp_path, capsys):
    """A stage record carries 'rounded' only when set (records of the version
    before it compare equal); a Zarr with axes YXC is written as a plain TIFF
    (OME needs YX last), in memory and chunked."""
    from napari_conv_resample.batch.runner import open_source, resolved_stages

    specs = Pipeline([Stage("down"), Stage("up")]).specs((20, 20))
    assert all("rounded" not in r for r in resolved_stages(specs))
    assert [("rounded" in r) for r in resolved_stages(specs, (0,))] == [True, False]
    yxc = np.random.default_rng(3).random((20, 24, 3)).astype(np.float32)
    zarr.create_array(
        store=str(tmp_path / "yxc.zarr"), data=yxc, dimension_names=["y", "x", "c"], zarr_format=3
    )
    want = Pipeline([Stage("down")])(yxc, axes=(0, 1))
    for extra in ([], ["--chunks", "8"]):
        out = tmp_path / f"o{len(extra)}"
        argv = ["down", tmp_path / "yxc.zarr", "-o", out, "--format", "tiff", "--json"] + extra
        code, stdout, _ = run_cli(argv, capsys)
        assert code == 0, stdout
        (path,) = out.iterdir()
        with open_source(path) as res:
            assert res.meta.axes == "YXC"
            np.testing.assert_array_equal(res.read(), want)


@pytest.mark.parametrize("preserve", [False, True])
def test_a_batch_output_of_a_batch_output_records_the_whole_chain(tmp_path, capsys, preserve):
    """Run 2 on run 1's output records the chain from the first file (its
    stages, with run 1's rounding when it kept integers), which reproduces
    run 2's output from the first file, as a widget chain's recipe does."""
    from napari_conv_resample.batch.metadata import PROVENANCE
    from napari_conv_resample.batch.napari_reader import recipe_metadata
    from napari_conv_resample.batch.runner import open_source

    rng = np.random.default_rng(12)
    data = (rng.random((5, 30, 34)) * 3000).astype(np.uint16)
    src = tmp_path / "in" / "cells.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "ZYX", "spacing": 2.0})
    keep = ["--preserve-dtype"] if preserve else []
    one, two = tmp_path / "one", tmp_path / "two"
    assert (
        main(["down", str(src), "-o", str(one), "--stride", "1,2,2", "--no-progress", *keep]) == 0
    )
    argv = ["up", str(one / "cells.tif"), "-o", str(two), "--stride", "1,2,2", "--no-progress"]
    assert main(argv + keep) == 0
    with open_source(two / "cells.tif") as res:
        made, got = res.meta.extra[PROVENANCE], res.read()
    chain = made["chain"]
    assert chain["input"]["name"] == "cells.tif" and chain["input"]["shape"] == [5, 30, 34]
    recipe = Pipeline.from_json(json.dumps(chain["recipe"]))
    assert [s.op for s in recipe.stages] == ["down", "up"]
    assert recipe.rounded == ((0,) if preserve else ())
    assert chain["preserve_dtype"] is preserve
    np.testing.assert_array_equal(recipe(data, preserve_dtype=preserve), got)
    layer_meta = recipe_metadata(made)
    assert layer_meta["conv_resample_source"]["spatial_shape"] == [5, 30, 34]
    # A third run extends it again.
    three = tmp_path / "three"
    argv = ["down", str(two / "cells.tif"), "-o", str(three), "--kernel", "box", "--no-progress"]
    assert main(argv + keep) == 0
    with open_source(three / "cells.tif") as res:
        whole = Pipeline.from_json(json.dumps(res.meta.extra[PROVENANCE]["chain"]["recipe"]))
        np.testing.assert_array_equal(whole(data, preserve_dtype=preserve), res.read())
    assert whole.rounded == ((0, 1) if preserve else ())


@pytest.mark.parametrize(
    "dtype, keeps, rounded, preserve",
    [
        # uint8, then a float step (no --preserve-dtype), then a preserving
        # run of a recipe with its own rounded stage: both casts were to
        # float32 (no-ops), so the chain rounds nowhere and ends in float.
        ("uint8", (False, True), (), False),
        # float16 kept by both runs: cast to float16 between them and at the end.
        ("float16", (True, True), (0, 1), True),
    ],
)
def test_chain_rounds_only_where_a_step_cast_to_the_first_dtype(
    tmp_path, capsys, dtype, keeps, rounded, preserve
):
    from napari_conv_resample.batch.metadata import PROVENANCE
    from napari_conv_resample.batch.runner import open_source

    rng = np.random.default_rng(13)
    data = (rng.random((30, 34)) * 200).astype(dtype)
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, data)
    recipe = tmp_path / "r.json"
    Pipeline([Stage("up", stride=2), Stage("down", kernel="box")], rounded=(0,)).to_json(recipe)
    argv = ["down", str(src), "-o", str(tmp_path / "one"), "--no-progress"]
    assert main(argv + ["--preserve-dtype"] * keeps[0]) == 0
    argv = ["run", str(recipe), str(tmp_path / "one" / "a.tif"), "-o", str(tmp_path / "two")]
    assert main(argv + ["--no-progress"] + ["--preserve-dtype"] * keeps[1]) == 0
    with open_source(tmp_path / "two" / "a.tif") as res:
        chain, got = res.meta.extra[PROVENANCE]["chain"], res.read()
    whole = Pipeline.from_json(json.dumps(chain["recipe"]))
    assert whole.rounded == rounded and chain["preserve_dtype"] is preserve
    np.testing.assert_array_equal(whole(data, preserve_dtype=chain["preserve_dtype"]), got)


def test_a_record_without_the_input_dtype_compares_equal_and_float16_zarr_to_tiff(
    tmp_path, capsys
):
    """Records written before inputs kept their dtype still match identical
    settings; a float16 image (no OME pixel type) is written as a plain TIFF."""
    from napari_conv_resample.batch.metadata import PROVENANCE
    from napari_conv_resample.batch.runner import _skip_reason, open_source

    data = np.random.default_rng(14).random((20, 22)).astype(np.float16)
    zarr.create_array(store=str(tmp_path / "h.zarr"), data=data, zarr_format=3)
    out = tmp_path / "out"
    argv = ["down", tmp_path / "h.zarr", "-o", out, "--format", "tiff", "--preserve-dtype"]
    code, stdout, _ = run_cli(argv + ["--json"], capsys)
    assert code == 0, stdout
    (path,) = out.iterdir()
    with open_source(path) as res:
        assert res.dtype == np.float16
        np.testing.assert_array_equal(
            res.read(), Pipeline([Stage("down")])(data, preserve_dtype=True)
        )
        made = res.meta.extra[PROVENANCE]
    old = {**made, "input": {k: v for k, v in made["input"].items() if k != "dtype"}}
    plan = {"_meta_out": res.meta.__class__("YX", (1, 1), (0, 0), (None, None))}
    plan["_meta_out"].extra[PROVENANCE] = made
    assert "made with these settings" in _skip_reason(old, plan)
    other = {**made, "input": {**made["input"], "dtype": "float32"}}
    assert "(input (dtype, shape or placement))" in _skip_reason(other, plan)


def test_a_killed_runs_writers_gate_is_closed_by_the_next_run(tmp_path, capsys):
    from napari_conv_resample.batch.runner import write_through_gate

    d = _inputs(tmp_path, n=1)
    out = tmp_path / "out"
    out.mkdir()
    # What a driver killed while its chunks ran on a cluster leaves behind.
    stale = out / ".f0.tif.partial.0123456789ab.writers"
    stale.touch()
    other = out / ".f1.tif.partial.0123456789ab.writers"  # another output's: kept
    other.touch()
    code, stdout, _ = run_cli(["down", d, "-o", out, "--chunks", "16"], capsys)
    assert code == 0, stdout
    assert not stale.exists() and other.exists()
    # A chunk of the killed run that finishes now cannot write any more.
    with pytest.raises(RuntimeError, match="has stopped"):
        write_through_gate(stale, lambda: None)
