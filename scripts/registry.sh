#!/usr/bin/env bash
# Runs Debian's docker-registry on loopback with htpasswd authentication, for the end-to-end tests
# of logins, pushes and the registry cache.
#
#   scripts/registry.sh up      install what is missing and start it if it is not running; prints
#                               REGISTRY=127.0.0.1:<port>, REGISTRY_USER=… and REGISTRY_PASSWORD_FILE=…
#   scripts/registry.sh down    stop it
#
# The docker engine treats 127.0.0.0/8 as an insecure registry, so plain HTTP on loopback is enough.
set -euo pipefail
# shellcheck source=daemon.sh
. "$(dirname "$0")/daemon.sh"

REGISTRY_HOME=${DBXC_REGISTRY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/docker-buildx-cache-registry}
PORT=${DBXC_REGISTRY_PORT:-5055}
ADDR=127.0.0.1:$PORT
USER_NAME=ci
PIDFILE=$REGISTRY_HOME/registry.pid

log() { echo "registry: $*" >&2; }
die() { echo "registry: error: $*" >&2; exit 1; }

ready() {
  # Without credentials the registry answers 401: it is up and asks for authentication.
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/v2/" 2>/dev/null)" = 401 ]
}

up() {
  mkdir -p "$REGISTRY_HOME/data"
  if ! command -v docker-registry >/dev/null 2>&1 || ! command -v htpasswd >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "installing docker-registry and apache2-utils needs root"
    log "installing docker-registry and apache2-utils"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils >&2
  fi
  if [ ! -s "$REGISTRY_HOME/password" ]; then
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$REGISTRY_HOME/password"
    chmod 600 "$REGISTRY_HOME/password"
  fi
  htpasswd -Bbn "$USER_NAME" "$(cat "$REGISTRY_HOME/password")" > "$REGISTRY_HOME/htpasswd"
  cat > "$REGISTRY_HOME/config.yml" <<YAML
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $REGISTRY_HOME/data }
  delete: { enabled: true }
http: { addr: $ADDR }
auth:
  htpasswd: { realm: docker-buildx-cache, path: $REGISTRY_HOME/htpasswd }
YAML
  if ! ready; then
    log "starting docker-registry on $ADDR"
    daemon "$REGISTRY_HOME/registry.log" docker-registry serve "$REGISTRY_HOME/config.yml"
    echo "$DAEMON_PID" > "$PIDFILE"
    for _ in $(seq 1 40); do ready && break; sleep 0.25; done
    ready || { tail -n 20 "$REGISTRY_HOME/registry.log" >&2; die "docker-registry did not answer on $ADDR"; }
  fi
  echo "REGISTRY=$ADDR"
  echo "REGISTRY_USER=$USER_NAME"
  echo "REGISTRY_PASSWORD_FILE=$REGISTRY_HOME/password"
}

down() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null && log "stopped" || true
  rm -f "$PIDFILE"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
