"""Out of core: the peak memory of a chunked run stays near a few chunks, not the image."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_conv_resample import dilated_downsample
from napari_conv_resample.cli import main


def _peak_mib(argv):
    tracemalloc.start()
    try:
        assert main([str(a) for a in argv]) == 0
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["tiff", "ome-zarr"])
def test_chunked_peak_memory_is_a_few_chunks(tmp_path, capsys, fmt):
    shape = (4, 1024, 1024)  # 8 MiB of uint16, 16 MiB as float32
    a = (np.random.default_rng(0).random(shape) * 4000).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "big.ome.tif", a, ome=True, tile=(128, 128), metadata={"axes": "ZYX"}
    )
    want = dilated_downsample(a, stride=(1, 2, 2), dilation=(1, 2, 2))
    del a
    common = ["--stride", "1,2,2", "--dilation", "1,2,2", "--format", fmt, "--no-progress"]
    # Warm up (imports, engine buffers) on a small file so they are not counted.
    (tmp_path / "warm").mkdir()
    tifffile.imwrite(
        tmp_path / "warm" / "w.ome.tif",
        np.ones((4, 64, 64), np.uint16),
        ome=True,
        metadata={"axes": "ZYX"},
    )
    warm = ["down", tmp_path / "warm", "-o", tmp_path / "w_out", "--chunks", "2,32,32"]
    assert main([str(v) for v in warm + common]) == 0
    chunked = _peak_mib(
        ["down", tmp_path / "big.ome.tif", "-o", tmp_path / "c", "--chunks", "2,128,128"] + common
    )
    in_memory = _peak_mib(["down", tmp_path / "big.ome.tif", "-o", tmp_path / "m"] + common)
    capsys.readouterr()
    name = "big.ome.tif" if fmt == "tiff" else "big.ome.zarr"
    if fmt == "tiff":
        got_c, got_m = (
            tifffile.imread(tmp_path / "c" / name),
            tifffile.imread(tmp_path / "m" / name),
        )
    else:
        import zarr

        got_c = zarr.open_group(tmp_path / "c" / name, mode="r")["0"][...]
        got_m = zarr.open_group(tmp_path / "m" / name, mode="r")["0"][...]
    np.testing.assert_array_equal(got_c, want)
    np.testing.assert_array_equal(got_m, want)
    assert in_memory > 8 + 4  # the whole input (uint16) and output (float32)
    assert chunked < 4 and chunked < in_memory / 4, (chunked, in_memory)
