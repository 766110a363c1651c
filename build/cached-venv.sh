#!/usr/bin/env bash
# build/cached-venv.sh [--editable] VENV REQUIREMENTS [FILE...]: a virtualenv whose packages
# come from the user's cache (make venv: .venv; make bench-peers: .venv-quix, .venv-flink).
#
# The packages (about 1 GB for Flink, 700 MB for the project's own) are installed once per
# set of requirements into VENV_CACHE/<venv>-<hash of REQUIREMENTS, the FILEs it names and
# the Python version>, and shared by every checkout: a fresh clone then takes seconds instead
# of a minute and a half. VENV itself is a venv without packages whose .pth file puts the
# cached packages on its path, then this checkout: with --editable through pip's editable
# install of the project (its console scripts in VENV/bin), otherwise as a path entry
# (`python -m bench.quix_peer` works from any directory). A changed requirements file gives
# a new hash, so a new install; old ones stay until the cache is cleared.
#
# Env: PYTHON (default python3), VENV_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/purchase-analytics/venvs).
set -euo pipefail

editable=
if [ "${1:-}" = --editable ]; then editable=1; shift; fi
venv=${1:?usage: cached-venv.sh [--editable] VENV REQUIREMENTS [FILE...]}
requirements=${2:?usage: cached-venv.sh [--editable] VENV REQUIREMENTS [FILE...]}
python=${PYTHON:-python3}
cache_root=${VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purchase-analytics/venvs}
key=$({ cat "${@:2}"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
cached=$cache_root/${venv#.}-$key

mkdir -p "$cache_root"
(
    flock 9 # one install per cache entry, whichever checkout asks first
    if [ ! -e "$cached/.installed" ]; then
        rm -rf "$cached"
        "$python" -m venv "$cached"
        "$cached/bin/python" -m pip install -q -r "$requirements"
        touch "$cached/.installed"
    fi
) 9>"$cached.lock"

rm -rf "$venv"
"$python" -m venv --without-pip "$venv"
venv_python=$(cd "$venv" && pwd)/bin/python # the scripts below run it from anywhere
packages=$("$cached/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$venv/bin/python" - "$packages" "${editable:-$(pwd)}" <<'PY'
import pathlib, sys, sysconfig

packages, checkout = sys.argv[1:]
lines = [f"import site; site.addsitedir({packages!r})"] + ([checkout] if checkout != "1" else [])
pathlib.Path(sysconfig.get_paths()["purelib"], "purchase-analytics.pth").write_text("\n".join(lines) + "\n")
PY
# grep reads all of it (no -q): with pipefail, a grep that quits early fails the pipe (BrokenPipeError).
"$venv/bin/python" -m site | grep -xF "    '$packages'," >/dev/null || { echo "error: $venv does not see the packages in $packages" >&2; exit 1; }
# The cached venv's programs, in VENV/bin: its Python scripts (pytest, kaskade) as copies that
# run VENV's Python, so they see this checkout; everything else (py-spy, ruff) as links.
for program in "$cached"/bin/*; do
    name=${program##*/}
    case $name in python* | pip* | activate* | Activate* | __pycache__) continue ;; esac
    [ -e "$venv/bin/$name" ] && continue
    if head -n 1 "$program" | grep -q "^#!$cached/bin/python"; then
        { echo "#!$venv_python"; tail -n +2 "$program"; } >"$venv/bin/$name" && chmod +x "$venv/bin/$name"
    else
        ln -s "$program" "$venv/bin/"
    fi
done
if [ -n "$editable" ]; then
    # the cached venv's pip installs into VENV; the build backend (setuptools) is on its path already
    "$cached/bin/python" -m pip --python "$venv/bin/python" install -q --no-deps --no-build-isolation -e .
fi
touch "$venv/.installed"
echo "$venv: packages from $cached"
