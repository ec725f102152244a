#!/usr/bin/env bash
# Provisions and runs a private Docker engine with buildx and BuildKit for the tests, the demo and
# the benchmarks, on a Debian bookworm machine that has only the docker client.
#
#   scripts/engine.sh up      install what is missing, start the engine if it is not running,
#                             import the base image; prints DOCKER_HOST=… on its last line
#   scripts/engine.sh down    stop the engine
#   scripts/engine.sh env     print DOCKER_HOST=… for a running engine
#
# How: Debian trixie's docker.io, docker-buildx, containerd and tini are downloaded (never installed
# over bookworm) and unpacked into a private root; bookworm's own runc and iptables are installed,
# because trixie's runc needs a newer glibc. dockerd runs with the containerd image store, which
# the docker driver needs to export cache, and with its own data root, exec root and socket.
# No image can be pulled here, so a busybox rootfs from busybox-static is imported as
# local/busybox:latest for the test and example Dockerfiles.
set -euo pipefail

ENGINE_HOME=${DBXC_ENGINE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/docker-buildx-cache-engine}
ROOTFS=$ENGINE_HOME/root
RUN=$ENGINE_HOME/run
SOCK=$RUN/docker.sock
PIDFILE=$RUN/dockerd.pid
LOG=$ENGINE_HOME/dockerd.log
BASE_IMAGE=local/busybox:latest
export DOCKER_HOST=unix://$SOCK

log() { echo "engine: $*" >&2; }
die() { echo "engine: error: $*" >&2; exit 1; }

engine_ready() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "installing the engine needs root (apt-get, mounts); run as root or provide DOCKER_HOST of an engine with buildx and the containerd image store"
}

apt_update_once() {
  if [ ! -f "$ENGINE_HOME/.apt-updated" ]; then
    apt-get update -qq >&2
    touch "$ENGINE_HOME/.apt-updated"
  fi
}

install_host_packages() {
  local missing=()
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx sh || missing+=(busybox-static)
  if [ ${#missing[@]} -gt 0 ]; then
    need_root
    apt_update_once
    log "installing bookworm packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

install_trixie_engine() {
  [ -x "$ROOTFS/usr/sbin/dockerd" ] && [ -x "$ROOTFS/usr/libexec/docker/cli-plugins/docker-buildx" ] && return 0
  need_root
  local apt=$ENGINE_HOME/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
  echo "deb http://deb.debian.org/debian trixie main" >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Get::List-Cleanup=0
    -o APT::Sandbox::User=root)
  log "downloading trixie's docker.io, docker-buildx, containerd and tini"
  apt-get "${opts[@]}" update -qq >&2
  local pkgs=(docker.io docker-buildx containerd tini)
  command -v docker >/dev/null 2>&1 || pkgs+=(docker-cli)
  (cd "$apt/debs" && rm -f ./*.deb && apt-get "${opts[@]}" download "${pkgs[@]}" >&2)
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  for deb in "$apt"/debs/*.deb; do dpkg -x "$deb" "$ROOTFS"; done
  # trixie's runc needs glibc 2.38; bookworm's runc is used instead.
  rm -f "$ROOTFS/usr/sbin/runc" "$ROOTFS/usr/bin/runc"
}

install_buildx_plugin() {
  local plugins=$HOME/.docker/cli-plugins
  mkdir -p "$plugins"
  if ! cmp -s "$ROOTFS/usr/libexec/docker/cli-plugins/docker-buildx" "$plugins/docker-buildx"; then
    cp "$ROOTFS/usr/libexec/docker/cli-plugins/docker-buildx" "$plugins/docker-buildx"
  fi
}

start_engine() {
  mkdir -p "$RUN" "$ENGINE_HOME/data" "$ENGINE_HOME/exec"
  cat >"$ENGINE_HOME/daemon.json" <<'JSON'
{"features":{"containerd-snapshotter":true}}
JSON
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "stopping an unresponsive engine"
    kill "$(cat "$PIDFILE")" || true
    sleep 2
  fi
  rm -f "$PIDFILE" "$SOCK"
  log "starting dockerd (log: $LOG)"
  PATH=$ROOTFS/usr/bin:$ROOTFS/usr/sbin:$PATH setsid nohup dockerd \
    --config-file "$ENGINE_HOME/daemon.json" \
    --data-root "$ENGINE_HOME/data" --exec-root "$ENGINE_HOME/exec" \
    --pidfile "$PIDFILE" -H "$DOCKER_HOST" >"$LOG" 2>&1 </dev/null 9>&- &
  for _ in $(seq 1 60); do
    engine_ready && return 0
    sleep 0.5
  done
  tail -n 30 "$LOG" >&2
  die "dockerd did not answer at $DOCKER_HOST within 30 s; see $LOG"
}

import_base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  log "importing $BASE_IMAGE from /bin/busybox"
  local tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/tmp" "$tmp/root"
  cp /bin/busybox "$tmp/bin/busybox"
  for applet in $("$tmp/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$tmp/etc/passwd"
  chmod 1777 "$tmp/tmp"
  tar -C "$tmp" -c . | docker import -c 'CMD ["/bin/sh"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$tmp"
}

up() {
  mkdir -p "$ENGINE_HOME"
  exec 9>"$ENGINE_HOME/.lock"
  flock 9
  install_host_packages
  install_trixie_engine
  install_buildx_plugin
  if ! command -v docker >/dev/null 2>&1; then
    [ -x "$ROOTFS/usr/bin/docker" ] || die "no docker client on PATH and none unpacked from docker-cli"
    ln -sf "$ROOTFS/usr/bin/docker" /usr/local/bin/docker
  fi
  engine_ready || start_engine
  docker buildx version >/dev/null 2>&1 || die "the buildx plugin does not run: $(docker buildx version 2>&1 | tail -n 1)"
  import_base_image
  log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker buildx version | cut -d' ' -f1-2)"
  echo "DOCKER_HOST=$DOCKER_HOST"
}

down() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    log "stopped"
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) engine_ready || die "no engine at $DOCKER_HOST; run scripts/engine.sh up"; echo "DOCKER_HOST=$DOCKER_HOST" ;;
  *) die "usage: $0 up|down|env" ;;
esac
