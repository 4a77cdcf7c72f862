#!/usr/bin/env bash
# The Python virtualenvs the tests use, under build/: build/pyvenv with the Python client and its
# test extras (pytest, the livekit SDK), and one per version pair of the end-to-end test
# (client/python/pyproject.toml's e2e-* extras): build/pyvenv-e2e-report on Python 3.10, as in the
# crash report, and build/pyvenv-e2e-newest; and build/audio-plugins: the broker's own copy of the
# audio filter plugin packages the Docker image carries by default (its AUDIO_PLUGINS build arg),
# apart from the workers' site-packages. Made before the node suites too, whose killed-workers
# reliability test starts Python workers from build/pyvenv.
#
# Python 3.10: LKB_PYTHON310, else pyenv's 3.10.13, else `python3.10` on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_install() { "$1/bin/python" -m pip install -q --disable-pip-version-check -e "client/python[$2]"; }

venv=build/pyvenv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip_install "$venv" test

is_python310() { "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }
python310=
for candidate in ${LKB_PYTHON310:-} /root/.pyenv/versions/3.10.13/bin/python3.10 python3.10; do
  if is_python310 "$candidate"; then python310=$candidate; break; fi
done
if [ -z "$python310" ]; then
  echo "python-venvs.sh: the end-to-end test's report pair (livekit 1.1.5, livekit-agents 1.5.2) runs on" \
    "Python 3.10, as in the crash report, and none was found (tried: ${LKB_PYTHON310:-}" \
    "/root/.pyenv/versions/3.10.13/bin/python3.10, python3.10 on PATH): install Python 3.10 with venv," \
    "or set LKB_PYTHON310 to one" >&2
  exit 1
fi
[ -x build/pyvenv-e2e-report/bin/python ] || "$python310" -m venv build/pyvenv-e2e-report
pip_install build/pyvenv-e2e-report e2e-report
[ -x build/pyvenv-e2e-newest/bin/python ] || python3 -m venv build/pyvenv-e2e-newest
pip_install build/pyvenv-e2e-newest e2e-newest
# The Dockerfile's default, so the tests and the image's runtime layout hold the same releases.
read -r -a plugins <<< "$(sed -n 's/^ARG AUDIO_PLUGINS="\(.*\)"$/\1/p' Dockerfile)"
PYTHON="$venv/bin/python" bash scripts/install-audio-plugins.sh build/audio-plugins "${plugins[@]}"
