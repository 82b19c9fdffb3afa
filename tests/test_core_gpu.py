"""CuPy backend through the public API; skipped where CuPy or a GPU is missing."""

import numpy as np
import pytest

from napari_conv_resample import cupy_available, dilated_downsample, transpose_upsample

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device"),
]


def test_cupy_in_gives_cupy_out_and_matches_numpy():
    import cupy

    x = np.random.default_rng(0).random((3, 40, 44)).astype(np.float32)
    w = np.random.default_rng(1).random((3, 3)).astype(np.float32)
    for func, kw in (
        (dilated_downsample, {"stride": 2, "dilation": 2, "mode": "reflect"}),
        (transpose_upsample, {"stride": 2, "padding": 1, "output_padding": 1}),
    ):
        got = func(cupy.asarray(x), w, **kw)
        assert isinstance(got, cupy.ndarray)
        want = func(x, w, backend="numpy", **kw)
        np.testing.assert_allclose(got.get(), want, rtol=1e-5, atol=1e-6)
        host = func(x, w, backend="cupy", **kw)
        assert isinstance(host, np.ndarray)
        np.testing.assert_allclose(host, want, rtol=1e-5, atol=1e-6)
