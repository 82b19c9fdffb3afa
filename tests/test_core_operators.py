"""Operators against a direct definition, PyTorch, and their adjoint identity."""

import inspect

import numpy as np
import pytest
from _direct import direct_down, direct_up
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_conv_resample import (
    DEFAULTS,
    dilated_downsample,
    output_geometry,
    transpose_upsample,
)

RNG = np.random.default_rng(1234)
MODES = ["zeros", "reflect", "replicate", "circular"]


def _rand(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


# --- direct definition -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("shape", "ksize", "stride", "dilation", "pads"),
    [
        ((17,), (3,), (2,), (2,), ((1, 2),)),
        ((11, 13), (3, 2), (2, 3), (1, 2), ((1, 1), (2, 0))),
        ((7, 8, 9), (2, 3, 3), (1, 2, 2), (2, 1, 2), ((1, 0), (0, 2), (2, 2))),
    ],
)
def test_down_matches_direct_definition(mode, shape, ksize, stride, dilation, pads):
    x = _rand(*shape)
    w = _rand(*ksize)
    got = dilated_downsample(
        x, w, stride=stride, dilation=dilation, padding=pads, mode=mode, backend="numpy"
    )
    want = direct_down(x, w, stride, dilation, pads, mode)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "ksize", "stride", "dilation", "pad", "opad"),
    [
        ((9,), (3,), (2,), (1,), (1,), (1,)),
        ((6, 7), (4, 3), (2, 3), (1, 2), (1, 0), (0, 2)),
        ((4, 5, 3), (3, 2, 3), (2, 1, 3), (2, 1, 1), (2, 0, 1), (1, 0, 2)),
    ],
)
def test_up_matches_direct_definition(shape, ksize, stride, dilation, pad, opad):
    y = _rand(*shape)
    w = _rand(*ksize)
    got = transpose_upsample(
        y,
        w,
        stride=stride,
        dilation=dilation,
        padding=pad,
        output_padding=opad,
        backend="numpy",
    )
    np.testing.assert_allclose(
        got, direct_up(y, w, stride, dilation, pad, opad), rtol=1e-12, atol=1e-12
    )


# --- adjoint identity --------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_adjoint_identity_property(data):
    n = data.draw(st.integers(1, 3), label="ndim")
    ks = [data.draw(st.integers(1, 4)) for _ in range(n)]
    ss = [data.draw(st.integers(1, 3)) for _ in range(n)]
    ds = [data.draw(st.integers(1, 3)) for _ in range(n)]
    ps = [data.draw(st.integers(0, d * (k - 1))) for k, d in zip(ks, ds)]
    lens = [
        data.draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 12)) for k, d, p in zip(ks, ds, ps)
    ]
    x = _rand(*lens)
    w = _rand(*ks)
    y = dilated_downsample(x, w, stride=ss, dilation=ds, padding=ps, mode="zeros", backend="numpy")
    # The output padding that restores x's length.
    base = [
        (m - 1) * s - 2 * p + d * (k - 1) + 1 for m, s, p, d, k in zip(y.shape, ss, ps, ds, ks)
    ]
    opad = [L - b for L, b in zip(lens, base)]
    v = _rand(*y.shape)
    u = transpose_upsample(
        v, w, stride=ss, dilation=ds, padding=ps, output_padding=opad, backend="numpy"
    )
    assert u.shape == x.shape
    lhs, rhs = np.vdot(y, v), np.vdot(x, u)
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


# --- property: random shapes against the direct definition ------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_down_property_against_direct(data):
    n = data.draw(st.integers(1, 3), label="ndim")
    lead = data.draw(st.integers(0, 1), label="leading axes")
    ks = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    ss = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    ds = tuple(data.draw(st.integers(1, 2)) for _ in range(n))
    mode = data.draw(st.sampled_from(MODES))
    lens = tuple(data.draw(st.integers(d * (k - 1) + 1, 9)) for k, d in zip(ks, ds))
    pads = tuple(
        (
            data.draw(st.integers(0, min(2, L - 1))),
            data.draw(st.integers(0, min(2, L - 1))),
        )
        for L in lens
    )
    x = _rand(*((2,) * lead + lens))
    w = _rand(*ks)
    got = dilated_downsample(
        x, w, stride=ss, dilation=ds, padding=pads, mode=mode, backend="numpy"
    )
    for idx in np.ndindex((2,) * lead):
        want = direct_down(x[idx], w, ss, ds, pads, mode)
        np.testing.assert_allclose(got[idx], want, rtol=1e-12, atol=1e-12)


# --- PyTorch oracle ------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


def _torch_pad_spec(pads):
    # F.pad takes (lo, hi) pairs from the last axis backwards.
    return tuple(v for lo_hi in reversed(pads) for v in lo_hi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("lead", [(), (3,), (2, 2)])
def test_down_matches_pytorch(dtype, mode, n, lead):
    torch = _torch()
    F = torch.nn.functional
    spatial = {1: (29,), 2: (19, 23), 3: (9, 11, 13)}[n]
    ks = {1: (3,), 2: (3, 2), 3: (3, 3, 2)}[n]
    ss = {1: (2,), 2: (2, 3), 3: (2, 1, 2)}[n]
    ds = {1: (3,), 2: (2, 1), 3: (1, 2, 2)}[n]
    pads = tuple((min(p, L - 1), min(p + 1, L - 1)) for p, L in zip(ds, spatial))
    x = _rand(*lead, *spatial, dtype=dtype)
    w = _rand(*ks, dtype=dtype)
    got = dilated_downsample(
        x, w, stride=ss, dilation=ds, padding=pads, mode=mode, backend="numpy"
    )
    tx = torch.from_numpy(np.ascontiguousarray(x.reshape((-1, 1) + spatial)))
    tmode = "constant" if mode == "zeros" else mode
    tx = F.pad(tx, _torch_pad_spec(pads), mode=tmode)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    want = conv(tx, torch.from_numpy(w)[None, None], stride=ss, dilation=ds).numpy()
    want = want.reshape(lead + want.shape[2:])
    assert got.dtype == dtype
    tol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("lead", [(), (2,)])
def test_up_matches_pytorch(dtype, n, lead):
    torch = _torch()
    F = torch.nn.functional
    spatial = {1: (13,), 2: (7, 9), 3: (4, 5, 6)}[n]
    ks = {1: (4,), 2: (3, 4), 3: (3, 2, 3)}[n]
    ss = {1: (3,), 2: (2, 3), 3: (2, 2, 1)}[n]
    ds = {1: (2,), 2: (2, 1), 3: (1, 2, 3)}[n]
    ps = {1: (2,), 2: (1, 0), 3: (1, 1, 2)}[n]
    ops = {1: (2,), 2: (1, 2), 3: (1, 1, 2)}[n]
    y = _rand(*lead, *spatial, dtype=dtype)
    w = _rand(*ks, dtype=dtype)
    got = transpose_upsample(
        y, w, stride=ss, dilation=ds, padding=ps, output_padding=ops, backend="numpy"
    )
    conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    ty = torch.from_numpy(np.ascontiguousarray(y.reshape((-1, 1) + spatial)))
    want = conv_t(
        ty,
        torch.from_numpy(w)[None, None],
        stride=ss,
        padding=ps,
        output_padding=ops,
        dilation=ds,
    ).numpy()
    want = want.reshape(lead + want.shape[2:])
    assert got.dtype == dtype
    tol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_same_padding_matches_pytorch_at_stride_one():
    torch = _torch()
    x = _rand(20, 21)
    w = _rand(4, 3)
    got = dilated_downsample(x, w, stride=1, dilation=(2, 3), padding="same", mode="zeros")
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x)[None, None],
        torch.from_numpy(w)[None, None],
        padding="same",
        dilation=(2, 3),
    )[0, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("length", [15, 16, 17])
@pytest.mark.parametrize("stride", [2, 3])
def test_same_padding_at_stride_gives_ceil_length(length, stride):
    out = dilated_downsample(np.ones(length), "box", size=3, stride=stride, dilation=2)
    assert out.shape == (-(-length // stride),)
    np.testing.assert_allclose(out, 1.0)  # reflect border: flat stays flat


def test_output_size_picks_output_padding_like_pytorch():
    torch = _torch()
    y = _rand(5, 6)
    w = _rand(3, 3)
    got = transpose_upsample(y, w, stride=2, padding=1, output_size=(10, 11))
    want = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(y)[None, None],
        torch.from_numpy(w)[None, None],
        stride=2,
        padding=1,
        output_padding=(1, 0),
    )[0, 0].numpy()
    assert got.shape == (10, 11)
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --- axes, dtypes, layouts -------------------------------------------------------------


def test_leading_axes_are_filtered_independently():
    x = _rand(3, 2, 16, 18)
    got = dilated_downsample(x, "gaussian", axes=(-2, -1))
    for t in range(3):
        for c in range(2):
            np.testing.assert_array_equal(got[t, c], dilated_downsample(x[t, c], "gaussian"))
    up = transpose_upsample(x, "bilinear", axes=(2, 3))
    assert up.shape == (3, 2, 32, 36)
    np.testing.assert_array_equal(up[1, 0], transpose_upsample(x[1, 0], "bilinear"))


def test_channel_last_rgb_axes():
    rgb = RNG.integers(0, 255, (20, 22, 3), dtype=np.uint8)
    out = dilated_downsample(rgb, "box", size=2, axes=(0, 1), preserve_dtype=True)
    assert out.shape == (10, 11, 3) and out.dtype == np.uint8
    for c in range(3):
        want = rgb[:, :, c].astype(np.float64).reshape(10, 2, 11, 2).mean(axis=(1, 3))
        np.testing.assert_array_equal(out[..., c], np.clip(np.rint(want), 0, 255))


def test_array_kernel_defaults_to_last_axes():
    x = _rand(4, 12, 12)
    w = np.ones((2, 2)) / 4
    out = dilated_downsample(x, w, stride=2, padding=0)
    assert out.shape == (4, 6, 6)


def test_preset_defaults_to_all_axes():
    assert dilated_downsample(_rand(8, 12, 16)).shape == (4, 6, 8)


@pytest.mark.parametrize(
    ("dtype", "out_dtype"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.uint16, np.float32),
        (np.int8, np.float32),
        (np.bool_, np.float32),
        (np.float16, np.float32),
    ],
)
def test_output_dtype(dtype, out_dtype):
    x = (RNG.random((10, 10)) * 100).astype(dtype)
    assert dilated_downsample(x).dtype == out_dtype
    assert transpose_upsample(x).dtype == out_dtype


def test_preserve_dtype_rounds_and_clips():
    x = np.array([[0, 255, 255, 0]] * 4, dtype=np.uint8)
    w = np.array([[2.0, 2.0]])  # doubles: 510 clips to 255
    out = dilated_downsample(x, w, stride=1, padding=0, preserve_dtype=True)
    assert out.dtype == np.uint8
    assert out.max() == 255 and out.min() == 255
    x16 = np.full((6, 6), 1001, dtype=np.int16)
    half = dilated_downsample(x16, np.full((1, 1), 0.5), stride=1, padding=0, preserve_dtype=True)
    assert half.dtype == np.int16 and np.all(half == 500)  # rint(500.5) -> 500 (banker's)
    up = transpose_upsample(x16, preserve_dtype=True)
    assert up.dtype == np.int16


def test_integer_input_matches_float_input():
    x = RNG.integers(0, 4000, (2, 21, 19)).astype(np.uint16)
    a = dilated_downsample(x, "gaussian", axes=(1, 2), dilation=2)
    b = dilated_downsample(x.astype(np.float32), "gaussian", axes=(1, 2), dilation=2)
    np.testing.assert_array_equal(a, b)


def test_non_contiguous_and_read_only_input_work_and_are_not_modified():
    base = _rand(30, 40)
    view = base[::2, ::-1].T  # non-contiguous, negative strides
    view.flags.writeable = False
    before = view.copy()
    got = dilated_downsample(view, "binomial", size=5, dilation=2, mode="reflect")
    want = dilated_downsample(np.ascontiguousarray(view), "binomial", size=5, dilation=2)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(view, before)
    up = transpose_upsample(view, "bilinear")
    np.testing.assert_array_equal(up, transpose_upsample(np.ascontiguousarray(view), "bilinear"))


def test_nan_and_inf_propagate():
    x = np.zeros((9, 9), dtype=np.float32)
    x[4, 4] = np.nan
    x[0, 8] = np.inf
    out = dilated_downsample(x, "box", size=3, stride=1, mode="zeros")
    assert np.isnan(out[3:6, 3:6]).all()
    assert np.isinf(out[0, 7]) and np.isfinite(out[8, 0])
    up = transpose_upsample(x, "bilinear")
    assert np.isnan(up).any() and np.isinf(up).any()


def test_list_input_and_1d():
    out = dilated_downsample([1.0, 2.0, 3.0, 4.0], "box", size=2, padding=0)
    np.testing.assert_allclose(out, [1.5, 3.5])


def test_flat_image_stays_flat_for_every_preset():
    flat = np.full((24, 26), 7.0)
    for kernel in ["box", "gaussian", "binomial", "bilinear", "lanczos"]:
        down = dilated_downsample(flat, kernel, size=5, mode="reflect")
        np.testing.assert_allclose(down, 7.0, rtol=1e-12)
        up = transpose_upsample(flat, kernel)
        # Transpose pads with zeros: the border darkens, the interior stays flat.
        np.testing.assert_allclose(up[8:-8, 8:-8], 7.0, rtol=1e-12)


def test_box_down_is_average_pooling_and_box_up_is_nearest():
    x = _rand(8, 6)
    pooled = dilated_downsample(x, "box", size=2, stride=2, padding=0)
    np.testing.assert_allclose(pooled, x.reshape(4, 2, 3, 2).mean(axis=(1, 3)))
    up = transpose_upsample(x, "box", stride=2)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(x, 2, 0), 2, 1))


def test_bilinear_up_gives_exact_multiple_length():
    for f in (2, 3, 4):
        assert transpose_upsample(np.ones((5, 7)), "bilinear", stride=f).shape == (
            5 * f,
            7 * f,
        )


def test_signature_defaults_match_geometry_defaults():
    for op, func in (("down", dilated_downsample), ("up", transpose_upsample)):
        params = inspect.signature(func).parameters
        for key, value in DEFAULTS[op].items():
            assert params[key].default == value, (op, key)


def test_output_shape_equals_geometry_shape():
    x = _rand(3, 17, 18)
    out = dilated_downsample(x, "lanczos", size=4, stride=(1, 3, 2), dilation=(1, 2, 1))
    g = output_geometry(
        "down", x.shape, kernel="lanczos", size=4, stride=(1, 3, 2), dilation=(1, 2, 1)
    )
    assert out.shape == g.shape
    up = transpose_upsample(x, "gaussian", stride=(2, 3), axes=(1, 2))
    assert (
        up.shape
        == output_geometry("up", x.shape, kernel="gaussian", stride=(2, 3), axes=(1, 2)).shape
    )


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64, np.uint64])
def test_preserve_dtype_saturates_wide_integers(dtype):
    """Clipping to a 32/64-bit integer range in float32 must not wrap: float32(2**31 - 1)
    is 2**31, one past int32's range."""
    info = np.iinfo(dtype)
    for value in (info.max, info.min):
        x = np.full((4, 4), value, dtype)
        got = dilated_downsample(x, "box", size=2, stride=2, preserve_dtype=True)
        assert got.dtype == dtype
        # The nearest float32 inside the range: no wrap to the other end.
        assert np.all(np.abs(got.astype(np.float64) - float(value)) <= abs(float(value)) * 2**-23)


def test_big_endian_float64_computes_in_float64():
    x = np.random.default_rng(0).random((12, 10)) * 1e8
    big = x.astype(">f8")
    got = dilated_downsample(big, "box", size=2, stride=2, mode="zeros")
    assert got.dtype == np.float64
    want = dilated_downsample(x, "box", size=2, stride=2, mode="zeros")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel", ["box", "bilinear", "gaussian"])
def test_up_stride_one_even_kernel_keeps_the_length(kernel):
    """Stride 1 with an even kernel: the default crop is one less at the end
    (output padding 1 is not allowed there), so the length stays."""
    x = np.random.default_rng(1).random((9, 12))
    got = transpose_upsample(x, kernel, stride=1, size=4)
    assert got.shape == x.shape
    want = transpose_upsample(x, kernel, stride=1, size=4, padding=((2, 1), (2, 1)))
    np.testing.assert_array_equal(got, want)


def test_zero_output_padding_on_an_axis_keeps_its_natural_one():
    """With the natural padding, output_padding 0 means that axis's natural
    output padding, given alone or beside another axis's value."""
    x = np.ones((5, 5))
    natural = transpose_upsample(x, "box", size=3, stride=2)
    assert natural.shape == (10, 10)
    assert transpose_upsample(x, "box", size=3, stride=2, output_padding=0).shape == (10, 10)
    assert transpose_upsample(x, "box", size=3, stride=2, output_padding=(0, 1)).shape == (10, 10)
    # explicit padding: output_padding is PyTorch's
    assert transpose_upsample(x, "box", size=3, stride=2, padding=1, output_padding=0).shape == (
        9,
        9,
    )
    assert transpose_upsample(
        x, "box", size=3, stride=2, padding=1, output_padding=(0, 1)
    ).shape == (9, 10)


@pytest.mark.parametrize("op", ["down", "up"])
def test_per_axis_values_follow_the_axes_in_the_order_given(op):
    """axes=(1, 0) with stride (1, 2) strides axis 0 by 2 (the values follow
    the axes as given, as in SciPy); an array kernel's axes follow too."""
    rng = np.random.default_rng(1)
    x = rng.random((10, 12))
    w = rng.random((2, 3))
    func = dilated_downsample if op == "down" else transpose_upsample
    params = dict(stride=(1, 2), dilation=(2, 1), padding=((0, 1), (1, 0)))
    if op == "up":
        params["output_padding"] = (0, 1)
    got = func(x, w, axes=(1, 0), **params)
    want = func(
        x,
        w.T,
        axes=(0, 1),
        stride=(2, 1),
        dilation=(1, 2),
        padding=((1, 0), (0, 1)),
        **({"output_padding": (1, 0)} if op == "up" else {}),
    )
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(func(x, w, axes=(-1, -2), **params), want)
    geo = output_geometry(op, x.shape, kernel=w, axes=(1, 0), **params)
    assert geo.shape == want.shape
    # a preset with per-axis size
    np.testing.assert_array_equal(
        func(x, "box", size=(1, 3), stride=(1, 2), axes=(1, 0)),
        func(x, "box", size=(3, 1), stride=(2, 1), axes=(0, 1)),
    )


def test_kernel_that_is_not_an_array_names_kernel():
    for bad in ([[1, 2], [3]], None, [1j, 2]):
        with pytest.raises(TypeError, match="kernel must be a preset name or a real numeric"):
            dilated_downsample(np.ones((5, 5)), bad)
