#!/usr/bin/env bash
# build/peer-venv.sh VENV REQUIREMENTS [FILE...]: a benchmark peer's virtualenv (make bench-peers).
#
# The peer's packages (about 1 GB for Flink) are installed once per set of requirements into
# the user's cache, PEER_VENV_CACHE/<venv>-<hash of REQUIREMENTS, the FILEs it names and the
# Python version>, and shared by every checkout: a fresh clone then takes a second instead of
# a minute and a half. VENV itself is a venv without packages whose .pth file puts the cached
# packages and this checkout on its path (`python -m bench.quix_peer` works from any directory). A changed requirements
# file gives a new hash, so a new install; old ones stay until the cache is cleared.
#
# Env: PYTHON (default python3), PEER_VENV_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/purchase-analytics/peer-venvs).
set -euo pipefail

venv=${1:?usage: peer-venv.sh VENV REQUIREMENTS [FILE...]}
requirements=${2:?usage: peer-venv.sh VENV REQUIREMENTS [FILE...]}
python=${PYTHON:-python3}
cache_root=${PEER_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purchase-analytics/peer-venvs}
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
packages=$("$cached/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$venv/bin/python" - "$packages" "$(pwd)" <<'EOF'
import pathlib, sys, sysconfig

packages, checkout = sys.argv[1:]
pth = pathlib.Path(sysconfig.get_paths()["purelib"], "purchase-analytics.pth")
pth.write_text(f"import site; site.addsitedir({packages!r})\n{checkout}\n")
EOF
"$venv/bin/python" -c "import sys; assert '$packages' in sys.path, sys.path"
touch "$venv/.installed"
echo "$venv: packages from $cached"
