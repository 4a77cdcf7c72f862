#!/usr/bin/env bash
# The LiveKit server the end-to-end test runs: livekit-server at a pinned release, built from the
# Go module proxy with `go install` (its go.mod has no replace directives) and cached per machine.
#
#   scripts/livekit-server.sh build   # build unless cached; prints the binary's path
#   scripts/livekit-server.sh path    # prints the cached binary's path, exit 1 if not built
#
# v1.9.11: the closest release to v1.9.x that the Go module proxy reachable here serves
# (v1.9.9 answers "403 This module version is not available").
set -euo pipefail
version=v1.9.11
cache="${XDG_CACHE_HOME:-$HOME/.cache}/livekit-ffi-broker/livekit-server-$version"
bin="$cache/livekit-server"

case "${1:-build}" in
  path)
    [ -x "$bin" ] || { echo "livekit-server $version is not built: run $0 build" >&2; exit 1; }
    echo "$bin"
    ;;
  build)
    if [ ! -x "$bin" ]; then
      go=$(command -v go || echo /usr/local/go/bin/go)
      [ -x "$go" ] || { echo "livekit-server $version: no Go toolchain (go not on PATH nor /usr/local/go/bin/go)" >&2; exit 1; }
      mkdir -p "$cache"
      # Built into a fresh directory and moved into place, so a concurrent or interrupted build
      # never leaves a half-written binary at $bin.
      tmp=$(mktemp -d "$cache/build.XXXXXX")
      trap 'rm -rf "$tmp"' EXIT
      echo "building livekit-server $version with $("$go" version) (a few minutes, once per machine)" >&2
      GOBIN="$tmp" GOFLAGS=-buildvcs=false "$go" install "github.com/livekit/livekit-server/cmd/server@$version" >&2
      mv -f "$tmp/server" "$bin"
    fi
    echo "$bin"
    ;;
  *)
    echo "usage: $0 build|path" >&2
    exit 2
    ;;
esac
