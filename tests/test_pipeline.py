"""Pipelines: application, receptive fields (holes), closed form, recipes."""

import json
from fractions import Fraction

import numpy as np
import pytest

from napari_conv_resample import (
    Pipeline,
    Stage,
    dilated_downsample,
    sampled_mask,
    transpose_upsample,
)


def _dilated_chain(dilations):
    return Pipeline(
        [
            Stage(
                "down",
                kernel="box",
                size=3,
                stride=1,
                dilation=d,
                padding="same",
                mode="zeros",
            )
            for d in dilations
        ]
    )


def test_pipeline_applies_stages_in_order():
    x = np.random.default_rng(0).random((2, 20, 22))
    p = Pipeline(
        [
            Stage("down", kernel="gaussian", size=3, stride=2, dilation=2),
            Stage("up", kernel="bilinear"),
        ]
    )
    got = p(x, axes=(1, 2))
    want = transpose_upsample(
        dilated_downsample(x, "gaussian", size=3, stride=2, dilation=2, axes=(1, 2)),
        "bilinear",
        axes=(1, 2),
    )
    np.testing.assert_array_equal(got, want)
    assert p.output_shape(x.shape, axes=(1, 2)) == got.shape


def test_gridding_holes_with_common_factor_dilations():
    rf = _dilated_chain((2, 2, 2)).receptive_field((41, 41), (20, 20))
    nz = np.nonzero(rf)
    box = rf[nz[0].min() : nz[0].max() + 1, nz[1].min() : nz[1].max() + 1]
    assert box.shape == (13, 13)
    assert np.count_nonzero(box == 0) > 0
    assert np.all(box[1::2, :] == 0)  # odd offsets are never reached

    rf2 = _dilated_chain((1, 2, 5)).receptive_field((41, 41), (20, 20))
    nz = np.nonzero(rf2)
    box2 = rf2[nz[0].min() : nz[0].max() + 1, nz[1].min() : nz[1].max() + 1]
    assert box2.shape == (17, 17) and np.count_nonzero(box2 == 0) == 0


def test_receptive_field_counts_paths():
    # Two stride-1 box stages of 3 taps: paths 1,2,3,2,1 in 1-D.
    p = Pipeline([Stage("down", kernel="box", size=3, stride=1, padding=1, mode="zeros")] * 2)
    rf = p.receptive_field((15,), (7,))
    np.testing.assert_array_equal(rf[5:10], [1, 2, 3, 2, 1])
    assert rf.sum() == 9


def test_single_stage_receptive_field_equals_sampled_mask():
    p = Pipeline(
        [
            Stage(
                "down",
                kernel=np.ones((3, 3)),
                stride=2,
                dilation=2,
                padding=1,
                mode="zeros",
            )
        ]
    )
    rf = p.receptive_field((20, 20), (4, 5))
    m = sampled_mask((20, 20), (4, 5), size=3, stride=2, dilation=2, padding=1)
    np.testing.assert_array_equal(rf > 0, m)


def test_receptive_field_is_the_gradient_support_through_down_and_up():
    """Perturbing an input pixel changes the output pixel iff the field says so."""
    p = Pipeline(
        [
            Stage(
                "down",
                kernel=np.ones((3,)),
                stride=2,
                dilation=2,
                padding=1,
                mode="reflect",
            ),
            Stage("up", kernel=np.ones((4,)), stride=2, padding=1),
        ]
    )
    shape, o = (24,), (11,)
    rf = p.receptive_field(shape, o)
    for i in range(shape[0]):
        x = np.zeros(shape)
        x[i] = 1.0
        assert (p(x)[o] != 0) == (rf[i] > 0), i
        assert p(x)[o] == pytest.approx(rf[i])  # ones kernels: value == path count


def test_summary_closed_form_matches_araujo():
    p = Pipeline(
        [
            Stage("down", kernel="box", size=3, stride=2, padding=1, mode="zeros"),
            Stage("down", kernel="box", size=3, stride=2, padding=1, mode="zeros"),
            Stage(
                "down",
                kernel="box",
                size=3,
                stride=1,
                dilation=2,
                padding=2,
                mode="zeros",
            ),
        ]
    )
    rows = p.summary((64, 64))
    # r: 3, 3 + 2*2 = 7, 7 + (5-1)*4 = 23; stride 2, 4, 4; start -1, -3, -11.
    assert [r["rf_size"][0] for r in rows] == [3, 7, 23]
    assert [r["effective_stride"][0] for r in rows] == [2, 4, 4]
    assert [r["start_offset"][0] for r in rows] == [-1, -3, -11]
    assert rows[-1]["holes"] > 0  # dilation 2 after stride 4 leaves gaps
    assert rows[0]["holes"] == 0
    # Backward recursion of DESIGN §2: r_{l-1} = s_l r_l + (k_l - s_l)
    r = 1
    for k, s in reversed([(3, 2), (3, 2), (5, 1)]):
        r = s * r + (k - s)
    assert r == 23


def test_summary_reports_fractional_stride_for_up():
    p = Pipeline([Stage("up", kernel="bilinear", stride=2)])
    row = p.summary((16, 16))[0]
    assert row["effective_stride"] == (Fraction(1, 2), Fraction(1, 2))
    assert row["holes"] == 0
    assert "stage" in p.format_summary((16, 16))


def test_summary_holes_for_gridding():
    rows = _dilated_chain((2, 2, 2)).summary()
    assert rows[-1]["holes"] > 0 and rows[-1]["rf_size"] == (13, 13)
    assert _dilated_chain((1, 2, 5)).summary()[-1]["holes"] == 0


def test_recipe_round_trip(tmp_path):
    p = Pipeline(
        [
            Stage(
                "down",
                kernel="gaussian",
                size=(3, 5),
                stride=(1, 2),
                dilation=2,
                padding=((1, 2), (0, 3)),
                mode="circular",
            ),
            Stage("down", kernel=np.arange(6.0).reshape(2, 3), stride=1, padding="valid"),
            Stage("up", kernel="bilinear", stride=2, output_size=(21, 7)),
        ]
    )
    text = p.to_json(tmp_path / "recipe.json")
    assert json.loads(text)["stages"][0]["op"] == "down"
    q = Pipeline.from_json(tmp_path / "recipe.json")
    assert q == p
    assert Pipeline.from_json(text) == p
    x = np.random.default_rng(1).random((12, 14))
    np.testing.assert_array_equal(q(x), p(x))


def test_bad_recipes_and_stages():
    with pytest.raises(ValueError, match="op"):
        Stage("sideways")
    with pytest.raises(TypeError, match="output_padding"):
        Stage("down", output_padding=1)
    with pytest.raises(ValueError, match="JSON"):
        Pipeline.from_json("{not json")
    with pytest.raises(ValueError, match="stages"):
        Pipeline.from_json('{"version": 1}')
    with pytest.raises(FileNotFoundError):
        Pipeline.from_json("/nonexistent/recipe.json")
    with pytest.raises(ValueError, match="at least one"):
        Pipeline([])
    # Errors name the stage: which one, and its op.
    with pytest.raises(ValueError, match="'stages' must be a list of stage objects"):
        Pipeline.from_json('{"stages": "down"}')
    with pytest.raises(ValueError, match=r"stage 2 \(sideways\): .*op"):
        Pipeline.from_json('{"stages": [{"op": "down"}, {"op": "sideways"}]}')
    with pytest.raises(TypeError, match=r"stage 1 \(down\): .*output_padding"):
        Pipeline.from_json('[{"op": "down", "output_padding": 1}]')


def test_summary_of_a_3d_chain_without_a_shape():
    p = Pipeline([Stage("down", kernel="box", size=3, stride=2)])
    row = p.summary(ndim=3)[0]
    assert row["rf_size"] == (3, 3, 3) and row["effective_stride"] == (2, 2, 2)
    assert "3x3x3" in p.format_summary(ndim=3)


def test_pipeline_preserve_dtype_casts_the_final_result_once():
    x = np.random.default_rng(2).integers(0, 60000, (16, 18)).astype(np.uint16)
    p = Pipeline([Stage("down", stride=2), Stage("down", stride=2), Stage("up")])
    out = p(x, preserve_dtype=True)
    assert out.dtype == np.uint16
    floats = p(x)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(out, np.clip(np.rint(floats), 0, 65535).astype(np.uint16))


def test_pipeline_coverage_map():
    from napari_conv_resample import coverage_map

    one = Pipeline(
        [Stage("down", kernel="box", size=3, stride=2, dilation=2, padding=1, mode="reflect")]
    )
    np.testing.assert_array_equal(
        one.coverage_map((20, 22)),
        coverage_map((20, 22), size=3, stride=2, dilation=2, padding=1, mode="reflect"),
    )
    # Through a chain the total equals the number of (output, path) pairs.
    chain = _dilated_chain((2, 2))
    cov = chain.coverage_map((30,))
    assert cov.sum() == sum(chain.receptive_field((30,), (o,)).sum() for o in range(30))


def test_summary_without_a_shape_reports_offsets_on_the_shape_it_names():
    """'same' padding depends on the length: the start offsets come from the
    same shape as the holes and the reported input shape."""
    p = Pipeline([Stage("down", kernel="box", size=3, stride=2, padding="same", mode="zeros")] * 3)
    rows = p.summary(ndim=1)
    again = p.summary(rows[-1]["input_shape"])
    assert [r["start_offset"] for r in rows] == [r["start_offset"] for r in again]
    assert [r["holes"] for r in rows] == [r["holes"] for r in again]


def test_spatial_dims_filters_the_last_spatial_axes(tmp_path):
    """``spatial_dims=2`` filters YX of a ZYX stack whatever axes it is given,
    round-trips through a recipe (version 2) and is checked."""
    rng = np.random.default_rng(3)
    stack = rng.random((5, 16, 18)).astype(np.float32)
    stage = Stage("down", kernel="box", size=2, stride=2, padding=0)
    planes = Pipeline([stage], spatial_dims=2)
    want = stage(stack, axes=(1, 2))
    np.testing.assert_array_equal(planes(stack), want)
    np.testing.assert_array_equal(planes(stack, axes=(0, 1, 2)), want)
    assert planes.output_shape(stack.shape, axes=(0, 1, 2)) == (5, 8, 9)
    assert Pipeline([stage])(stack).shape == (2, 8, 9)  # without it: every axis
    text = planes.to_json(tmp_path / "r.json")
    assert json.loads(text)["version"] == 2 and json.loads(text)["spatial_dims"] == 2
    assert Pipeline.from_json(tmp_path / "r.json") == planes
    assert json.loads(Pipeline([stage]).to_json())["version"] == 1  # older readers read it
    assert Pipeline.from_json(Pipeline([stage]).to_json()) != planes
    with pytest.raises(ValueError, match="spatial_dims=3"):
        Pipeline([stage], spatial_dims=3)(stack[0])
    with pytest.raises(ValueError, match="spatial_dims must be a positive int"):
        Pipeline([stage], spatial_dims=0)
    with pytest.raises(ValueError, match="recipe spatial_dims"):
        Pipeline.from_json('{"stages": [{"op": "down"}], "spatial_dims": "YX"}')
    with pytest.raises(ValueError, match="spatial shape of the 2 axes"):
        planes.receptive_field((5, 16, 18), (0, 0, 0))
    assert planes.receptive_field((16, 18), (3, 4)).shape == (16, 18)
    # per-axis values follow the axes in the order given, as without spatial_dims
    uneven = Stage("down", kernel="box", size=1, stride=(1, 2), padding=0)
    want = Pipeline([uneven])(stack, axes=(2, 1))
    assert want.shape == (5, 8, 18)
    got = Pipeline([uneven], spatial_dims=2)(stack, axes=(2, 1, 0))
    np.testing.assert_array_equal(got, want)


def test_summary_without_a_shape_takes_the_axes_any_parameter_fixes():
    for stage in (
        Stage("down", kernel="box", size=3, padding=(1, 1, 1), mode="zeros"),
        Stage("down", kernel="box", size=3, padding=((1, 1), (1, 1), (0, 0)), mode="zeros"),
    ):
        want = Pipeline([stage]).summary((40, 40, 40))[0]["rf_size"]
        assert Pipeline([stage]).summary()[0]["rf_size"] == want
    assert len(Pipeline([Stage("down", padding=1)]).summary()[0]["rf_size"]) == 2
    # One (lo, hi) pair pads every axis: the default 2 axes, or ndim.
    pair = Pipeline([Stage("down", kernel="box", size=3, padding=((1, 2),), mode="zeros")])
    assert len(pair.summary()[0]["rf_size"]) == 2
    assert len(pair.summary(ndim=3)[0]["rf_size"]) == 3


def test_pipeline_shapes_and_ndim_are_checked_with_their_names():
    p = Pipeline([Stage("down", kernel="box", size=3, stride=2)])
    for bad in ((8.9, 8), (8, 0), (-8, 8), "8x8"):
        with pytest.raises((TypeError, ValueError), match="input_shape"):
            p.receptive_field(bad, (0, 0))
        with pytest.raises((TypeError, ValueError), match="input_shape"):
            p.summary(bad)
    with pytest.raises((TypeError, ValueError), match="input_shape"):
        p.coverage_map((8.5, 8))
    assert p.coverage_map(9).shape == (9,)  # one int: 1-D, as the mask functions take it
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(ValueError, match="ndim"):
            p.summary(ndim=bad)
    up = Pipeline([Stage("up", kernel="bilinear", stride=2, output_size=(16, 16))])
    with pytest.raises(ValueError, match="input_shape is needed"):
        up.summary()
    assert up.summary((8, 8))[0]["output_shape"] == (16, 16)
    flat = Pipeline([Stage("down", kernel=np.ones((3, 3)), stride=2)])
    with pytest.raises(ValueError, match=r"filters 2 spatial axes .* input_shape \(8, 8, 8\)"):
        flat.receptive_field((8, 8, 8), (0, 0, 0))


def test_rounded_stages_round_like_a_chain_of_preserve_dtype_calls():
    rng = np.random.default_rng(2)
    x = (rng.random((30, 34)) * 1000).astype(np.uint16)
    stages = [Stage("down", stride=2), Stage("up", stride=2), Stage("down", stride=1)]
    p = Pipeline(stages, rounded=[1, 0])
    assert p.rounded == (0, 1)
    want = dilated_downsample(x, stride=2, preserve_dtype=True)
    want = transpose_upsample(want, stride=2, preserve_dtype=True)
    want = dilated_downsample(want, stride=1)
    np.testing.assert_array_equal(p(x), want)
    assert p(x).dtype == np.float32 and p(x, preserve_dtype=True).dtype == np.uint16
    back = Pipeline.from_json(p.to_json())
    assert back == p and back.to_dict()["version"] == 3 and back.to_dict()["rounded"] == [0, 1]
    assert (
        Pipeline(stages).to_dict()["version"] == 1 and "rounded" not in Pipeline(stages).to_dict()
    )
    assert Pipeline(stages) != p
    for bad in ([2], [-1], [0.5], "x"):
        with pytest.raises((TypeError, ValueError), match="rounded"):
            Pipeline(stages, rounded=bad)


def test_summary_rows_follow_the_input_shape_when_holes_use_a_smaller_grid():
    p = Pipeline([Stage("down", stride=2)])  # gaussian3, 'same': the low pad depends on L
    odd = p.summary((2101, 2101), holes_shape=(64, 64))[0]
    assert odd["start_offset"] == (-1, -1) and odd["input_shape"] == (2101, 2101)
    assert p.summary((64, 64))[0]["start_offset"] == (0, 0)
    # A chain that cannot run on the smaller grid counts its holes on the input's.
    up = Pipeline([Stage("down", stride=2), Stage("up", stride=2, output_size=(101, 101))])
    assert up.summary((100, 100), holes_shape=(16, 16))[1]["output_shape"] == (101, 101)
    with pytest.raises(ValueError, match="holes_shape"):
        p.summary((100, 100), holes_shape=(16,))


def test_summary_holes_grid_is_widened_to_hold_the_field():
    chain = Pipeline(
        [Stage("down", kernel="box", size=5, stride=1, dilation=d, padding="same") for d in (2, 4)]
    )
    want = chain.summary((40, 120, 120))
    got = chain.summary((40, 120, 120), holes_shape=(16, 32, 32))
    assert [r["holes"] for r in got] == [r["holes"] for r in want]
