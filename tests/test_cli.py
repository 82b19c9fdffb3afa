"""The ``conv-resample`` command line on real TIFF files (plain, ImageJ, OME-TIFF)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_conv_resample import Pipeline, Stage, dilated_downsample, output_geometry
from napari_conv_resample.cli import main
from napari_conv_resample.operators import cast_result

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _stack(shape=(5, 40, 50), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 1000).astype(np.uint16)


@pytest.fixture
def tiffs(tmp_path):
    """A folder of real TIFFs with metadata, one corrupt file, and a sub-folder."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    a = _stack()
    tifffile.imwrite(
        d / "ij.tif",
        a,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um", "xorigin": 4.0, "yorigin": 2.0},
    )
    tifffile.imwrite(
        d / "sub" / "cells.ome.tif",
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
            "Plane": {"PositionX": [10.0] * 5, "PositionY": [20.0] * 5, "PositionZ": [0.0] * 5},
        },
    )
    tifffile.imwrite(d / "plain.tif", a[0])
    return d, a


def _ome_pixels(path):
    import xml.etree.ElementTree as ET

    with tifffile.TiffFile(path) as t:
        root = ET.fromstring(t.ome_metadata)
    ns = root.tag[: root.tag.index("}") + 1]
    px = root.find(f"{ns}Image/{ns}Pixels")
    return px, px.find(f"{ns}Plane")


def test_down_folder_metadata_and_values(tiffs, tmp_path, capsys):
    d, a = tiffs
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["down", d, "-o", out, "--stride", "2", "--dilation", "2", "--no-progress"], capsys
    )
    assert code == 0, stdout
    assert "3 done, 0 skipped, 0 failed" in stdout
    params = dict(kernel="gaussian", size=3, stride=2, dilation=2)
    # ImageJ hyperstack: Z, Y, X all spatial; spacing and resolution scaled, origin moved.
    with tifffile.TiffFile(out / "ij.tif") as t:
        assert t.is_imagej and t.series[0].axes == "ZYX"
        got = t.asarray()
        ij = t.imagej_metadata
        xres = t.pages[0].tags["XResolution"].value
    np.testing.assert_array_equal(got, dilated_downsample(a, **params))
    geo = output_geometry(
        "down", a.shape, scale=(1.5, 0.25, 0.25), translate=(0.0, -0.5, -1.0), **params
    )
    assert ij["spacing"] == pytest.approx(geo.scale[0])
    assert xres[1] / xres[0] == pytest.approx(geo.scale[2])
    assert -ij["xorigin"] * geo.scale[2] == pytest.approx(geo.translate[2])
    assert -ij["yorigin"] * geo.scale[1] == pytest.approx(geo.translate[1])
    assert ij["unit"] == "um"
    # OME-TIFF in a sub-folder: layout mirrored, PhysicalSize* and Plane positions updated.
    ome = out / "sub" / "cells.ome.tif"
    px, plane = _ome_pixels(ome)
    geo = output_geometry(
        "down", a.shape, scale=(2.0, 0.5, 0.5), translate=(0.0, 20.0, 10.0), **params
    )
    assert float(px.get("PhysicalSizeZ")) == pytest.approx(geo.scale[0])
    assert float(px.get("PhysicalSizeX")) == pytest.approx(geo.scale[2])
    assert px.get("PhysicalSizeXUnit") == "µm"
    assert float(plane.get("PositionX")) == pytest.approx(geo.translate[2])
    assert float(plane.get("PositionY")) == pytest.approx(geo.translate[1])
    assert tifffile.imread(ome).dtype == np.float32


def test_reader_roundtrip_of_written_metadata(tiffs, tmp_path, capsys):
    from napari_conv_resample.batch.io_tiff import TiffSource

    d, a = tiffs
    out = tmp_path / "out"
    assert run_cli(["up", d, "-o", out, "--stride", "2", "--no-progress"], capsys)[0] == 0
    for name, scale, translate in (
        ("ij.tif", (1.5, 0.25, 0.25), (0.0, -0.5, -1.0)),
        ("sub/cells.ome.tif", (2.0, 0.5, 0.5), (0.0, 20.0, 10.0)),
        ("plain.tif", (1.0, 1.0), (0.0, 0.0)),
    ):
        with TiffSource(d / name) as src:
            assert src.meta.scale == pytest.approx(scale)
            assert src.meta.translate == pytest.approx(translate)
            geo = output_geometry("up", src.shape, scale=scale, translate=translate, stride=2)
        with TiffSource(out / name) as res:
            assert res.shape == geo.shape
            assert res.meta.scale == pytest.approx(geo.scale)
            assert res.meta.translate == pytest.approx(geo.translate)
            assert res.meta.axes == ("ZYX" if a.ndim == len(geo.shape) else "YX")


def test_preserve_dtype_and_per_axis_values(tiffs, tmp_path, capsys):
    d, a = tiffs
    out = tmp_path / "out"
    argv = ["down", d / "ij.tif", "-o", out, "--stride", "1,2,2", "--size", "1,3,3"]
    code, stdout, _ = run_cli(argv + ["--preserve-dtype", "--kernel", "box", "--json"], capsys)
    assert code == 0
    report = json.loads(stdout)
    assert report["done"] == 1 and report["files"][0]["dtype_out"] == "uint16"
    got = tifffile.imread(out / "ij.tif")
    want = dilated_downsample(a, "box", size=(1, 3, 3), stride=(1, 2, 2), preserve_dtype=True)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)


def test_time_and_channels_are_carried(tmp_path, capsys):
    rng = np.random.default_rng(1)
    a = rng.random((3, 4, 2, 32, 30)).astype(np.float32)  # TZCYX
    d = tmp_path / "in"
    d.mkdir()
    tifffile.imwrite(
        d / "hyper.tif",
        a,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TZCYX", "spacing": 3.0, "unit": "um", "finterval": 5.0},
    )
    rgb = (rng.random((32, 30, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(d / "rgb.tif", rgb, photometric="rgb")
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["down", d, "-o", out, "--json"], capsys)
    assert code == 0, stdout
    with tifffile.TiffFile(out / "hyper.tif") as t:
        assert t.series[0].axes == "TZCYX"
        got = t.asarray()
        assert t.imagej_metadata["finterval"] == 5.0
        assert t.imagej_metadata["spacing"] == pytest.approx(6.0)
    np.testing.assert_array_equal(got, dilated_downsample(a, axes=(1, 3, 4)))
    with tifffile.TiffFile(out / "rgb.tif") as t:
        assert t.series[0].axes == "YXS"
        np.testing.assert_array_equal(t.asarray(), dilated_downsample(rgb, axes=(0, 1)))
    # --axes overrides: filter only Y and X of the ZYX file.
    out2 = tmp_path / "out2"
    assert run_cli(["down", d / "hyper.tif", "-o", out2, "--axes", "YX"], capsys)[0] == 0
    np.testing.assert_array_equal(
        tifffile.imread(out2 / "hyper.tif"), dilated_downsample(a, axes=(3, 4))
    )


def test_corrupt_file_among_good_ones(tiffs, tmp_path, capsys):
    d, _ = tiffs
    (d / "broken.tif").write_bytes(b"II*\x00this is not a tiff")
    (d / "truncated.tif").write_bytes((d / "plain.tif").read_bytes()[:300])
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["down", d, "-o", out, "--json"], capsys)
    assert code == 1
    report = json.loads(stdout)
    assert report["done"] == 3 and report["failed"] == 2
    failed = {
        Path(f["input"]).name: f["reason"] for f in report["files"] if f["status"] == "failed"
    }
    assert set(failed) == {"broken.tif", "truncated.tif"}
    assert all(failed.values())
    assert not (out / "broken.tif").exists()
    assert sorted(p.name for p in out.iterdir()) == ["ij.tif", "plain.tif", "sub"]
    # The plain text summary names the path and the reason too.
    code, stdout, _ = run_cli(["down", d, "-o", out, "--no-progress"], capsys)
    assert code == 1 and "broken.tif" in stdout and "3 skipped" in stdout
    # Skipped outputs: made with these settings (their record says so).
    assert "skipped 3 file(s) whose output exists, made with these settings" in stdout
    code, stdout, _ = run_cli(["down", d, "-o", out, "--stride", "3", "--no-progress"], capsys)
    assert stdout.count("made with different settings (stages); use --overwrite") == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["down", "IN", "-o", "OUT", "--stride", "0"], "stride"),
        (["down", "IN", "-o", "OUT", "--stride", "two"], "--stride"),
        (["down", "IN", "-o", "OUT", "--mode", "mirror"], "mode"),
        (["down", "IN", "-o", "OUT", "--kernel", "nope"], "--kernel"),
        (["down", "IN", "-o", "OUT", "--padding", "sometimes"], "--padding"),
        (["up", "IN", "-o", "OUT", "--output-padding", "5", "--stride", "2"], "output_padding"),
        (["down", "IN", "-o", "OUT", "--workers", "2", "--scheduler", "tcp://x:1"], "not allowed"),
        (["down", "IN", "-o", "OUT", "--axes", "W"], "--axes"),
        (["down", "IN"], "-o"),
        (["down", "missing.tif", "-o", "OUT"], "no such file"),
        (["run", "missing.json", "IN", "-o", "OUT"], "recipe"),
        (["down", "IN", "-o", "OUT", "--suffix", "../x"], "--suffix '../x'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_options_exit_2_before_any_work(tiffs, tmp_path, capsys, argv, message):
    d, _ = tiffs
    out = tmp_path / "out"
    argv = [str(d) if a == "IN" else str(out) if a == "OUT" else a for a in argv]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 2
    assert message in stderr
    assert not out.exists()


def test_output_equal_to_input_is_refused(tiffs, capsys):
    d, _ = tiffs
    before = (d / "plain.tif").read_bytes()
    code, _, stderr = run_cli(["down", d / "plain.tif", "-o", d], capsys)
    assert code == 2 and "overwrite an input" in stderr
    assert (d / "plain.tif").read_bytes() == before
    # With a suffix the same folder is fine.
    assert run_cli(["down", d / "plain.tif", "-o", d, "--suffix", "_d2"], capsys)[0] == 0
    assert (d / "plain_d2.tif").exists()


def test_help_everywhere_has_examples(capsys):
    for argv in ([], ["down"], ["up"], ["run"], ["inspect"]):
        code, stdout, _ = run_cli(argv + ["--help"], capsys)
        assert code == 0 and "examples:" in stdout and "conv-resample" in stdout
    for name in ("--kernel", "--size", "--stride", "--dilation", "--padding", "--mode"):
        assert name in run_cli(["down", "--help"], capsys)[1]
    up = run_cli(["up", "--help"], capsys)[1]
    assert "--output-padding" in up and "--output-size" in up
    common = ("--axes", "--backend", "--preserve-dtype", "--format", "--workers", "--scheduler")
    for name in common + ("--chunks", "--overwrite", "--json"):
        assert name in up


def test_python_dash_m_and_globs(tiffs, tmp_path):
    d, a = tiffs
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_conv_resample", "down", str(d / "*.tif"), "-o", str(out)]
        + ["--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert sorted(Path(f["input"]).name for f in report["files"]) == ["ij.tif", "plain.tif"]


def test_run_recipe_and_inspect(tiffs, tmp_path, capsys):
    d, a = tiffs
    pipe = Pipeline(
        [
            Stage("down", kernel="box", size=3, stride=1, dilation=2, mode="zeros"),
            Stage("down", kernel="binomial", size=5, stride=2),
            Stage("up", stride=2),
        ]
    )
    recipe = tmp_path / "recipe.json"
    pipe.to_json(recipe)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["run", recipe, d / "ij.tif", "-o", out, "--preserve-dtype", "--json"], capsys
    )
    assert code == 0, stdout
    want = cast_result(pipe(a), a.dtype, True)
    np.testing.assert_array_equal(tifffile.imread(out / "ij.tif"), want)
    code, stdout, _ = run_cli(["inspect", recipe], capsys)
    assert code == 0 and stdout.splitlines()[0] == pipe.format_summary().splitlines()[0]
    assert stdout.strip() == pipe.format_summary().strip()
    code, stdout, _ = run_cli(["inspect", recipe, "--json", "--shape", "64,64"], capsys)
    rows = json.loads(stdout)["summary"]
    assert [r["holes"] for r in rows] == [r["holes"] for r in pipe.summary((64, 64))]
    code, stdout, _ = run_cli(
        ["inspect", "--op", "down", "--stride", "2", "--input", d / "sub" / "cells.ome.tif"],
        capsys,
    )
    assert code == 0 and "(5, 40, 50) -> (3, 20, 25)" in stdout and "(4, 1, 1)" in stdout
    # The table is computed on that file's spatial shape: 3-D here.
    table = Pipeline([Stage("down", stride=2)]).format_summary((5, 40, 50))
    assert stdout.startswith(table) and "3x3x3" in table
    assert "on cells.ome.tif's spatial shape (5, 40, 50)" in stdout
    # An up stage's larger grid counts too: its masks would be 16x the file's.
    wide = tmp_path / "wide.tif"
    tifffile.imwrite(wide, np.zeros((600, 600), np.uint8))
    code, stdout, _ = run_cli(["inspect", "--op", "up", "--stride", "4", "--input", wide], capsys)
    assert code == 0 and "on a probe shape: wide.tif's (600, 600) is too large" in stdout
    kernel = tmp_path / "k3.npy"
    np.save(kernel, np.ones((3, 3, 3)) / 27)
    code, stdout, stderr = run_cli(
        ["inspect", "--op", "down", "--kernel", kernel, "--padding", "1:0"], capsys
    )
    assert code == 0 and "3x3x3" in stdout, stderr  # one pair pads the kernel's 3 axes
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": [{"op": "down"}, {"op": "down", "stride": -1}]}')
    code, _, stderr = run_cli(["run", bad, d / "ij.tif", "-o", tmp_path / "o"], capsys)
    assert code == 2 and f"recipe {bad}: stage 2 (down): stride" in stderr and "-1" in stderr
    missing = tmp_path / "missing.tif"
    code, _, stderr = run_cli(["inspect", "--op", "down", "--input", missing], capsys)
    assert code == 2 and f"{missing}: no such file or folder" in stderr
    assert "Traceback" not in stderr


def test_rerun_skips_and_overwrite_redoes(tiffs, tmp_path, capsys):
    d, _ = tiffs
    out = tmp_path / "out"
    assert run_cli(["down", d, "-o", out], capsys)[0] == 0
    mtime = (out / "ij.tif").stat().st_mtime_ns
    code, stdout, _ = run_cli(["down", d, "-o", out, "--json"], capsys)
    assert code == 0 and json.loads(stdout)["skipped"] == 3
    assert (out / "ij.tif").stat().st_mtime_ns == mtime
    code, stdout, _ = run_cli(["down", d, "-o", out, "--overwrite", "--json"], capsys)
    assert json.loads(stdout)["done"] == 3
    assert not [p for p in out.rglob(".*")]  # no temporary names left behind


def test_rerun_into_the_searched_folder_with_a_suffix(tiffs, capsys):
    """-o equal to the searched folder with a suffix: a rerun does not take the
    first run's results as inputs; it skips them, and --overwrite redoes them."""
    d, a = tiffs
    code, _, stderr = run_cli(["down", d, "-o", d, "--suffix", "_d", "--no-progress"], capsys)
    assert code == 0, stderr
    made = sorted(p.name for p in d.rglob("*_d.*"))
    assert made == ["cells_d.ome.tif", "ij_d.tif", "plain_d.tif"]
    code, stdout, _ = run_cli(["down", d, "-o", d, "--suffix", "_d", "--json"], capsys)
    report = json.loads(stdout)
    assert code == 0 and report["skipped"] == 3 and report["done"] == 0
    code, stdout, _ = run_cli(
        ["down", d, "-o", d, "--suffix", "_d", "--overwrite", "--json"], capsys
    )
    assert code == 0 and json.loads(stdout)["done"] == 3
    assert not list(d.rglob("*_d_d.*"))
    # A file of the user's own at a result's path is never taken for a result.
    tifffile.imwrite(d / "own.tif", a[0])
    tifffile.imwrite(d / "own_d.tif", a[1, :8])
    code, _, stderr = run_cli(["down", d, "-o", d, "--suffix", "_d", "--overwrite"], capsys)
    assert code == 2 and "own_d.tif" in stderr
    np.testing.assert_array_equal(tifffile.imread(d / "own_d.tif"), a[1, :8])
    # A result named on the command line is an input (its output would be new).
    code, _, stderr = run_cli(
        ["down", d / "plain.tif", d / "plain_d.tif", "-o", d, "--suffix", "_d"], capsys
    )
    assert code == 2 and "overwrite an input" in stderr


def test_truncated_imagej_stack_fails_instead_of_giving_one_slice(tiffs, tmp_path, capsys):
    d, _ = tiffs
    whole = (d / "ij.tif").read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "ij.tif").write_bytes(whole[: len(whole) // 2])
    code, stdout, _ = run_cli(["down", cut, "-o", tmp_path / "out", "--json"], capsys)
    report = json.loads(stdout)
    assert code == 1 and report["failed"] == 1
    assert "truncated or damaged" in report["files"][0]["reason"]
    assert "declares 5 images" in report["files"][0]["reason"]
    assert not (tmp_path / "out" / "ij.tif").exists()


def test_output_inside_an_input_store_is_refused(tmp_path, capsys):
    src = tmp_path / "in.ome.zarr"
    assert main(["down", str(_write_one(tmp_path)), "-o", str(tmp_path), "--format", "ome-zarr",
                 "--suffix", "", "--no-progress"]) == 0  # fmt: skip
    (tmp_path / "one.ome.zarr").rename(src)
    before = sorted(str(p) for p in src.rglob("*"))
    for target in (src, src / "results"):
        code, _, stderr = run_cli(["down", src, "-o", target], capsys)
        assert code == 2 and "inside the input store" in stderr
    assert sorted(str(p) for p in src.rglob("*")) == before


def _write_one(tmp_path):
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, _stack((3, 20, 24)), photometric="minisblack", metadata={"axes": "ZYX"})
    return path


def test_values_valid_for_longer_axes_are_checked_per_file(tiffs, tmp_path, capsys):
    """A dilation too long for a file's axes fails for that file, with its
    length (not refused up front with a 4096-pixel probe's)."""
    d, _ = tiffs
    code, stdout, _ = run_cli(
        ["down", d / "plain.tif", "-o", tmp_path / "o", "--dilation", "5000", "--json"], capsys
    )
    reason = json.loads(stdout)["files"][0]["reason"]
    assert code == 1 and "4096" not in reason and "40 pixels" in reason


def test_inspect_refuses_shapes_too_large_for_masks_and_probe_output_sizes(capsys):
    code, _, stderr = run_cli(["inspect", "--shape", "100000,100000"], capsys)
    assert code == 2 and "too large" in stderr
    code, _, stderr = run_cli(["inspect", "--op", "up", "--output-size", "10"], capsys)
    assert code == 2 and "output_size depends on the image" in stderr
    code, stdout, _ = run_cli(
        ["inspect", "--op", "up", "--output-size", "10", "--shape", "5"], capsys
    )
    assert code == 0 and "up" in stdout


def test_small_cli_checks_and_notes(tiffs, tmp_path, capsys):
    """--output-size 0 is a bad option (exit 2); inspect of a file it cannot
    plan exits 1; a file with several series says that only the first is
    processed."""
    d, a = tiffs
    code, _, stderr = run_cli(["up", d, "-o", tmp_path / "o", "--output-size", "0"], capsys)
    assert code == 2 and "output_size" in stderr and not (tmp_path / "o").exists()
    (tmp_path / "notatiff.tif").write_bytes(b"II*\x00nothing")
    code, stdout, _ = run_cli(["inspect", "--input", tmp_path / "notatiff.tif"], capsys)
    assert code == 1 and "cannot plan" in stdout
    multi = tmp_path / "multi" / "two.ome.tif"
    multi.parent.mkdir()
    with tifffile.TiffWriter(multi, ome=True) as tw:
        tw.write(a, metadata={"axes": "ZYX"})
        tw.write(a[0], metadata={"axes": "YX"})
    code, stdout, _ = run_cli(
        ["down", multi.parent, "-o", tmp_path / "m", "--no-progress"], capsys
    )
    assert code == 0 and "holds 2 image series; only the first (ZYX (5, 40, 50))" in stdout


def test_axes_out_of_the_files_order_are_refused_per_file(tiffs, tmp_path, capsys):
    """Per-axis values follow the axes in the file's order: --axes XY with
    --stride 1,2 would stride another axis than the user means."""
    d, _ = tiffs
    code, stdout, _ = run_cli(
        [
            "down",
            d / "plain.tif",
            "-o",
            tmp_path / "o",
            "--axes",
            "XY",
            "--stride",
            "1,2",
            "--json",
        ],
        capsys,
    )
    reason = json.loads(stdout)["files"][0]["reason"]
    assert code == 1 and "name the axes in the file's order (YX)" in reason
    code, _, _ = run_cli(["down", d / "plain.tif", "-o", tmp_path / "o", "--axes", "YX"], capsys)
    assert code == 0


def test_resampling_the_samples_axis_gives_grey_samples_or_channels(tmp_path, capsys):
    """--axes YXS on an RGB TIFF makes 2 samples: written to TIFF as 2 grey
    samples (it failed with a tifffile shape error), to OME-Zarr as channels."""
    rgb = (np.random.default_rng(2).random((24, 28, 3)) * 255).astype(np.uint8)
    src = tmp_path / "rgb.tif"
    tifffile.imwrite(src, rgb, photometric="rgb")
    want = Pipeline([Stage("down")])(rgb)
    code, stdout, _ = run_cli(["down", src, "-o", tmp_path / "t", "--axes", "YXS"], capsys)
    assert code == 0, stdout
    with tifffile.TiffFile(tmp_path / "t" / "rgb.tif") as tif:
        assert tif.series[0].axes == "YXS" and tif.pages[0].photometric == 1  # MINISBLACK
        np.testing.assert_allclose(tif.asarray(), want, rtol=1e-6)
    argv = ["down", src, "-o", tmp_path / "z", "--axes", "YXS", "--format", "ome-zarr"]
    assert run_cli(argv, capsys)[0] == 0
    from napari_conv_resample.batch.io_zarr import ZarrSource

    with ZarrSource(tmp_path / "z" / "rgb.ome.zarr") as out:
        assert out.meta.axes == "CYX" and out.shape == (2, 12, 14)  # stored channels first
        np.testing.assert_allclose(out.read(), np.moveaxis(want, -1, 0), rtol=1e-6)


def test_recipes_from_the_plugin_inspect_and_keep_their_spatial_dims(tiffs, tmp_path, capsys):
    """A widget's recipe stores every parameter (output_size null): inspect
    reads it; its spatial_dims against an explicit --axes of another count is
    an error naming both."""
    d, _ = tiffs
    recipe = tmp_path / "r.json"
    recipe.write_text(
        json.dumps(
            {
                "format": "napari-conv-resample recipe",
                "version": 2,
                "spatial_dims": 2,
                "stages": [
                    {"op": "down", "kernel": "gaussian", "size": 3, "stride": 2},
                    {"op": "up", "kernel": "bilinear", "size": None, "stride": 2,
                     "padding": None, "output_padding": 0, "output_size": None},
                ],
            }
        )
    )  # fmt: skip
    code, stdout, _ = run_cli(["inspect", recipe], capsys)
    assert code == 0 and "up" in stdout
    argv = ["run", recipe, d / "ij.tif", "-o", tmp_path / "o", "--json"]
    code, stdout, _ = run_cli(argv + ["--axes", "ZYX"], capsys)
    reason = json.loads(stdout)["files"][0]["reason"]
    assert code == 1 and "--axes ZYX names 3 axes but the recipe filters 2" in reason
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0 and json.loads(stdout)["files"][0]["shape_out"] == [5, 40, 50]
    # a 3-D recipe on a file with two spatial axes says how to name a third
    deep = tmp_path / "deep.json"
    Pipeline([Stage("down")], spatial_dims=3).to_json(deep)
    code, stdout, _ = run_cli(
        ["run", deep, d / "plain.tif", "-o", tmp_path / "p", "--json"], capsys
    )
    reason = json.loads(stdout)["files"][0]["reason"]
    assert code == 1 and "spatial_dims=3" in reason and "no 3 axes to filter" in reason
    frames = tmp_path / "frames.tif"  # no axes metadata: tifffile calls the frames Q
    tifffile.imwrite(frames, _stack((4, 20, 24)), photometric="minisblack")
    code, stdout, _ = run_cli(["run", deep, frames, "-o", tmp_path / "q", "--json"], capsys)
    reason = json.loads(stdout)["files"][0]["reason"]
    assert code == 1 and "e.g. --axes QYX" in reason
    code, _, _ = run_cli(["run", deep, frames, "-o", tmp_path / "q", "--axes", "QYX"], capsys)
    assert code == 0
