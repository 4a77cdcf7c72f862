#!/usr/bin/env bash
# Installs audio filter plugin packages for the broker (serve --allow-audio-plugins DIR), one
# directory per release, DIR/<distribution>/<version>/, each a `pip install --no-deps --target` of
# exactly that release: the broker maps a worker's "file F of package P, version V" onto its own
# copy there. The Dockerfile runs it with its AUDIO_PLUGINS build arg.
#
#   scripts/install-audio-plugins.sh DIR NAME==VERSION...     (PYTHON: the python whose pip runs, default python3)
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [NAME==VERSION...]" >&2
  exit 2
fi
dir=$1
shift
mkdir -p "$dir"
for spec in "$@"; do
  if ! [[ $spec =~ ^([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)$ ]]; then
    echo "install-audio-plugins: \"$spec\" is not NAME==VERSION (the broker keeps exact releases)" >&2
    exit 2
  fi
  # PEP 503 names: lower case, runs of - _ . as one -
  name=$(printf '%s' "${BASH_REMATCH[1]}" | tr '[:upper:]' '[:lower:]' | sed -E 's/[-_.]+/-/g')
  target="$dir/$name/${BASH_REMATCH[2]}"
  if compgen -G "$target/*-${BASH_REMATCH[2]}.dist-info" > /dev/null; then
    continue # already installed: a release's files do not change
  fi
  rm -rf "$target"
  mkdir -p "$target"
  "${PYTHON:-python3}" -m pip install --quiet --no-deps --no-compile --disable-pip-version-check --target "$target" "$spec"
done
