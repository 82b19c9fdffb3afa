# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run):
# a virtualenv in .venv with the project installed, and the Debian packages a
# headless napari needs (Xvfb, Mesa, the xcb libraries of Qt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEB_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 \
libxcb-render-util0 libxcb-image0 libdbus-1-3 libfontconfig1"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
  local missing=()
  for p in $DEB_PACKAGES "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
      echo "Install these packages with your system's package manager: ${missing[*]}" >&2
      return 1
    fi
    if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
      echo "Missing Debian packages. As root, run:" >&2
      echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
      return 1
    fi
    echo ">> installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

find_python() {  # Python 3.11+ (zarr 3, the OME-Zarr 0.5 I/O, needs it): $PYTHON, a python3.x, or apt
  local candidate
  for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null && is_new_enough "$candidate"; then
      echo "$candidate"; return 0
    fi
  done
  if [ -z "${PYTHON:-}" ] && command -v apt-get >/dev/null; then
    echo ">> python3 is older than 3.11; installing python3.11 from Debian/Ubuntu packages" >&2
    install_debian_packages python3.11 python3.11-venv >&2 && echo python3.11 && return 0
  fi
  echo "Python 3.11 or newer is needed (found: $(python3 -V 2>&1))." >&2
  echo "Set PYTHON=/path/to/python3.x to pick another interpreter." >&2
  return 1
}

setup_venv() {  # $1: the extras to install, e.g. "all,test,oracle"
  local python
  python=$(find_python)
  # A venv left without pip (e.g. an interrupted first run) is made again.
  if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv
    if ! "$python" -m venv .venv 2>/dev/null; then
      rm -rf .venv
      local ver
      ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      install_debian_packages "python${ver}-venv"
      "$python" -m venv .venv
    fi
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
  python -m pip install -q --upgrade pip
  # Not editable: napari.yaml and the sample TIFFs are force-included into the wheel.
  python -m pip install -q ".[$1]"
}
