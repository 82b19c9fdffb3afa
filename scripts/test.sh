#!/usr/bin/env bash
# Install everything (Debian packages, .venv, the project with its test extras)
# and run the lint and the full test suite under a virtual display.
source "$(dirname "$0")/_setup.sh"
install_debian_packages
setup_venv "all,test,oracle"
echo ">> ruff check"
ruff check .
echo ">> pytest"
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  exec xvfb-run -a -s "-screen 0 1920x1200x24" python -m pytest "$@"
fi
exec python -m pytest "$@"
