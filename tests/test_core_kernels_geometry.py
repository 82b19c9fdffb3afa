"""Kernel presets (normalisation, formulas) and output geometry (placement)."""

import numpy as np
import pytest

from napari_conv_resample import (
    dilated_downsample,
    make_kernel,
    output_geometry,
    transpose_upsample,
)
from napari_conv_resample.geometry import place_output, resolve_spec

PRESETS = ["box", "gaussian", "binomial", "bilinear", "lanczos"]


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("size", [None, 3, 4, 7])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_down_kernels_sum_to_one(name, size, stride):
    w = make_kernel(name, size, ndim=2, stride=stride)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-15)  # symmetric: no shift


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("stride", [2, 3, 4])
@pytest.mark.parametrize("dilation", [1, 3])
def test_up_kernels_sum_to_one_per_phase(name, stride, dilation):
    w = make_kernel(name, None, stride=stride, dilation=dilation, direction="up")
    phases = (dilation * np.arange(w.size)) % stride
    for r in np.unique(phases):
        assert w[phases == r].sum() == pytest.approx(1.0, abs=1e-12)


def test_preset_formulas():
    np.testing.assert_allclose(make_kernel("binomial", 5), np.array([1, 4, 6, 4, 1]) / 16)
    np.testing.assert_allclose(
        make_kernel("binomial", 5, direction="up"), np.array([1, 4, 6, 4, 1]) / 8
    )
    # FCN bilinear: K = 2f - f%2, w = 1 - |i - c| / F
    np.testing.assert_allclose(
        make_kernel("bilinear", stride=2, direction="up"), [0.25, 0.75, 0.75, 0.25]
    )
    np.testing.assert_allclose(
        make_kernel("bilinear", stride=3, direction="up"),
        [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3],
    )
    g = make_kernel("gaussian", 5, stride=2)
    x = np.arange(5) - 2.0
    want = np.exp(-(x**2) / (2 * (2 * 2 / 6) ** 2))
    np.testing.assert_allclose(g, want / want.sum())
    lz = make_kernel("lanczos", 5, stride=2)
    u = (np.arange(5) - 2.0) / 2
    want = np.sinc(u) * np.sinc(u / 3)
    np.testing.assert_allclose(lz, want / want.sum())
    assert make_kernel("box", size=(2, 3)).shape == (2, 3)
    np.testing.assert_allclose(make_kernel("box", size=(2, 3)), 1 / 6)


def test_pyrup_equivalent():
    # pyrUp: up with k=5, s=2, p=2, output_padding=1 and [1,4,6,4,1]/8 per axis.
    y = np.random.default_rng(0).random((6, 7))
    w1 = np.array([1, 4, 6, 4, 1]) / 8
    got = transpose_upsample(y, np.outer(w1, w1), stride=2, padding=2, output_padding=1)
    assert got.shape == (12, 14)
    np.testing.assert_allclose(transpose_upsample(y, "binomial", padding=2, output_padding=1), got)


@pytest.mark.parametrize(
    ("kwargs", "shape", "scale", "translate"),
    [
        ({"kernel": "box", "size": 2, "padding": 0}, (32, 32), (2.0, 2.0), (0.5, 0.5)),
        # TF SAME, odd kernel, even stride: pad (0, 1), so output 0 sits on input 1.
        (
            {"kernel": "gaussian", "size": 3, "padding": "same"},
            (32, 32),
            (2.0, 2.0),
            (1.0, 1.0),
        ),
        (
            {"kernel": "box", "size": 3, "dilation": 2, "padding": 0},
            (30, 30),
            (2.0, 2.0),
            (2.0, 2.0),
        ),
    ],
)
def test_down_geometry(kwargs, shape, scale, translate):
    g = output_geometry("down", (64, 64), **kwargs)
    assert g.shape == shape and g.scale == scale and g.translate == translate


def test_geometry_in_physical_units_and_non_spatial_axes():
    # (t, z, y, x) with µm voxels; t keeps its scale and translate.
    g = output_geometry(
        "down",
        (5, 20, 64, 64),
        kernel="box",
        size=2,
        stride=(1, 2, 2),
        padding=0,
        axes=(1, 2, 3),
        scale=(60.0, 2.0, 0.5, 0.5),
        translate=(0.0, 10.0, 3.0, 4.0),
    )
    assert g.shape == (5, 19, 32, 32)
    assert g.scale == (60.0, 2.0, 1.0, 1.0)
    assert g.translate == (0.0, 11.0, 3.25, 4.25)


def test_down_then_up_returns_to_the_original_grid():
    for k, s, d, p in [(3, 2, 1, 1), (4, 2, 1, 1), (3, 3, 2, 2), (5, 2, 2, 0)]:
        down = output_geometry(
            "down",
            (60, 60),
            kernel=np.ones((k, k)),
            stride=s,
            dilation=d,
            padding=p,
            scale=(0.7, 0.3),
            translate=(5.0, -2.0),
        )
        up = output_geometry(
            "up",
            down.shape,
            kernel=np.ones((k, k)),
            stride=s,
            dilation=d,
            padding=p,
            scale=down.scale,
            translate=down.translate,
        )
        np.testing.assert_allclose(up.scale, (0.7, 0.3))
        np.testing.assert_allclose(up.translate, (5.0, -2.0), atol=1e-12)


@pytest.mark.parametrize("op", ["down", "up"])
@pytest.mark.parametrize("kernel", ["box", "gaussian", "bilinear", "binomial"])
@pytest.mark.parametrize("size", [None, 3, 4])
def test_bright_pixel_stays_at_its_world_position(op, kernel, size):
    """A point at a known world position is resampled to the same world position.

    The response's centroid in world coordinates is the point's position; for
    a downsample, sampling a point aliases by up to half a tap depending on its
    phase, so the centroid is averaged over the ``stride`` phases of the point.
    """
    scale, translate = np.array([0.5, 0.25]), np.array([10.0, -3.0])
    stride = 2
    func = dilated_downsample if op == "down" else transpose_upsample
    params = {"size": size, "stride": stride}
    if op == "down":
        params["mode"] = "zeros"
    errors = []
    for shift in range(stride if op == "down" else 1):
        img = np.zeros((40, 48))
        src = np.array([20, 24]) + shift
        img[tuple(src)] = 1.0
        out = func(img, kernel, **params)
        g = output_geometry(
            op, img.shape, kernel=kernel, scale=scale, translate=translate, **params
        )
        assert out.shape == g.shape
        idx = np.indices(out.shape).reshape(2, -1)
        centroid = (idx * out.ravel()).sum(axis=1) / out.sum()
        world_out = centroid * np.array(g.scale) + np.array(g.translate)
        errors.append(world_out - (src * scale + translate))
    np.testing.assert_allclose(np.mean(errors, axis=0), 0.0, atol=1e-9)


def test_resolve_spec_rejects_unknown_keywords():
    with pytest.raises(TypeError, match="output_padding"):
        resolve_spec("down", (8, 8), output_padding=1)
    with pytest.raises(ValueError, match="op"):
        resolve_spec("sideways", (8, 8))


def test_place_output_checks_lengths():
    spec = resolve_spec("down", (8, 8))
    with pytest.raises(ValueError, match="scale"):
        place_output(spec, scale=(1.0,))


@pytest.mark.parametrize(
    ("k", "s", "d", "p", "op"), [(3, 2, 1, 1, 1), (4, 2, 1, 1, 0), (3, 3, 2, 0, 2)]
)
def test_zero_inserted_view_puts_each_input_pixel_at_its_world_position(k, s, d, p, op):
    from napari_conv_resample import zero_inserted
    from napari_conv_resample.geometry import zero_inserted_placement

    y = np.arange(1.0, 8.0)  # distinct non-zero values
    scale_in, translate_in = (0.7,), (3.0,)
    g = output_geometry(
        "up",
        y.shape,
        kernel=np.ones(k),
        stride=s,
        dilation=d,
        padding=p,
        output_padding=op,
        scale=scale_in,
        translate=translate_in,
    )
    zs, zt = zero_inserted_placement(g.spec, g.scale, g.translate)
    view = zero_inserted(y, size=k, stride=s, dilation=d, padding=p, output_padding=op)
    for i, value in enumerate(y):
        (v,) = np.flatnonzero(view == value)
        assert zt[0] + zs[0] * v == pytest.approx(translate_in[0] + scale_in[0] * i)


def test_place_output_turns_the_grid_shift_with_rotation_and_shear():
    """World = translate + linear @ (scale * index): an output pixel lands on its
    place in the input grid whatever the input's rotation and shear."""
    spec = resolve_spec("down", (40, 48), kernel="box", size=3, stride=2, dilation=4, padding=0)
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    linear = rot @ np.array([[1.0, 0.5], [0.0, 1.0]])  # rotate @ shear
    scale, translate = (0.4, 0.3), (5.0, -2.0)
    s_out, t_out = place_output(spec, scale, translate, linear=linear)
    assert s_out == place_output(spec, scale, translate)[0] == (0.8, 0.6)
    for o in [(0, 0), (3, 5), (15, 19)]:
        index = np.asarray(spec.center_offset) + 2 * np.asarray(o)  # its place in the input
        want = np.asarray(translate) + linear @ (np.asarray(scale) * index)
        got = np.asarray(t_out) + linear @ (np.asarray(s_out) * np.asarray(o))
        np.testing.assert_allclose(got, want, atol=1e-12)
    with pytest.raises(ValueError, match=r"linear must be a \(2, 2\) matrix"):
        place_output(spec, scale, translate, linear=np.eye(3))


def test_one_lo_hi_pair_pads_every_axis():
    """``padding=((lo, hi),)`` (the command line's ``--padding lo:hi``) is used for
    every axis, as a single int is."""
    x = np.random.default_rng(4).random((12, 15, 14))
    one = resolve_spec("down", x.shape, kernel="box", size=2, stride=2, padding=((1, 0),))
    every = resolve_spec("down", x.shape, kernel="box", size=2, stride=2, padding=((1, 0),) * 3)
    assert one.pad_lo == every.pad_lo == (1, 1, 1)
    assert one.output_shape == every.output_shape
    with pytest.raises(ValueError, match="has 2 entries but there are 3 spatial axes"):
        resolve_spec("down", x.shape, kernel="box", size=2, padding=((1, 0), (0, 1)))


def test_linear_is_checked_with_its_name():
    kw = dict(kernel="box", size=2, padding=0, stride=2)
    for bad in ([[np.nan, 0], [0, 1]], [[np.inf, 0], [0, 1]]):
        with pytest.raises(ValueError, match="linear must be finite"):
            output_geometry("down", (8, 8), linear=bad, **kw)
    with pytest.raises(TypeError, match="linear must be"):
        output_geometry("down", (8, 8), linear="eye", **kw)
    turned = output_geometry("down", (8, 8), linear=[[0, -1], [1, 0]], **kw)
    assert turned.translate == pytest.approx((-0.5, 0.5))
