"""Chains of down/up stages, their receptive fields and recipe files.

A :class:`Pipeline` applies :class:`Stage` objects in order. Its receptive
field is computed by applying the stages' adjoints, in reverse, to a one-hot
final output pixel (DESIGN §2), so holes left by stacked dilations
("gridding") show up; :meth:`Pipeline.summary` adds the closed-form receptive
field size, effective stride and start offset (Araujo et al., Distill 2019).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ._validation import check_image, int_tuple, is_int, normalize_axes, shape_ints
from .backends import get_array_module, is_cupy_array
from .geometry import DEFAULTS, OPS, resolve_spec
from .masks import adjoint, bounding_box, one_hot, ones_kernel
from .operators import cast_result, dilated_downsample, transpose_upsample

#: Newest recipe version this library reads (2 added ``spatial_dims``; a
#: recipe without it is written as version 1, which older versions read).
RECIPE_VERSION = 3


def to_jsonable(value):
    """``value`` with arrays, tuples, NumPy scalars and fractions made JSON-ready.

    Fractions (effective strides of up stages) become ints when whole, else
    strings like ``'1/2'``.
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else str(value)
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _from_jsonable(key, value):
    if key == "kernel" and isinstance(value, list):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, list):
        return tuple(_from_jsonable(key, v) for v in value)
    return value


@dataclass
class Stage:
    """One resampling step: ``op`` is ``'down'`` or ``'up'``.

    ``params`` are the operator's keywords (``kernel``, ``size``, ``stride``,
    ``dilation``, ``padding``, ``mode`` for down, ``output_padding`` and
    ``output_size`` for up); omitted ones take the operator's defaults.
    """

    op: str
    params: dict = field(default_factory=dict)

    def __init__(self, op, **params):
        if op not in OPS:
            raise ValueError(f"op must be 'down' or 'up', got {op!r}")
        unknown = set(params) - (set(DEFAULTS[op]) - {"axes"})
        if unknown:
            raise TypeError(
                f"unknown parameter(s) for a {op!r} stage: {', '.join(sorted(unknown))}"
            )
        self.op = op
        self.params = params

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Stage({self.op!r}{', ' if args else ''}{args})"

    def __eq__(self, other):
        if not isinstance(other, Stage):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __call__(self, image, *, axes=None, backend="auto", preserve_dtype=False):
        """Apply this stage to ``image`` (see the operators for the keywords)."""
        func = dilated_downsample if self.op == "down" else transpose_upsample
        return func(
            image,
            axes=axes,
            backend=backend,
            preserve_dtype=preserve_dtype,
            **self.params,
        )

    def spec(self, input_shape, axes=None):
        """Resolved :class:`~napari_conv_resample.geometry.ResampleSpec` for an input."""
        return resolve_spec(self.op, input_shape, axes=axes, **self.params)

    def path_spec(self, spatial_shape):
        """Spec with a kernel of ones (path counting) on an all-spatial shape."""
        spec = self.spec(spatial_shape)
        if len(spec.axes) != len(spatial_shape):  # an array kernel of fewer axes
            raise ValueError(
                f"the {self.op!r} stage filters {len(spec.axes)} spatial axes (its kernel's) "
                f"but input_shape {tuple(spatial_shape)} has {len(spatial_shape)} (every axis "
                "of input_shape is spatial)"
            )
        params = {**self.params, "kernel": ones_kernel(spec.size, len(spatial_shape))}
        params.pop("size", None)
        return resolve_spec(self.op, spatial_shape, **params)

    def to_dict(self):
        """JSON-ready dict of this stage."""
        return {"op": self.op, **{k: to_jsonable(v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        try:
            op = d.pop("op")
        except KeyError:
            raise ValueError(f"a recipe stage needs an 'op' ('down' or 'up'): {d!r}") from None
        return cls(op, **{k: _from_jsonable(k, v) for k, v in d.items()})


def _field_grid(closed):
    """A grid large enough for the receptive field of closed-form ``closed``
    rows around its centre pixel: four times the largest field, plus 16."""
    n = len(closed[0]["rf_size"])
    return tuple(int(4 * max(row["rf_size"][a] for row in closed)) + 16 for a in range(n))


def _pull_back(r, specs):
    """Apply the adjoints of ``specs`` in reverse to ``r``: path counts (int64)."""
    for spec in reversed(specs):
        r = adjoint(r, spec)
    return np.rint(r).astype(np.int64)


class Pipeline:
    """A chain of :class:`Stage` objects, applied in order.

    Examples
    --------
    >>> p = Pipeline([Stage("down", kernel="box", size=2, stride=2, padding=0)])
    >>> p(np.ones((4, 4))).shape
    (2, 2)

    ``spatial_dims=n`` makes every stage filter only the last ``n`` of the
    spatial axes it is given (default: of all axes): a chain made on the YX
    planes of a z-stack filters YX planes wherever it runs.

    >>> p = Pipeline([Stage("down", kernel="box", size=2, stride=2, padding=0)], spatial_dims=2)
    >>> p(np.ones((3, 4, 4)), axes=(0, 1, 2)).shape
    (3, 2, 2)

    ``rounded`` lists the stages (0-based, all but the last) whose result is
    rounded and cast to the input's dtype before the next stage, as a chain
    of napari widget runs with *preserve dtype* stores each result; the
    final result is cast only with ``preserve_dtype``.
    """

    def __init__(self, stages, *, spatial_dims=None, rounded=()):
        stages = list(stages)
        if not stages:
            raise ValueError("a Pipeline needs at least one Stage")
        for s in stages:
            if not isinstance(s, Stage):
                raise TypeError(f"Pipeline stages must be Stage objects, got {s!r}")
        if spatial_dims is not None and not (is_int(spatial_dims) and spatial_dims >= 1):
            raise ValueError(f"spatial_dims must be a positive int or None, got {spatial_dims!r}")
        self.stages = stages
        self.spatial_dims = None if spatial_dims is None else int(spatial_dims)
        rounded = int_tuple(rounded, "rounded") if rounded is not None else ()
        if any(not 0 <= i < len(stages) - 1 for i in rounded):
            raise ValueError(
                f"rounded must name stages before the last (0 .. {len(stages) - 2}), "
                f"got {rounded!r}"
            )
        self.rounded = tuple(sorted(set(rounded)))

    def __repr__(self):
        dims = "" if self.spatial_dims is None else f", spatial_dims={self.spatial_dims}"
        rounded = f", rounded={self.rounded}" if self.rounded else ""
        return f"Pipeline({self.stages!r}{dims}{rounded})"

    def __eq__(self, other):
        return (
            isinstance(other, Pipeline)
            and self.stages == other.stages
            and self.spatial_dims == other.spatial_dims
            and self.rounded == other.rounded
        )

    def stage_axes(self, ndim, axes=None):
        """The axes of an ``ndim``-D image the stages filter.

        ``axes`` as given (``None``: the operators' default) without
        ``spatial_dims``; with it, the last ``spatial_dims`` of ``axes`` (of
        every axis when ``None``) in array order, kept in the order given
        (per-axis values follow it).
        """
        if self.spatial_dims is None:
            return axes
        last = normalize_axes(axes, ndim)[-self.spatial_dims :]
        if len(last) < self.spatial_dims:
            raise ValueError(
                f"the pipeline filters {self.spatial_dims} spatial axes "
                f"(spatial_dims={self.spatial_dims}) but the image has {len(last)} "
                f"(axes {tuple(last)} of a {ndim}-D image)"
            )
        if axes is None:
            return last
        return tuple(a % ndim for a in int_tuple(axes, "axes") if a % ndim in last)

    def __len__(self):
        return len(self.stages)

    def __call__(self, image, *, axes=None, backend="auto", preserve_dtype=False):
        """Apply every stage in order.

        Intermediate results stay in float (float64 for float64 input, else
        float32); with ``preserve_dtype`` only the final result is rounded,
        clipped and cast back to the input dtype.
        """
        image = out = check_image(image)
        axes = self.stage_axes(image.ndim, axes)
        for i, stage in enumerate(self.stages):
            out = stage(out, axes=axes, backend=backend)
            if i in self.rounded:
                out = self.round_between(out, image.dtype)
        xp = get_array_module("cupy") if is_cupy_array(out) else np
        return cast_result(out, image.dtype, preserve_dtype, xp)

    def rounded_after(self, offset):
        """:attr:`rounded` shifted by ``offset`` stages (these stages after ``offset`` others)."""
        return tuple(i + offset for i in self.rounded)

    @staticmethod
    def round_between(out, dtype):
        """``out`` (a stage's float result) rounded and cast to ``dtype``, the
        pipeline input's, as a :attr:`rounded` stage's result is."""
        xp = get_array_module("cupy") if is_cupy_array(out) else np
        return cast_result(out, dtype, True, xp)

    def specs(self, input_shape, axes=None):
        """The resolved spec of every stage for an input of ``input_shape``."""
        out, shape = [], tuple(input_shape)
        axes = self.stage_axes(len(shape), axes)
        for stage in self.stages:
            spec = stage.spec(shape, axes)
            out.append(spec)
            shape = spec.output_shape
        return out

    def output_shape(self, input_shape, axes=None):
        """Shape of the final output."""
        return self.specs(input_shape, axes)[-1].output_shape

    def _path_specs(self, input_shape):
        out, shape = [], shape_ints(input_shape)
        if self.spatial_dims not in (None, len(shape)):
            raise ValueError(
                f"input_shape {shape} must be the spatial shape of the "
                f"{self.spatial_dims} axes this pipeline filters (spatial_dims="
                f"{self.spatial_dims})"
            )
        for stage in self.stages:
            spec = stage.path_spec(shape)
            out.append(spec)
            shape = spec.output_shape
        return out

    def receptive_field(self, input_shape, out_index, *, upto=None):
        """Paths from each input pixel to final output pixel ``out_index``.

        Parameters
        ----------
        input_shape : tuple of int
            Spatial shape of the pipeline's input (every axis spatial).
        out_index : tuple of int
            Pixel of the final output (or of stage ``upto``'s output).
        upto : int, optional
            Use only the first ``upto`` stages.

        Returns
        -------
        numpy.ndarray of int64
            Counts on the input grid; 0 inside the field's box is a hole.
        """
        if upto is not None and not (is_int(upto) and 1 <= upto <= len(self.stages)):
            raise ValueError(f"upto must be 1 .. {len(self.stages)} (stages), got {upto!r}")
        specs = self._path_specs(input_shape)[:upto]
        return _pull_back(one_hot(specs[-1].output_shape, out_index), specs)

    def coverage_map(self, input_shape):
        """How many paths from all final output pixels reach each input pixel.

        The chain's :func:`~napari_conv_resample.coverage_map`: 0 marks input
        pixels that no output depends on.

        Returns
        -------
        numpy.ndarray of int64
            Counts on the input grid (spatial shape).
        """
        specs = self._path_specs(input_shape)
        return _pull_back(np.ones(specs[-1].output_shape), specs)

    def summary(self, input_shape=None, *, ndim=None, holes_shape=None):
        """Per stage: receptive field size, effective stride, start offset, holes.

        Sizes, strides and offsets are per spatial axis in pipeline-input
        pixels, from the closed form (``Fraction`` for upsampling stages: after
        an up stage the size is the field's extent in input-pixel units, the
        same for every output pixel, while the pixels one output really reads
        depend on its phase and may span one more; the masks give those); the
        start offset is where output pixel 0's field starts and may be
        negative. ``holes`` counts never-reached pixels inside the bounding box
        of the centre output pixel's receptive field, from the mask itself.

        Parameters
        ----------
        input_shape : tuple of int, optional
            Spatial shape; default a shape large enough for the field.
        ndim : int, optional
            Number of spatial axes when ``input_shape`` is not given and no
            stage parameter fixes it (default 2).
        holes_shape : tuple of int, optional
            A smaller grid to count the holes on (the mask of a large input
            is costly; the centre pixel's field is the same away from the
            border); default ``input_shape``. Axes shorter than four times
            the field (plus 16) are widened to that, at most to
            ``input_shape``; a chain that cannot run on it (``output_size``)
            counts them on ``input_shape``.

        Returns
        -------
        list of dict
        """
        if input_shape is not None:
            input_shape = shape_ints(input_shape)
        elif any(stage.params.get("output_size") is not None for stage in self.stages):
            raise ValueError(
                "input_shape is needed for the summary of a pipeline with output_size "
                "(the field depends on the input length output_size is reached from)"
            )
        closed = self._closed_form(input_shape, ndim)
        if input_shape is None:
            input_shape = _field_grid(closed)
            # Offsets on the shape the rows report ('same' padding depends on it).
            closed = self._closed_form(input_shape, ndim)
        specs = self._path_specs(input_shape)
        grid, grid_specs = input_shape, specs
        if holes_shape is not None:
            probe = shape_ints(holes_shape, "holes_shape")
            if len(probe) != len(input_shape):
                raise ValueError(
                    f"holes_shape {probe} must have the {len(input_shape)} axes of input_shape"
                )
            # Room for the whole field around the centre pixel.
            field = _field_grid(closed)
            probe = tuple(min(n, max(p, f)) for n, p, f in zip(input_shape, probe, field))
            try:
                grid, grid_specs = probe, self._path_specs(probe)
            except ValueError:  # the chain cannot run on it (output_size): the input's grid
                grid, grid_specs = input_shape, specs
        for i, row in enumerate(closed):
            centre = tuple(n // 2 for n in grid_specs[i].output_shape)
            rf = self.receptive_field(grid, centre, upto=i + 1)
            box = bounding_box(rf)
            row["holes"] = 0 if box is None else int(np.count_nonzero(rf[box] == 0))
            row["input_shape"] = tuple(input_shape)
            row["output_shape"] = specs[i].output_shape
        return closed

    def _closed_form(self, input_shape, ndim=None):
        n = self._ndim(input_shape, ndim)
        probe = tuple(input_shape) if input_shape is not None else (4096,) * n
        jump = [Fraction(1)] * n
        rf = [Fraction(1)] * n
        start = [Fraction(0)] * n
        rows = []
        for stage, spec in zip(self.stages, self._path_specs(probe)):
            for a, (k, s, d, lo) in enumerate(
                zip(spec.size, spec.stride, spec.dilation, spec.pad_lo)
            ):
                ext = d * (k - 1) + 1
                if stage.op == "down":
                    fan_in, first = ext, -lo
                    new_jump = jump[a] * s
                else:
                    # Output j reads inputs i with s*i + d*t - lo == j.
                    fan_in = max(
                        (j + lo) // s - (-((ext - 1 - j - lo) // s)) + 1 for j in range(s)
                    )
                    first = -((ext - 1 - lo) // s)
                    new_jump = jump[a] / s
                rf[a] += (fan_in - 1) * jump[a]
                start[a] += first * jump[a]
                jump[a] = new_jump
            rows.append(
                {
                    "op": stage.op,
                    "rf_size": tuple(rf),
                    "effective_stride": tuple(jump),
                    "start_offset": tuple(start),
                }
            )
        return rows

    def _ndim(self, input_shape, ndim=None):
        if input_shape is not None:
            return len(input_shape)
        if ndim is not None:
            if not is_int(ndim) or ndim < 1:
                raise ValueError(f"ndim must be an int >= 1 (spatial axes), got {ndim!r}")
            return int(ndim)
        if self.spatial_dims is not None:
            return self.spatial_dims
        for stage in self.stages:
            for key in ("kernel", "size", "stride", "dilation", "output_padding", "padding"):
                v = stage.params.get(key)
                if isinstance(v, np.ndarray):
                    return v.ndim
                # One (lo, hi) pair in a sequence pads every axis: it fixes none.
                one_pair = (
                    key == "padding"
                    and isinstance(v, (tuple, list))
                    and len(v) == 1
                    and not is_int(v[0])
                )
                if isinstance(v, (tuple, list)) and not one_pair:
                    return len(v)
        return 2

    def format_summary(self, input_shape=None, *, ndim=None, holes_shape=None):
        """The summary as a small text table (parameters: :meth:`summary`)."""

        def fmt(values):
            return "x".join(str(v) for v in values)

        lines = ["stage  op    rf size        eff. stride    start offset   holes"]
        for i, row in enumerate(self.summary(input_shape, ndim=ndim, holes_shape=holes_shape), 1):
            lines.append(
                f"{i:<6} {row['op']:<5} {fmt(row['rf_size']):<14} "
                f"{fmt(row['effective_stride']):<14} {fmt(row['start_offset']):<14} "
                f"{row['holes']}"
            )
        return "\n".join(lines)

    def to_dict(self):
        """JSON-ready dict (the recipe format)."""
        # The lowest version that holds it: older readers read what they can.
        version = 3 if self.rounded else 1 if self.spatial_dims is None else 2
        out = {
            "format": "napari-conv-resample recipe",
            "version": version,
            "stages": [s.to_dict() for s in self.stages],
        }
        if self.spatial_dims is not None:
            out["spatial_dims"] = self.spatial_dims
        if self.rounded:
            out["rounded"] = list(self.rounded)
        return out

    def to_json(self, path=None):
        """The recipe as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path):
        """Read a recipe from JSON text or a ``.json`` file path."""
        text = str(text_or_path)
        if not text.lstrip().startswith(("{", "[")):
            path = Path(text)
            if not path.is_file():
                raise FileNotFoundError(f"recipe file not found: {path}")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"recipe is not valid JSON: {exc}") from None
        if isinstance(data, list):
            data = {"stages": data}
        if not isinstance(data, dict) or "stages" not in data:
            raise ValueError("recipe must be a JSON object with a 'stages' list")
        version = data.get("version", RECIPE_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"recipe 'version' must be an integer, got {version!r}")
        if version > RECIPE_VERSION:
            raise ValueError(f"recipe version {version} is newer than this library reads")
        stages = data["stages"]
        if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
            raise ValueError(
                "recipe 'stages' must be a list of stage objects such as "
                f'{{"op": "down", "stride": 2}}, got {stages!r}'
            )
        out = []
        for i, stage in enumerate(stages, 1):
            try:
                out.append(Stage.from_dict(stage))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"stage {i} ({stage.get('op', '?')}): {exc}") from None
        try:
            return cls(out, spatial_dims=data.get("spatial_dims"), rounded=data.get("rounded"))
        except ValueError as exc:
            raise ValueError(f"recipe {exc}") from None
