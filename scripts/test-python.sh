#!/usr/bin/env bash
# The Python client's checks: its virtualenvs (scripts/python-venvs.sh), its generated code current
# with proto/, and pytest against the real broker that `npm install` built (including the
# end-to-end tests against a real livekit-server, whose processes run from build/pyvenv-e2e-*), then the
# CI rows of the SDK version matrix (older livekit releases, each in its own virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-venvs.sh
build/pyvenv/bin/python client/python/generate.py --check
build/pyvenv/bin/python -m pytest client/python/tests -q -p no:cacheprovider
python3 scripts/sdk-matrix.py --ci
