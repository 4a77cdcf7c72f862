#!/usr/bin/env bash
# The Python client's checks: a virtualenv of its own under build/, the package with its test
# extras, its generated code current with proto/, and pytest against the real broker that
# `npm install` built.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/pyvenv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e 'client/python[test]'
"$venv/bin/python" client/python/generate.py --check
"$venv/bin/python" -m pytest client/python/tests -q -p no:cacheprovider
