"""File > Open Sample: the project's sample images with their physical scale."""

from __future__ import annotations

from ..sample_data import load_sample


def _layer_data(name):
    data, kwargs = load_sample(name)
    return [(data, dict(kwargs), "image")]


def nuclei_2d():
    """2-D nuclei, 0.65 µm pixels."""
    return _layer_data("nuclei_2d")


def stack_3d():
    """Anisotropic 3-D stack, voxels 2.0 x 0.5 x 0.5 µm (ZYX)."""
    return _layer_data("stack_3d")


def timelapse_2d():
    """2-D time-lapse, 8 time points (TYX)."""
    return _layer_data("timelapse_2d")
