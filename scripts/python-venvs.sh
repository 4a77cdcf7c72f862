#!/usr/bin/env bash
# The Python virtualenvs the tests use, under build/: build/pyvenv with the Python client and its
# test extras (pytest, the livekit SDK), and build/pyvenv-e2e with the end-to-end extras
# (livekit-agents and its pins, see client/python/pyproject.toml), and build/pyvenv-sdk-1.1.5 with
# the crash report's livekit 1.1.5 (the SDK bridges' test). Made before the node suites too,
# whose killed-workers reliability test starts Python workers from build/pyvenv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/pyvenv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e 'client/python[test]'
e2e_venv=build/pyvenv-e2e
[ -x "$e2e_venv/bin/python" ] || python3 -m venv "$e2e_venv"
"$e2e_venv/bin/python" -m pip install -q --disable-pip-version-check -e 'client/python[e2e]'
sdk_venv=build/pyvenv-sdk-1.1.5
[ -x "$sdk_venv/bin/python" ] || python3 -m venv "$sdk_venv"
"$sdk_venv/bin/python" -m pip install -q --disable-pip-version-check -e client/python livekit==1.1.5
