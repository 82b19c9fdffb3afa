"""napari widgets of napari-conv-resample (npe2 contributions).

Everything here is thin: shapes, placement and masks come from the core
library (:mod:`napari_conv_resample.geometry`, ``.masks``, ``.pipeline``).
Importing this subpackage imports napari and magicgui, never Qt directly.
"""

from ._inspector import SamplingInspector
from ._layers import RECIPE_KEY, SOURCE_KEY, resample_layer
from ._resample_widgets import DownsampleWidget, UpsampleWidget

__all__ = [
    "RECIPE_KEY",
    "SOURCE_KEY",
    "DownsampleWidget",
    "SamplingInspector",
    "UpsampleWidget",
    "resample_layer",
]
