"""Batch processing behind the ``conv-resample`` command line.

:mod:`.discover` (inputs), :mod:`.io_tiff` / :mod:`.io_zarr` (files and their
physical metadata), :mod:`.metadata` (axes, scale, translate),
:mod:`.chunked` (out-of-core chunks equal to the in-memory result),
:mod:`.runner` (safe per-file processing and reports).
"""

from .chunked import compute_region, resample_chunked

__all__ = ["compute_region", "resample_chunked"]
