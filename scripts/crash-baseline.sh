#!/usr/bin/env bash
# The measurement behind the README's "Why" (not CI): the e2e crash scenario N times without the
# broker (every process loads liblivekit_ffi itself), then, with --with-broker, N times through it.
#
#   [LKB_E2E_PAIR=report|newest] scripts/crash-baseline.sh [RUNS=10] [--with-broker]
#
# Needs what `npm test` prepared: dist/ (npm install) and the pair's build/pyvenv-e2e-<pair>
# (scripts/python-venvs.sh; default: report, the crash report's versions); root, for the server's
# network namespace. Writes build/crash-baseline-<pair>-<mode>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
pair=${LKB_E2E_PAIR:-report}
mode=in-process
extra=()
if [ "${2:-}" = "--with-broker" ]; then mode=broker; extra=(--with-broker); fi
exec "build/pyvenv-e2e-$pair/bin/python" client/python/tests/e2e/crash_baseline.py --runs "$runs" "${extra[@]}" \
  --out "build/crash-baseline-$pair-$mode.json"
