"""``python -m napari_conv_resample``: the ``conv-resample`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
