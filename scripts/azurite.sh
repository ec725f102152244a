#!/usr/bin/env bash
# Runs Azurite, the Azure Storage emulator from npm (a devDependency), on loopback for the Azure
# Blob store's tests: one instance over HTTP with the emulator's shared key, and one over HTTPS
# with OAuth, which takes Entra ID bearer tokens (Azurite checks their audience, issuer and
# lifetime, not their signature) so that the service-connection path really runs.
#
#   scripts/azurite.sh up     start what is not running; prints AZURITE_BLOB=…, AZURITE_BLOB_OAUTH=…
#                             and AZURITE_CA=… (the self-signed certificate of the HTTPS instance)
#   scripts/azurite.sh down   stop both
set -euo pipefail
# shellcheck source=daemon.sh
. "$(dirname "$0")/daemon.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
AZURITE_HOME=${DBXC_AZURITE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/docker-buildx-cache-azurite}
HTTP_PORT=${DBXC_AZURITE_PORT:-10100}
HTTPS_PORT=$((HTTP_PORT + 1))
BIN=$ROOT/node_modules/.bin/azurite-blob

log() { echo "azurite: $*" >&2; }
die() { echo "azurite: error: $*" >&2; exit 1; }

# Any HTTP answer means it is up; without credentials that is an error status.
ready() { [ "$(curl -sk -o /dev/null -w '%{http_code}' "$1/devstoreaccount1?comp=list" 2>/dev/null)" != 000 ]; }

start() {
  local name=$1 url=$2; shift 2
  ready "$url" && return 0
  mkdir -p "$AZURITE_HOME/$name"
  log "starting $name on $url"
  daemon "$AZURITE_HOME/$name.log" "$BIN" --blobHost 127.0.0.1 --location "$AZURITE_HOME/$name" --silent --skipApiVersionCheck --loose --disableTelemetry "$@"
  echo "$DAEMON_PID" > "$AZURITE_HOME/$name.pid"
  for _ in $(seq 1 60); do ready "$url" && return 0; sleep 0.25; done
  tail -n 20 "$AZURITE_HOME/$name.log" >&2
  die "$name did not answer on $url"
}

up() {
  [ -x "$BIN" ] || die "azurite is not installed: run npm ci first"
  mkdir -p "$AZURITE_HOME"
  if [ ! -s "$AZURITE_HOME/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=127.0.0.1 \
      -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
      -keyout "$AZURITE_HOME/key.pem" -out "$AZURITE_HOME/cert.pem" 2>/dev/null
  fi
  start blob "http://127.0.0.1:$HTTP_PORT" --blobPort "$HTTP_PORT"
  start blob-oauth "https://127.0.0.1:$HTTPS_PORT" --blobPort "$HTTPS_PORT" --oauth basic \
    --cert "$AZURITE_HOME/cert.pem" --key "$AZURITE_HOME/key.pem"
  echo "AZURITE_BLOB=http://127.0.0.1:$HTTP_PORT/devstoreaccount1"
  echo "AZURITE_BLOB_OAUTH=https://127.0.0.1:$HTTPS_PORT/devstoreaccount1"
  echo "AZURITE_CA=$AZURITE_HOME/cert.pem"
}

down() {
  for name in blob blob-oauth; do
    local pid
    pid=$(cat "$AZURITE_HOME/$name.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null && log "stopped $name" || true
    rm -f "$AZURITE_HOME/$name.pid"
  done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
