"""Inputs named by files, folders and globs; an output folder inside an input folder."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_conv_resample.batch.discover import discover
from napari_conv_resample.cli import main


def _tree(tmp_path):
    d = tmp_path / "data"
    (d / "a" / "deep").mkdir(parents=True)
    img = np.arange(24 * 20, dtype=np.uint16).reshape(24, 20)
    for rel in ("one.tif", "a/two.TIFF", "a/deep/three.ome.tif"):
        tifffile.imwrite(d / rel, img)
    (d / "a" / "notes.txt").write_text("not an image")
    (d / ".hidden.tif").write_bytes(b"")
    return d


def test_folders_globs_and_layout(tmp_path):
    d = _tree(tmp_path)
    found = discover([d])
    assert [str(f.rel) for f in found] == ["a/deep/three.ome.tif", "a/two.TIFF", "one.tif"]
    # Duplicates (a folder plus a file in it) are kept once.
    assert len(discover([d, d / "one.tif"])) == 3
    assert [f.path.name for f in discover([str(d / "**" / "*.tif")])] == [
        "three.ome.tif",
        "one.tif",
    ]


def test_output_folder_inside_the_input_folder_is_not_an_input(tmp_path, capsys):
    d = _tree(tmp_path)
    out = d / "small"
    for _ in range(2):
        code = main(["down", str(d), "-o", str(out), "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == 0
        assert sorted(f["input"].split("data/")[1] for f in report["files"]) == [
            "a/deep/three.ome.tif",
            "a/two.TIFF",
            "one.tif",
        ]
    assert report["skipped"] == 3  # the rerun skips, it does not take outputs as inputs
    assert not (out / "small").exists()
    # The same with a glob (whose outputs are named flat, by file name).
    code = main(["down", str(d / "**" / "*.tif"), "-o", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and len(report["files"]) == 2
    assert not any("/small/" in f["input"] for f in report["files"])
