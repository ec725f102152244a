#!/usr/bin/env bash
# The Docker engine that the tests, the demo and the benchmarks drive: one with buildx and the
# containerd image store (the docker driver needs it to export cache).
#
#   scripts/engine.sh up      use the engine that docker already reaches (DOCKER_HOST, else the current
#                             docker context) when it has the containerd image store; otherwise
#                             provision and start a private one. Imports the base image; prints
#                             DOCKER_HOST=… on its last line
#   scripts/engine.sh down    stop the private engine (never one it did not start)
#   scripts/engine.sh env     print DOCKER_HOST=… of the engine that `up` would use, when it is running
#
# The private engine, for machines without a usable one (this needs root): Debian trixie's dockerd
# from a private root (scripts/engine-lib.sh) with the containerd image store, its own data root,
# exec root and socket under ~/.cache/docker-buildx-cache-engine. A buildx plugin is installed
# (trixie's 0.13.1, into ~/.docker/cli-plugins) only when the docker CLI has none. No image can be
# pulled here, so a busybox rootfs from busybox-static is imported as local/busybox:latest for the
# test and example Dockerfiles.
set -euo pipefail

LOG_PREFIX=engine
. "$(dirname "$0")/engine-lib.sh"

PRIVATE_HOME=$ENGINE_HOME
PRIVATE_HOST=unix://$PRIVATE_HOME/run/docker.sock
BASE_IMAGE=local/busybox:latest
MIN_BUILDX=0.10.0

private_ready() { DOCKER_HOST=$PRIVATE_HOST docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The engine docker reaches now, when it has the containerd image store; otherwise nothing, with
# the reason in the log when there is an engine.
usable_engine() {
  local found
  found=$(reachable_engine)
  if [ -z "$found" ]; then
    [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "$PRIVATE_HOST" ] && log "no engine answers at DOCKER_HOST=$DOCKER_HOST"
    return 0
  fi
  [ "$found" = "$PRIVATE_HOST" ] && return 0
  if [ "$(image_store "$found")" = containerd ]; then
    echo "$found"
  else
    log "the engine at $found uses the classic image store; the tests need the containerd image store" \
      "(the docker driver exports cache only with it): add {\"features\":{\"containerd-snapshotter\":true}} to its daemon.json and restart it to use it"
  fi
}

buildx_version() { docker buildx version 2>/dev/null | grep -o 'buildx v\{0,1\}[0-9]*\.[0-9]*\.[0-9]*' | grep -o '[0-9].*' || true; }

ensure_buildx() {
  local version
  version=$(buildx_version)
  if [ -z "$version" ]; then
    install_trixie_engine
    mkdir -p "$HOME/.docker/cli-plugins"
    cp "$DEBIAN_BUILDX" "$HOME/.docker/cli-plugins/docker-buildx"
    log "installed Debian's buildx plugin in ~/.docker/cli-plugins"
    version=$(buildx_version)
  fi
  [ -n "$version" ] || die "the buildx plugin does not run: $(docker buildx version 2>&1 | tail -n 1)"
  [ "$(printf '%s\n' "$MIN_BUILDX" "$version" | sort -V | head -n 1)" = "$MIN_BUILDX" ] ||
    die "buildx $version is older than $MIN_BUILDX, which the task needs; update the docker-buildx plugin"
}

start_private() {
  if ! is_root; then
    die "no engine with the containerd image store is reachable, and provisioning a private one needs root" \
      "(apt-get, mounts). Run as root, or point DOCKER_HOST at an engine that has the containerd image store."
  fi
  install_commands runc:runc iptables:iptables busybox:busybox-static
  install_trixie_engine
  ensure_docker_client
  cat >"$PRIVATE_HOME/daemon.json" <<'JSON'
{"features":{"containerd-snapshotter":true}}
JSON
  start_dockerd "$PRIVATE_HOME" "$PRIVATE_HOME/daemon.json"
}

import_base_image() {
  DOCKER_HOST=$1 docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  install_commands busybox:busybox-static
  log "importing $BASE_IMAGE from /bin/busybox"
  import_busybox "$1" "$BASE_IMAGE"
}

up() {
  mkdir -p "$PRIVATE_HOME"
  exec 9>"$PRIVATE_HOME/.lock"
  flock 9
  local host
  host=$(usable_engine)
  if [ -n "$host" ]; then
    log "using the engine at $host (containerd image store); the tests prune its build cache"
  else
    host=$PRIVATE_HOST
    private_ready || start_private
  fi
  ensure_buildx
  import_base_image "$host"
  log "ready: $(DOCKER_HOST=$host docker version --format 'engine {{.Server.Version}}'), buildx $(buildx_version)"
  echo "DOCKER_HOST=$host"
}

env_() {
  local host
  host=$(usable_engine)
  if [ -z "$host" ]; then
    private_ready || die "no engine is running; run scripts/engine.sh up"
    host=$PRIVATE_HOST
  fi
  echo "DOCKER_HOST=$host"
}

case "${1:-up}" in
  up) up ;;
  down) stop_pidfile "$PRIVATE_HOME/run/dockerd.pid" && log "stopped" ;;
  env) env_ ;;
  *) die "usage: $0 up|down|env" ;;
esac
