#!/usr/bin/env bash
# Install everything and run the main job: the napari demo (sample image, a
# downsampled and an upsampled result, the sampling inspector's layers). With no
# display it renders the scene to demo_output/demo.png under a virtual display.
source "$(dirname "$0")/_setup.sh"
install_debian_packages
setup_venv "all"
exec python -m napari_conv_resample.demo "$@"
