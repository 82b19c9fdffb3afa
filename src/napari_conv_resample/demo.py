"""The main job: ``python -m napari_conv_resample.demo``.

With a display it opens napari with a sample image, a downsampled and an
upsampled result and the sampling inspector's layers, the widgets docked.
Without one it renders the same scene under a virtual display (``xvfb-run``)
to a PNG and says where it wrote it. ``--library-only`` skips napari and
writes the results of the library on the sample data as TIFFs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MODULE = "napari_conv_resample.demo"


def write_library_results(out_dir):
    """Down- and upsample the 2-D and 3-D samples; write TIFFs with µm pixel sizes."""
    import numpy as np
    import tifffile

    from . import coverage_map, dilated_downsample, output_geometry, transpose_upsample
    from .batch.io_tiff import write_tiff
    from .batch.metadata import ImageMeta
    from .sample_data import load_sample

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("nuclei_2d", "stack_3d"):
        data, meta = load_sample(name)
        scale = meta["scale"]
        jobs = [
            ("down", dilated_downsample, {"kernel": "gaussian", "size": 3, "dilation": 2}),
            ("up", transpose_upsample, {"kernel": "bilinear"}),
        ]
        for op, func, params in jobs:
            out = func(data, **params, preserve_dtype=True)
            geo = output_geometry(op, data.shape, scale=scale, **params)
            assert out.shape == geo.shape
            path = out_dir / f"{name}_{op}.tif"
            # The batch tool's writer: ImageJ pixel size, spacing and origin.
            placed = ImageMeta(
                meta["metadata"]["axes"],
                geo.scale,
                geo.translate,
                ("micrometer",) * out.ndim,
                "imagej",
            )
            write_tiff(path, out, placed)
            written.append((path, out.shape, geo.scale, geo.translate))
    cov = coverage_map((64, 64), size=3, stride=2, dilation=2, padding="same")
    path = out_dir / "coverage_k3_s2_d2.tif"
    tifffile.imwrite(path, cov.astype(np.uint16))
    written.append((path, cov.shape, (1.0, 1.0), (0.0, 0.0)))
    for path, shape, scale, translate in written:
        print(f"wrote {path}  shape={shape}  scale={scale}  translate={translate}")
    return written


def main(argv=None):
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument(
        "--screenshot",
        metavar="PNG",
        help="render the scene to this PNG instead of opening a window "
        "(the default when there is no display: demo_output/demo.png)",
    )
    parser.add_argument(
        "--library-only",
        action="store_true",
        help="no napari: write the library's results on the sample data as TIFFs",
    )
    parser.add_argument("--out", default="demo_output", help="folder for TIFFs and the PNG")
    args = parser.parse_args(argv)

    if args.library_only:
        write_library_results(args.out)
        return 0

    from ._widgets._demo_scene import has_display, open_scene, reexec_under_xvfb, render_scene

    if args.screenshot is None and has_display():
        open_scene()
        return 0
    png = Path(args.screenshot or Path(args.out) / "demo.png").resolve()
    if not has_display() and not os.environ.get("NAPARI_CONV_RESAMPLE_DEMO_XVFB"):
        status = reexec_under_xvfb(MODULE, ["--screenshot", str(png), "--out", args.out])
        if status is None:
            print(
                "No display and no xvfb-run: install Xvfb (apt-get install xvfb) or run "
                f"`python -m {MODULE} --library-only`",
                file=sys.stderr,
            )
            return 1
        return status
    write_library_results(args.out)
    render_scene(png)
    print(f"wrote the demo scene to {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
