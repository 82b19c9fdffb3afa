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


def test_same_geometry_new_weights_and_int64_views():
    import cupy

    rng = np.random.default_rng(2)
    x = rng.integers(0, 60000, size=(2, 30, 33)).astype(np.uint16)
    for seed in (3, 4):  # one compiled kernel, two weight sets
        w = np.random.default_rng(seed).normal(size=(3, 2))
        got = dilated_downsample(
            cupy.asarray(x)[:, ::-1], w, stride=2, mode="circular", axes=(1, 2)
        )
        want = dilated_downsample(
            x[:, ::-1], w, stride=2, mode="circular", axes=(1, 2), backend="numpy"
        )
        np.testing.assert_allclose(got.get(), want, rtol=1e-5, atol=1e-3)


def test_numpy_image_too_large_for_the_gpu_goes_in_slabs(monkeypatch):
    from napari_conv_resample import operators

    calls = []
    real = operators.run_in_slabs

    def spy(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(operators, "run_in_slabs", spy)
    monkeypatch.setattr(operators, "GPU_SLAB_FRACTION", 1e-9)  # any image is "too large"
    x = np.random.default_rng(6).integers(0, 4000, size=(2, 70, 90)).astype(np.uint16)
    for func, kw in (
        (dilated_downsample, {"stride": 2, "dilation": 2, "mode": "reflect"}),
        (transpose_upsample, {"stride": 2}),
    ):
        got = func(x, backend="cupy", axes=(1, 2), preserve_dtype=True, **kw)
        assert isinstance(got, np.ndarray) and got.dtype == np.uint16
        want = func(x, backend="numpy", axes=(1, 2), preserve_dtype=True, **kw)
        np.testing.assert_array_equal(got, want)
    assert len(calls) == 2


def test_gpu_output_too_large_fails_saying_how_much_is_needed():
    import cupy

    x = cupy.broadcast_to(cupy.zeros(1, np.float32), (40000, 40000))  # no memory of its own
    with pytest.raises(
        MemoryError, match=r"the output of shape \(400000, 400000\).*needs 596\.0 GiB"
    ):
        transpose_upsample(x, stride=10)


def test_pyramid_levels_on_the_gpu_match_numpy():
    import cupy

    from napari_conv_resample import pyramid

    x = np.random.default_rng(7).integers(0, 4000, size=(4, 64, 48)).astype(np.uint16)
    got = pyramid(cupy.asarray(x), 2, stride=(1, 2, 2), preserve_dtype=True)
    want = pyramid(x, 2, stride=(1, 2, 2), preserve_dtype=True, backend="numpy")
    for g, w in zip(got[1:], want[1:]):
        assert isinstance(g, cupy.ndarray) and g.dtype == np.uint16
        # Rounded to integers: the engines may differ by a grey level at a .5, and
        # level 2 averages level 1's (so by up to two there).
        assert np.abs(g.get().astype(int) - w.astype(int)).max() <= 2
