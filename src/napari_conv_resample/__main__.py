"""``python -m napari_conv_resample``: the ``conv-resample`` command line."""

import sys

from .cli import main

sys.exit(main())
