"""The project's own sample images: synthetic, reproducible, microscopy-like.

Each generator returns ``(data, layer_kwargs)`` in napari's layer-data form:
``layer_kwargs`` holds ``name``, ``scale`` (µm per pixel, one entry per
axis), ``units`` and ``metadata['axes']``. The same images are shipped as
ImageJ TIFFs in ``sample_data/`` (``sample_data/make_sample_data.py`` writes
them) and inside the wheel; :func:`load_sample` reads the shipped file and
falls back to generating it. No napari import here.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

SEED = 20261125


def _blobs(shape, centres, radii, rng):
    """Sum of Gaussian blobs (float64) of the given radii (pixels, per axis)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    out = np.zeros(shape)
    for c, r in zip(centres, radii):
        d2 = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r))
        out += np.exp(-0.5 * d2) * rng.uniform(0.6, 1.0)
    return out


def _to_uint16(img, rng, *, background=100.0, peak=3000.0, read_noise=8.0):
    """Scale to photon counts, add Poisson shot noise and Gaussian read noise."""
    counts = background + peak * img
    noisy = rng.poisson(counts).astype(np.float64) + rng.normal(0, read_noise, img.shape)
    return np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)


def nuclei_2d():
    """Noisy widefield-like nuclei, 512x512 uint16, 0.65 µm pixels (YX)."""
    rng = np.random.default_rng(SEED)
    n = 60
    centres = rng.uniform(20, 492, (n, 2))
    radii = np.repeat(rng.uniform(6, 12, (n, 1)), 2, axis=1) * rng.uniform(0.8, 1.2, (n, 2))
    data = _to_uint16(_blobs((512, 512), centres, radii, rng), rng)
    return data, {
        "name": "nuclei",
        "scale": (0.65, 0.65),
        "units": ("µm", "µm"),
        "metadata": {"axes": "YX"},
    }


def anisotropic_stack_3d():
    """Blob stack 32x192x192 uint16, voxels z=2.0 µm, y=x=0.5 µm (ZYX).

    The blobs are round in µm, so they look squashed along z in pixels.
    """
    rng = np.random.default_rng(SEED + 1)
    n = 30
    centres = np.column_stack([rng.uniform(4, 28, n), rng.uniform(12, 180, (n, 2))])
    r_um = rng.uniform(3, 6, n)
    radii = np.column_stack([r_um / 2.0, r_um / 0.5, r_um / 0.5])
    data = _to_uint16(_blobs((32, 192, 192), centres, radii, rng), rng, peak=2000.0)
    return data, {
        "name": "stack",
        "scale": (2.0, 0.5, 0.5),
        "units": ("µm", "µm", "µm"),
        "metadata": {"axes": "ZYX"},
    }


def timelapse_2d():
    """Nuclei drifting over 8 time points, 8x256x256 uint16, 0.65 µm pixels (TYX)."""
    rng = np.random.default_rng(SEED + 2)
    n = 20
    start = rng.uniform(30, 226, (n, 2))
    velocity = rng.normal(0, 2.0, (n, 2))
    radii = np.repeat(rng.uniform(6, 10, (n, 1)), 2, axis=1)
    frames = [
        _to_uint16(_blobs((256, 256), start + t * velocity, radii, rng), rng) for t in range(8)
    ]
    return np.stack(frames), {
        "name": "timelapse",
        "scale": (1.0, 0.65, 0.65),
        "units": ("s", "µm", "µm"),
        "metadata": {"axes": "TYX"},
    }


#: File name of each sample and the generator that makes it.
SAMPLES = {
    "nuclei_2d": ("nuclei_2d.tif", nuclei_2d),
    "stack_3d": ("stack_3d.tif", anisotropic_stack_3d),
    "timelapse_2d": ("timelapse_2d.tif", timelapse_2d),
}


def _packaged_file(filename):
    path = resources.files("napari_conv_resample") / "sample_data" / filename
    return path if path.is_file() else None


def read_imagej_tiff(path):
    """``(data, layer_kwargs)`` of an ImageJ TIFF: µm pixel size and z spacing read back."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        ij = tif.imagej_metadata or {}
        page = tif.pages[0]
        axes = tif.series[0].axes
        res = page.tags.get("XResolution")
        xy = 1.0
        if res is not None:
            num, den = res.value
            xy = den / num if num else 1.0
    unit = ij.get("unit", "µm").replace("micron", "µm").replace("um", "µm")
    per_axis = {
        "Z": float(ij.get("spacing", 1.0)),
        "Y": xy,
        "X": xy,
        "T": float(ij.get("finterval", 1.0)),
    }
    scale = tuple(per_axis.get(a, 1.0) for a in axes)
    units = tuple(unit if a in "ZYX" else "s" for a in axes)
    return data, {"scale": scale, "units": units, "metadata": {"axes": axes}}


def load_sample(name):
    """``(data, layer_kwargs)`` of sample ``name``, from the shipped TIFF if present.

    Falls back to generating it (same seed, same pixels) when the package
    was not installed from a wheel.
    """
    if name not in SAMPLES:
        raise ValueError(f"sample {name!r} does not exist; choose one of {', '.join(SAMPLES)}")
    filename, make = SAMPLES[name]
    path = _packaged_file(filename)
    if path is None:
        return make()
    with resources.as_file(path) as p:
        data, meta = read_imagej_tiff(p)
    meta["name"] = name.rsplit("_", 1)[0]
    return data, meta
