"""Bad input gets a clear error naming the parameter and the value."""

import numpy as np
import pytest

import napari_conv_resample as ncr
from napari_conv_resample import backends, dilated_downsample, transpose_upsample

IMG = np.zeros((16, 16), dtype=np.float32)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"size": 0}, ValueError, ["size", "0"]),
        ({"stride": -1}, ValueError, ["stride", "-1"]),
        ({"dilation": 0}, ValueError, ["dilation", "0"]),
        ({"stride": 1.5}, TypeError, ["stride", "1.5"]),
        ({"stride": (2, 2, 2)}, ValueError, ["stride", "3 values", "2 spatial axes"]),
        ({"size": "3"}, TypeError, ["size"]),
        ({"axes": (0, 0)}, ValueError, ["axes", "twice"]),
        ({"axes": (0, 5)}, ValueError, ["axes", "5", "out of range"]),
        ({"axes": ()}, ValueError, ["axes"]),
        ({"padding": -1}, ValueError, ["padding", "-1"]),
        ({"padding": "full"}, ValueError, ["padding", "full"]),
        ({"padding": ((1, 2, 3), 1)}, ValueError, ["padding"]),
        ({"mode": "mirror"}, ValueError, ["mode", "mirror"]),
        ({"kernel": "triangle"}, ValueError, ["kernel", "triangle", "gaussian"]),
        ({"kernel": np.ones((3, 3, 3))}, ValueError, ["kernel", "3 dimensions"]),
        (
            {"kernel": np.ones((3, 3)), "axes": 0},
            ValueError,
            ["kernel", "2 dimensions"],
        ),
        ({"kernel": np.ones((3, 3), complex)}, TypeError, ["kernel"]),
        ({"kernel": np.array([[1.0, np.nan], [1, 1]])}, ValueError, ["kernel", "finite", "nan"]),
        ({"kernel": np.array([[1.0, 1], [np.inf, 1]])}, ValueError, ["kernel", "inf", "(1, 0)"]),
        ({"backend": "opencl"}, ValueError, ["backend", "opencl"]),
        (
            {"padding": 20, "mode": "reflect"},
            ValueError,
            ["reflect", "padding", "16 pixels"],
        ),
        ({"padding": 17, "mode": "circular"}, ValueError, ["circular", "16 pixels"]),
    ],
)
def test_down_bad_parameters(kwargs, exc, words):
    with pytest.raises(exc) as info:
        dilated_downsample(IMG, **kwargs)
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        (
            {"kernel": np.ones((3, 3)), "stride": 2, "output_padding": 2},
            ValueError,
            ["output_padding=2", "max(stride, dilation)=2"],
        ),
        (
            {"kernel": np.ones((3, 3)), "stride": 2, "output_size": 50},
            ValueError,
            ["output_size=50", "between"],
        ),
        ({"kernel": np.ones((3, 3)), "padding": -2}, ValueError, ["padding", "-2"]),
        ({"kernel": np.ones((3, 3)), "padding": 40}, ValueError, ["crops away"]),
        ({"stride": 0}, ValueError, ["stride", "0"]),
    ],
)
def test_up_bad_parameters(kwargs, exc, words):
    with pytest.raises(exc) as info:
        transpose_upsample(IMG, **kwargs)
    for w in words:
        assert w in str(info.value)


def test_image_smaller_than_dilated_kernel_names_both_sizes():
    with pytest.raises(ValueError) as info:
        dilated_downsample(np.zeros((4, 40)), np.ones((3, 3)), dilation=3, padding="valid")
    msg = str(info.value)
    assert "4 pixels" in msg and "spans 7 pixels" in msg and "dilation=3" in msg


@pytest.mark.parametrize(
    ("image", "exc", "word"),
    [
        (np.zeros((0, 5)), ValueError, "empty"),
        (np.zeros((4, 4), dtype=complex), TypeError, "complex"),
        (np.array([[object()]], dtype=object), TypeError, "object"),
        (np.array(3.0), ValueError, "0-d"),
        (np.array([["a"]]), TypeError, "<U1"),
    ],
)
def test_bad_images(image, exc, word):
    for func in (dilated_downsample, transpose_upsample):
        with pytest.raises(exc, match=word):
            func(image)


def test_too_large_output_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr("napari_conv_resample._validation.available_memory", lambda xp=None: 1000)
    with pytest.raises(MemoryError) as info:
        transpose_upsample(np.zeros((64, 64), dtype=np.float32), stride=4)
    assert "(256, 256)" in str(info.value) and "256.0 KiB" in str(info.value)


def test_cupy_backend_without_cupy_says_why(monkeypatch):
    backends._cupy_status.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)  # import fails
    try:
        with pytest.raises(ncr.BackendUnavailableError) as info:
            dilated_downsample(IMG, backend="cupy")
        assert "pip install" in str(info.value) and "cupy" in str(info.value)
        # auto falls back to NumPy quietly.
        assert isinstance(dilated_downsample(IMG, backend="auto"), np.ndarray)
    finally:
        backends._cupy_status.cache_clear()


def test_input_is_never_modified():
    x = np.arange(100, dtype=np.float32).reshape(10, 10)
    before = x.copy()
    dilated_downsample(x, mode="replicate")
    transpose_upsample(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: ncr.output_geometry("up", (0, 8), padding=0), ValueError, ["(0, 8)", "axis 0"]),
        (lambda: ncr.coverage_map((8, -1), size=3), ValueError, ["input_shape", "-1"]),
        (lambda: ncr.coverage_map((8, 2.5), size=3), TypeError, ["input_shape", "2.5"]),
        (lambda: ncr.sampled_mask((8, 8), (1.5, 2), size=3), TypeError, ["out_index", "1.5"]),
        (
            lambda: ncr.Pipeline([ncr.Stage("down")]).receptive_field((16, 16), (2, 2), upto=0),
            ValueError,
            ["upto", "0"],
        ),
        (
            lambda: ncr.Pipeline.from_json('{"version": "2", "stages": [{"op": "down"}]}'),
            ValueError,
            ["version", "'2'"],
        ),
        (lambda: ncr.make_kernel("lanczos", stride=2, a=1.5), ValueError, ["a must", "1.5"]),
    ],
)
def test_bad_shapes_indices_and_options_name_the_parameter(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value)


def test_one_int_is_a_1d_shape_and_wide_binomials_are_finite():
    np.testing.assert_array_equal(ncr.coverage_map(8, size=3), ncr.coverage_map((8,), size=3))
    k = ncr.make_kernel("binomial", 2001, ndim=1)
    assert np.isfinite(k).all() and abs(k.sum() - 1) < 1e-12
    np.testing.assert_allclose(ncr.make_kernel("binomial", 5, ndim=1) * 16, [1, 4, 6, 4, 1])


def test_lanczos_order_and_index_types_are_checked_first():
    for a in (float("inf"), None, -1, 1.5):
        with pytest.raises(ValueError, match="a must be an integer >= 1"):
            ncr.make_kernel("lanczos", stride=2, a=a)
    assert ncr.make_kernel("lanczos", stride=2, a=2.0).shape == (8,)
    with pytest.raises(TypeError, match=r"out_index must contain integers, got \(True, 2\)"):
        ncr.sampled_mask((4, 5), (True, 2), size=1)
    rf = ncr.Pipeline([ncr.Stage("down")]).receptive_field((16, 16), (2, 2), upto=np.int64(1))
    assert rf.shape == (16, 16)


def test_placement_kernels_and_masks_check_their_inputs():
    """Bad scale/translate, runaway preset kernels and non-real images in
    zero_inserted give errors naming the parameter."""
    from napari_conv_resample import output_geometry, transpose_upsample, zero_inserted

    for bad in ((None, 1), "ab", (10**400, 1)):
        with pytest.raises(TypeError, match="scale must be a sequence of numbers"):
            output_geometry("down", (8, 8), scale=bad)
    with pytest.raises(ValueError, match="scale=.* finite and non-zero"):
        output_geometry("down", (8, 8), scale=(0, 1))
    with pytest.raises(ValueError, match="translate=.* finite"):
        output_geometry("down", (8, 8), translate=(np.nan, 0))
    geo = output_geometry("down", (8, 8), scale=(-1.0, 1.0))  # a flipped axis is fine
    assert geo.scale == (-2.0, 2.0)
    with pytest.raises(ValueError, match="taps, more than"):
        transpose_upsample(np.ones((10, 10), np.float32), stride=100000)
    with pytest.raises(TypeError, match="complex"):
        zero_inserted(np.array([1 + 5j, 2, 3]), size=3)
