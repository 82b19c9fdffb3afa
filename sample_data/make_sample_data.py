"""Write the project's sample images as ImageJ TIFFs next to this script.

    python sample_data/make_sample_data.py

Pixels come from ``napari_conv_resample.sample_data`` (fixed seeds), so the
files are reproducible; physical pixel sizes go into the ImageJ metadata.
"""

from pathlib import Path

import tifffile

from napari_conv_resample.sample_data import SAMPLES


def main(out_dir=Path(__file__).parent):
    for name, (filename, make) in SAMPLES.items():
        data, meta = make()
        axes = meta["metadata"]["axes"]
        scale = dict(zip(axes, meta["scale"]))
        xy = scale["X"]
        ij = {"axes": axes, "unit": "um"}
        if "Z" in scale:
            ij["spacing"] = scale["Z"]
        if "T" in scale:
            ij["finterval"] = scale["T"]
        path = Path(out_dir) / filename
        tifffile.imwrite(
            path,
            data,
            imagej=True,
            resolution=(1.0 / xy, 1.0 / xy),
            metadata=ij,
            compression="zlib",
        )
        print(f"{name}: {data.shape} {data.dtype} -> {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
