"""Sampled-pixel, coverage and overlap masks follow from the operators."""

import numpy as np
import pytest
from _direct import direct_down
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_conv_resample import (
    coverage_map,
    dilated_downsample,
    overlap_map,
    sampled_mask,
    transpose_upsample,
    zero_inserted,
)
from napari_conv_resample.padding import fold_padding, pad_axes


def test_k3_s2_d2_reads_only_even_pixels():
    cov = coverage_map((20,), size=3, stride=2, dilation=2, padding=0)
    assert np.all(cov[1::2] == 0)
    assert np.all(cov[0::2] > 0)
    assert cov.dtype == np.int64
    cov2 = coverage_map((12, 14), size=3, stride=2, dilation=2, padding=0)
    assert np.all(cov2[1::2, :] == 0) and np.all(cov2[:, 1::2] == 0)


def test_checkerboard_overlap():
    ov = overlap_map((10,), size=3, stride=2)
    np.testing.assert_array_equal(ov[2:-2], np.tile([2, 1], 9)[: ov.size - 4])
    ov2 = overlap_map((10,), size=3, stride=2, dilation=2)
    np.testing.assert_array_equal(ov2[4:-4], np.tile([3, 0], 9)[: ov2.size - 8])
    ov_2d = overlap_map((6, 6), size=3, stride=2)
    assert set(np.unique(ov_2d[2:-2, 2:-2])) == {1, 2, 4}
    # Padding shifts the phase: (o + p) mod s
    ovp = overlap_map((10,), size=3, stride=2, padding=1)
    o = np.arange(1, ovp.size - 1)
    np.testing.assert_array_equal(ovp[1:-1], np.where((o + 1) % 2 == 0, 2, 1))


def test_overlap_equals_upsample_of_ones_with_ones_kernel():
    ov = overlap_map(
        (5, 6),
        size=(3, 4),
        stride=(2, 3),
        dilation=(1, 2),
        padding=1,
        output_padding=(1, 0),
    )
    up = transpose_upsample(
        np.ones((5, 6)),
        np.ones((3, 4)),
        stride=(2, 3),
        dilation=(1, 2),
        padding=1,
        output_padding=(1, 0),
    )
    np.testing.assert_array_equal(ov, up.astype(int))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_sampled_mask_equals_support_of_the_gradient(data):
    """Pixel i is sampled by output o iff perturbing x[i] changes y[o] (zeros mode)."""
    n = data.draw(st.integers(1, 2))
    k = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    s = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    d = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    p = tuple(data.draw(st.integers(0, 2)) for _ in range(n))
    shape = tuple(
        data.draw(st.integers(max(1, di * (ki - 1) + 1 - 2 * pi), 9))
        for ki, di, pi in zip(k, d, p)
    )
    ones = np.ones(k)
    out = dilated_downsample(np.zeros(shape), ones, stride=s, dilation=d, padding=p, mode="zeros")
    o = tuple(data.draw(st.integers(0, m - 1)) for m in out.shape)
    mask = sampled_mask(shape, o, size=k, stride=s, dilation=d, padding=p)
    want = np.zeros(shape, bool)
    for i in np.ndindex(shape):
        x = np.zeros(shape)
        x[i] = 1.0
        want[i] = direct_down(x, ones, s, d, [(pi, pi) for pi in p])[o] != 0
    np.testing.assert_array_equal(mask, want)


def test_sampled_mask_examples():
    m = sampled_mask((10,), (2,), size=3, stride=2, dilation=2)
    np.testing.assert_array_equal(np.flatnonzero(m), [4, 6, 8])
    m = sampled_mask((10,), (0,), size=3, stride=2, dilation=2, padding=2)
    np.testing.assert_array_equal(np.flatnonzero(m), [0, 2])  # the tap at -2 is padding
    m = sampled_mask((10,), (0,), size=3, stride=2, dilation=2, padding=2, mode="reflect")
    np.testing.assert_array_equal(np.flatnonzero(m), [0, 2])  # reflect reads pixel 2 again
    m = sampled_mask((10,), (0,), size=3, stride=2, dilation=2, padding=2, mode="circular")
    np.testing.assert_array_equal(np.flatnonzero(m), [0, 2, 8])
    with pytest.raises(ValueError, match="out_index"):
        sampled_mask((10,), (9,), size=3, stride=2)


def test_coverage_counts_reads_including_folded_borders():
    cov = coverage_map((8,), size=3, stride=1, padding=1, mode="replicate")
    # Every output reads 3 taps: the total of reads is 3 * 8, all on real pixels.
    assert cov.sum() == 24
    assert cov[0] == 3 and cov[-1] == 3  # replicate re-reads the edge pixels
    cov0 = coverage_map((8,), size=3, stride=1, padding=1, mode="zeros")
    assert cov0.sum() == 22 and cov0[0] == 2


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_fold_padding_is_the_adjoint_of_padding(mode):
    rng = np.random.default_rng(3)
    x = rng.random((5, 7))
    pads = ((2, 3), (4, 1))
    xp = pad_axes(x, (0, 1), pads, mode)
    y = rng.random(xp.shape)
    assert np.vdot(xp, y) == pytest.approx(np.vdot(x, fold_padding(y, (0, 1), pads, mode)))


def test_zero_inserted_view_gives_the_upsample():
    """Correlating the zero-inserted view with the flipped kernel at stride 1 is the upsample."""
    rng = np.random.default_rng(5)
    y = rng.random((4, 5))
    w = rng.random((3, 3))
    for s, d, p, op in [(2, 1, 1, 1), (3, 2, 1, 0), (2, 1, 0, 0)]:
        view = zero_inserted(y, size=3, stride=s, dilation=d, padding=p, output_padding=op)
        got = dilated_downsample(
            view, w[::-1, ::-1], stride=1, dilation=d, padding=0, mode="zeros"
        )
        want = transpose_upsample(y, w, stride=s, dilation=d, padding=p, output_padding=op)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    z = zero_inserted(np.array([1.0, 2.0, 3.0]), size=3, stride=2, padding=1)
    np.testing.assert_array_equal(z, [0, 1, 0, 2, 0, 3, 0])


def test_fold_padding_equals_a_scatter_add_bit_for_bit():
    """The border-by-border fold adds in the order ``np.add.at`` would."""
    from napari_conv_resample.padding import source_index

    def scatter_add(xpad, axes, pads, mode):
        out = xpad
        for a, (lo, hi) in zip(axes, pads):
            length = out.shape[a] - lo - hi
            idx = source_index(length, lo, hi, mode)
            keep = idx >= 0
            shape = list(out.shape)
            shape[a] = length
            folded = np.zeros(shape, dtype=out.dtype)
            np.add.at(np.moveaxis(folded, a, 0), idx[keep], np.moveaxis(out, a, 0)[keep])
            out = folded
        return out

    rng = np.random.default_rng(0)
    for trial in range(120):
        nd = int(rng.integers(1, 4))
        shape = tuple(int(v) for v in rng.integers(1, 7, nd))
        pads = [tuple(int(v) for v in rng.integers(0, 9, 2)) for _ in range(nd)]
        mode = ["zeros", "reflect", "replicate", "circular"][trial % 4]
        xpad = rng.normal(size=tuple(n + lo + hi for n, (lo, hi) in zip(shape, pads)))
        for x in (xpad, xpad.astype(np.float32), (xpad * 10).astype(np.int64)):
            want = scatter_add(x, range(nd), pads, mode)
            got = fold_padding(x, range(nd), pads, mode)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_bounding_box_of_nonzero_elements():
    from napari_conv_resample.masks import bounding_box

    rng = np.random.default_rng(1)
    for shape in [(7,), (9, 11), (4, 6, 5)]:
        for _ in range(20):
            mask = rng.random(shape) < 0.05
            nz = np.nonzero(mask)
            want = (
                None
                if not nz[0].size
                else tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in nz)
            )
            assert bounding_box(mask) == want
    assert bounding_box(np.zeros((3, 3))) is None


def test_bounding_box_of_a_0d_mask():
    from napari_conv_resample.masks import bounding_box

    assert bounding_box(np.array(0)) is None
    assert bounding_box(np.array(3)) == ()
