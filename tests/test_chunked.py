"""Out-of-core chunks equal the in-memory result exactly (tiny chunks, all modes, chains)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_conv_resample import Pipeline, Stage
from napari_conv_resample.batch.chunked import (
    chunk_grid,
    compute_region,
    plan,
    resample_chunked,
)
from napari_conv_resample.geometry import MODES
from napari_conv_resample.operators import cast_result


def chunked(pipe, x, axes, chunks, preserve_dtype=False):
    specs = pipe.specs(x.shape, axes)
    out = np.full(specs[-1].output_shape, -12345, dtype=np.float64)
    reads = []

    def read(index):
        reads.append(index)
        return x[index]

    resample_chunked(
        specs, read, out, in_dtype=x.dtype, chunks=chunks, preserve_dtype=preserve_dtype
    )
    return out, reads


def reference(pipe, x, axes, preserve_dtype=False):
    return cast_result(pipe(x, axes=axes), x.dtype, preserve_dtype)


CHAINS = {
    "down": lambda m: [Stage("down", kernel="gaussian", size=3, stride=2, dilation=2, mode=m)],
    "down-up-down": lambda m: [
        Stage("down", kernel="box", size=3, stride=1, dilation=3, mode=m),
        Stage("up", stride=2),
        Stage("down", kernel="lanczos", size=4, stride=3, padding=1, mode=m),
    ],
    "up-down": lambda m: [
        Stage("up", kernel="bilinear", stride=3, dilation=2, size=5),
        Stage("down", kernel="binomial", size=5, stride=2, mode=m),
    ],
    "up-k1-opad": lambda m: [
        Stage("up", kernel="box", stride=2, size=1, padding=0, output_padding=1)
    ],
    "up-dilated-asym": lambda m: [
        Stage("up", stride=2, size=3, dilation=3, padding=((1, 2), (0, 1)), output_padding=2)
    ],
    "down-valid-big-stride": lambda m: [
        Stage("down", kernel="box", size=2, stride=5, padding="valid", mode=m),
        Stage("down", kernel="gaussian", size=3, stride=1, padding=2, mode=m),
    ],
    # An up stage whose dilation exceeds its stride leaves some output chunks
    # without any input pixel (zeros): the next stage still gets its block.
    "up-holes-then-down": lambda m: [
        Stage("down", kernel="box", size=1, stride=1, padding=0, mode=m),
        Stage("up", kernel="box", size=3, stride=1, dilation=3, padding=0, output_padding=2),
        Stage("down", kernel="gaussian", size=3, stride=1, mode=m),
    ],
}
UP_ONLY = ("up-k1-opad", "up-dilated-asym", "up-holes-then-down")
CASES = [
    (chain, mode)
    for chain in sorted(CHAINS)
    for mode in (("zeros",) if chain in UP_ONLY else MODES)
]


@pytest.mark.parametrize("chain, mode", CASES)
@pytest.mark.parametrize("chunks", [(1, 1, 1), (2, 3, 5), (1, 7, 4), (3, 64, 64)])
def test_chunked_equals_in_memory(mode, chain, chunks):
    rng = np.random.default_rng(0)
    # 1-pixel chunks on a smaller image keep the test fast; the others see borders too.
    shape = (1, 13, 11) if chunks == (1, 1, 1) else (3, 37, 29)
    x = rng.random(shape).astype(np.float32)
    pipe = Pipeline(CHAINS[chain](mode))
    try:
        want = reference(pipe, x, (1, 2))
    except ValueError as exc:  # e.g. reflect padding wider than a tiny stage's axis
        pytest.skip(str(exc))
    got, _ = chunked(pipe, x, (1, 2), chunks)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", MODES)
def test_chunked_3d_integer_preserve_dtype(mode):
    rng = np.random.default_rng(3)
    x = (rng.random((9, 14, 11)) * 60000).astype(np.uint16)
    pipe = Pipeline(
        [
            Stage("down", kernel="gaussian", size=(3, 5, 5), stride=(1, 2, 2), mode=mode),
            Stage("up", kernel="bilinear", stride=(1, 2, 2)),
        ]
    )
    want = reference(pipe, x, None, preserve_dtype=True)
    got, _ = chunked(pipe, x, None, (2, 3, 4), preserve_dtype=True)
    assert want.dtype == np.uint16
    np.testing.assert_array_equal(got, want)


def test_chunk_reads_only_its_halo():
    x = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    pipe = Pipeline([Stage("down", kernel="gaussian", size=3, stride=2, mode="zeros")])
    _, reads = chunked(pipe, x, None, (8, 8))
    assert len(reads) == 16
    for index in reads:
        for s in index:
            assert s.stop - s.start <= 2 * 8 + 1  # stride*chunk + (k - s)


def test_circular_border_reads_the_far_side_only():
    pipe = Pipeline([Stage("down", kernel="box", size=5, stride=1, mode="circular")])
    specs = pipe.specs((1000,))
    runs = plan(specs, [(0, 10)])[0][0]
    assert runs == [(0, 12), (998, 1000)]
    x = np.arange(1000, dtype=np.float32)
    got = compute_region(specs, lambda ix: x[ix], [(0, 10)], in_dtype=x.dtype)
    np.testing.assert_array_equal(got, pipe(x)[:10])


def test_chunk_grid_covers_output_once():
    regions = chunk_grid((5, 7), (2, 3))
    cover = np.zeros((5, 7), int)
    for (a, b), (c, d) in regions:
        cover[a:b, c:d] += 1
    assert (cover == 1).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(5, 30),
    op=st.sampled_from(["down", "up"]),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    mode=st.sampled_from(MODES),
    chunk=st.integers(1, 9),
)
def test_chunked_property_1d(data, n, op, k, s, d, mode, chunk):
    rng = np.random.default_rng(n * 31 + k)
    x = rng.standard_normal((2, n)).astype(np.float32)
    if op == "down":
        if d * (k - 1) + 1 > n:
            return
        pad = data.draw(st.sampled_from(["same", "valid", 0, 1, (0, 2)]))
        stage = Stage(
            "down", kernel="gaussian", size=k, stride=s, dilation=d, padding=pad, mode=mode
        )
    else:
        stage = Stage("up", kernel="box", size=k, stride=s, dilation=d)
    pipe = Pipeline([stage])
    try:
        want = reference(pipe, x, (1,))
    except ValueError:
        return
    got, _ = chunked(pipe, x, (1,), (1, chunk))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "op, params",
    [
        ("down", {"kernel": "gaussian", "stride": 2, "dilation": 2, "mode": "reflect"}),
        ("down", {"kernel": "box", "size": 3, "stride": 3, "mode": "circular"}),
        ("up", {"stride": 2}),
        ("up", {"kernel": "bilinear", "stride": 3, "padding": 1}),
    ],
)
@pytest.mark.parametrize("preserve_dtype", [False, True])
def test_slabs_for_a_small_device_equal_the_one_piece_call(op, params, preserve_dtype):
    # The GPU path for NumPy images too large for the device: slabs sized to
    # a budget, each with its halo, assembled on the host.
    from napari_conv_resample.geometry import resolve_spec
    from napari_conv_resample.operators import run_in_slabs, run_spec, slab_chunks

    rng = np.random.default_rng(5)
    x = rng.integers(0, 4000, size=(3, 45, 61)).astype(np.uint16)
    x.flags.writeable = False
    spec = resolve_spec(op, x.shape, axes=(1, 2), **params)
    want = cast_result(run_spec(spec, x, np.float32), x.dtype, preserve_dtype)
    budget = x.nbytes // 3
    chunks = slab_chunks(spec, x.nbytes, np.float32, budget)
    cut = [c < n for c, n in zip(chunks, spec.output_shape)]
    assert sum(cut) == 1, chunks  # one axis cut, into several slabs
    got = run_in_slabs(spec, x, budget, "numpy", preserve_dtype=preserve_dtype)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_rounded_stages_chunked_equal_the_pipeline():
    rng = np.random.default_rng(6)
    x = (rng.random((23, 31)) * 255).astype(np.uint8)
    p = Pipeline(
        [Stage("down", stride=2, mode="circular"), Stage("up", stride=2), Stage("down")],
        rounded=(0, 1),
    )
    specs = p.specs(x.shape)
    for chunks in ((3, 4), (5, 50)):
        out = np.empty(specs[-1].output_shape, np.uint8)
        resample_chunked(
            specs, x.__getitem__, out, in_dtype=x.dtype, chunks=chunks,
            preserve_dtype=True, rounded=p.rounded,
        )  # fmt: skip
        np.testing.assert_array_equal(out, p(x, preserve_dtype=True))
