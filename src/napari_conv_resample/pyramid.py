"""Multiscale pyramids: an image and its repeated downsamplings.

Level 0 is the image itself; level ``k`` is a :class:`~.pipeline.Pipeline`
(by default one ``down`` stage) applied to level ``k - 1``, so every level
is exactly what the batch tool writes as dataset ``k`` of an OME-Zarr
pyramid and what napari shows as a multiscale layer. Where each level sits
in the world follows from its stages' output geometry
(:func:`level_placements`).
"""

from __future__ import annotations

from ._validation import check_image, is_int
from .geometry import place_output
from .pipeline import Pipeline, Stage


def check_levels(levels, name="levels"):
    """``levels`` as an int >= 1, else a ValueError naming ``name``."""
    if not is_int(levels) or levels < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {levels!r}")
    return int(levels)


def pyramid_specs(pipeline, input_shape, levels, axes=None, *, name="levels"):
    """The resolved specs that make levels 1 .. ``levels`` of a pyramid.

    Level ``k`` is ``pipeline`` applied to level ``k - 1`` (level 0: an
    image of ``input_shape``). Returns one list of specs (one per stage) per
    level. Raises ValueError, naming ``name``, when a level would not be
    smaller than the one before (an up stage, stride 1, or an image already
    one pixel across), saying how many levels fit.
    """
    levels = check_levels(levels, name)
    out, shape = [], tuple(int(n) for n in input_shape)
    for k in range(1, levels + 1):
        try:
            specs = pipeline.specs(shape, axes)
            ok = _reduces_all(specs)
        except ValueError as exc:
            if k == 1:  # a bad parameter, not an image grown too small
                raise
            specs, ok, why = None, False, f" ({exc})"
        else:
            why = f" (shape {shape} -> {tuple(specs[-1].output_shape)})"
        if not ok:
            label = f"{name} {levels}" if name.startswith("--") else f"{name}={levels}"
            raise ValueError(
                f"{label}: {_fit(k - 1)} of shape {tuple(int(n) for n in input_shape)}: "
                f"level {k} would not be smaller than level {k - 1}{why}"
            )
        out.append(specs)
        shape = tuple(specs[-1].output_shape)
    return out


def _reduces_all(specs):
    first, last = specs[0], specs[-1]
    pairs = list(zip(first.input_shape, last.output_shape))
    return all(o <= i for i, o in pairs) and any(o < i for i, o in pairs)


def _fit(n):
    if n == 0:
        return "these stages make no smaller level of an image"
    return f"at most {n} level{'s' if n > 1 else ''} fit an image"


def level_placements(level_specs, scale, translate):
    """``[(scale, translate), ...]`` of levels 0 .. N of a pyramid whose
    level 0 sits at ``scale``/``translate`` (per axis, world units), each
    level placed by its stages' output geometry (DESIGN §3)."""
    scale, translate = tuple(float(v) for v in scale), tuple(float(v) for v in translate)
    out = [(scale, translate)]
    for specs in level_specs:
        for spec in specs:
            scale, translate = place_output(spec, scale, translate)
        out.append((tuple(scale), tuple(translate)))
    return out


def pyramid(
    image,
    levels,
    *,
    pipeline=None,
    axes=None,
    backend="auto",
    preserve_dtype=False,
    **params,
):
    """An image and ``levels`` successive downsamplings of it.

    Parameters
    ----------
    image : array
        Level 0, returned as given (NumPy or CuPy; other array-likes as NumPy).
    levels : int
        Number of levels below the image (>= 1).
    pipeline : Pipeline, optional
        The stages that make each level from the one before. Default: one
        :func:`~.operators.dilated_downsample` with ``params`` (its keywords:
        ``kernel``, ``size``, ``stride``, ...; stride 2 by default).
    axes, backend, preserve_dtype
        As for the operators. With ``preserve_dtype`` every level keeps the
        image's dtype (each one rounded from the rounded level before it);
        otherwise integer images give float32 levels.

    Returns
    -------
    list of arrays
        ``[image, level1, ..., level<levels>]``, largest first (napari's
        ``multiscale=True`` order).

    Examples
    --------
    >>> import numpy as np
    >>> [a.shape for a in pyramid(np.ones((64, 48), np.float32), 3)]
    [(64, 48), (32, 24), (16, 12), (8, 6)]
    """
    if pipeline is None:
        pipeline = Pipeline([Stage("down", **params)])
    elif params:
        raise TypeError(
            f"pyramid: give either pipeline or the down keywords, not both ({sorted(params)})"
        )
    elif not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a Pipeline, got {type(pipeline).__name__}")
    image = check_image(image)
    pyramid_specs(pipeline, image.shape, levels, axes)  # validates before any work
    out = [image]
    for _ in range(levels):
        out.append(pipeline(out[-1], axes=axes, backend=backend, preserve_dtype=preserve_dtype))
    return out


__all__ = ["check_levels", "level_placements", "pyramid", "pyramid_specs"]
