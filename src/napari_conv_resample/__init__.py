"""napari-conv-resample: N-D convolution resampling with masks that show why.

Dilated (strided) downsampling and transposed ("fractionally strided")
upsampling that agree with PyTorch's convolution semantics, on NumPy or CuPy,
with the world geometry of the result and masks of what is sampled. The
package root imports neither napari, Qt nor CuPy.
"""

from .backends import (
    BackendUnavailableError,
    cupy_available,
    device_name,
    get_array_module,
)
from .geometry import (
    DEFAULTS,
    OutputGeometry,
    ResampleSpec,
    output_geometry,
    resolve_spec,
)
from .kernels import PRESETS, make_kernel
from .masks import coverage_map, overlap_map, sampled_mask, zero_inserted
from .operators import dilated_downsample, transpose_upsample
from .pipeline import Pipeline, Stage
from .pyramid import level_placements, pyramid, pyramid_specs

__version__ = "0.1.0"

__all__ = [
    "DEFAULTS",
    "PRESETS",
    "BackendUnavailableError",
    "OutputGeometry",
    "Pipeline",
    "ResampleSpec",
    "Stage",
    "coverage_map",
    "cupy_available",
    "device_name",
    "dilated_downsample",
    "get_array_module",
    "level_placements",
    "make_kernel",
    "output_geometry",
    "overlap_map",
    "pyramid",
    "pyramid_specs",
    "resolve_spec",
    "sampled_mask",
    "transpose_upsample",
    "zero_inserted",
]
