#!/usr/bin/env bash
# The Python client's checks: a virtualenv of its own under build/, the package with its test
# extras, its generated code current with proto/, and pytest against the real broker that
# `npm install` built (including the end-to-end test against a real livekit-server).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/pyvenv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e 'client/python[test]'
"$venv/bin/python" client/python/generate.py --check
# The end-to-end test's livekit-agents worker and publishers run from a second virtualenv (see the
# `e2e` extra); tests/test_e2e_livekit.py uses it.
e2e_venv=build/pyvenv-e2e
[ -x "$e2e_venv/bin/python" ] || python3 -m venv "$e2e_venv"
"$e2e_venv/bin/python" -m pip install -q --disable-pip-version-check -e 'client/python[e2e]'
"$venv/bin/python" -m pytest client/python/tests -q -p no:cacheprovider
