"""``conv-resample``: the command line (a stub for now).

The subcommands are declared so that ``conv-resample --help`` shows the
intended shape of the tool; each one says it is not implemented yet and
exits with status 2. The batch tool replaces this module.
"""

from __future__ import annotations

import argparse
import sys

SUBCOMMANDS = {
    "down": "dilated (strided) downsampling of image files",
    "up": "transpose upsampling of image files",
    "run": "apply a saved recipe (Pipeline JSON) to image files",
    "inspect": "print the geometry and receptive field of a recipe",
}


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="conv-resample",
        description="Resample N-D microscopy images with dilated and transposed convolution.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=f"{help_text} (not implemented yet)")
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    print(f"conv-resample {args.command}: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
