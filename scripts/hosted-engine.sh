#!/usr/bin/env bash
# A second Docker engine that behaves like a Microsoft-hosted agent's: the classic overlay2 image
# store, and docker.io reached through a mirror, so that the task's default path (the
# docker-container driver pulling moby/buildkit:buildx-stable-1, Dockerfiles that say FROM busybox)
# runs for real on a machine that cannot pull from Docker Hub. Everything is on loopback.
#
#   scripts/hosted-engine.sh up     provision what is missing and start what is not running; prints
#                                   DOCKER_HOST=…, MIRROR=127.0.0.1:<port>, BUILDX_VERSION=…,
#                                   BUILDX_PLUGIN=… (the current buildx), DEBIAN_BUILDX=… (Debian's
#                                   0.13.1) and BUILDKITD=…; or, with exit code 3,
#                                   UNAVAILABLE=<why> when ../shared/buildkit is missing or what
#                                   is missing needs root to provision
#   scripts/hosted-engine.sh down   stop the engine and the mirror
#   scripts/hosted-engine.sh env    print the same lines for a running engine
#
# What it provisions, under ~/.cache/docker-buildx-cache-hosted:
#   - the mirror: Debian's docker-registry on 127.0.0.1:5062, holding moby/buildkit:buildx-stable-1
#     (assembled from ../shared/buildkit/buildkitd-*.xz as ../shared/buildkit/README.md describes)
#     and library/busybox:latest (a busybox-static root file system);
#   - the engine: dockerd from the private root of scripts/engine-lib.sh with the classic overlay2
#     store and "registry-mirrors": ["http://127.0.0.1:5062"]. It stays out of the first engine's
#     way: its own data root, exec root, pid file and socket, its own bridge (dbxc-hosted0, a host-only
#     172.31.250.1/24 without NAT), no iptables or ip-forward changes, and its own cgroup parent;
#   - buildkitd and the current buildx (../shared/buildkit/docker-buildx-*.xz) unpacked and checked
#     against the sha256 in ../shared/buildkit/README.md. The tests put that buildx in a private
#     DOCKER_CONFIG; the global plugin stays as it is.
#
# A developer's own engine with the classic store (on this host, so that loopback is shared) can
# stand in for the private one: set DBXC_HOSTED_DOCKER_HOST to it. It then pulls BuildKit from its
# own registries (Docker Hub, or its mirrors); the mirror is still provisioned for FROM busybox.
set -euo pipefail

LOG_PREFIX=hosted-engine
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/engine-lib.sh"

HOSTED_HOME=${DBXC_HOSTED_HOME:-$CACHE_ROOT/docker-buildx-cache-hosted}
SHARED=${DBXC_SHARED:-$ROOT/../shared}
# Not 5060 or 5061: fetch() refuses those (SIP) as bad ports.
MIRROR=127.0.0.1:${DBXC_MIRROR_PORT:-5062}
BRIDGE=dbxc-hosted0
BRIDGE_CIDR=${DBXC_HOSTED_BRIDGE_CIDR:-172.31.250.1/24}
PRIVATE_HOST=unix://$HOSTED_HOME/run/docker.sock
BIN=$HOSTED_HOME/bin
BUILDKIT_IMAGE=moby/buildkit:buildx-stable-1
BUSYBOX_IMAGE=library/busybox:latest

unavailable() {
  echo "UNAVAILABLE=$*"
  exit 3
}

# ../shared/buildkit/<name>-v*-linux-amd64.xz, the newest version when there are several.
shared_file() {
  find "$SHARED/buildkit" -maxdepth 1 -name "$1-v*-linux-amd64.xz" 2>/dev/null | sort -V | tail -n 1
}

# Unpacks $1 (xz) to $2 once, checked against the sha256 that the shared README gives for it.
unpack_checked() {
  local xz=$1 out=$2 expected
  [ -x "$out" ] && return 0
  expected=$(grep -F "$(basename "$xz")" "$SHARED/buildkit/README.md" 2>/dev/null | grep -o '[0-9a-f]\{64\}' | head -n 1 || true)
  mkdir -p "$(dirname "$out")"
  xz -dc "$xz" >"$out.tmp"
  if [ -n "$expected" ] && [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" != "$expected" ]; then
    rm -f "$out.tmp"
    die "$(basename "$xz") does not unpack to the sha256 that $SHARED/buildkit/README.md gives ($expected)"
  fi
  chmod +x "$out.tmp"
  mv "$out.tmp" "$out"
}

mirror_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$MIRROR/v2/" 2>/dev/null)" = 200 ]; }

mirror_config() {
  cat <<YAML
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $HOSTED_HOME/mirror }
http: { addr: $MIRROR }
YAML
}

start_mirror() {
  # A mirror started with another configuration (another port, say) is replaced.
  if [ "$(mirror_config)" != "$(cat "$HOSTED_HOME/mirror.yml" 2>/dev/null)" ]; then
    stop_pidfile "$HOSTED_HOME/mirror.pid"
    mirror_config >"$HOSTED_HOME/mirror.yml"
  fi
  mirror_ready && return 0
  install_commands docker-registry:docker-registry curl:curl
  mkdir -p "$HOSTED_HOME/mirror"
  log "starting the docker.io mirror on $MIRROR"
  daemon "$HOSTED_HOME/mirror.log" docker-registry serve "$HOSTED_HOME/mirror.yml"
  echo "$DAEMON_PID" >"$HOSTED_HOME/mirror.pid"
  for _ in $(seq 1 40); do mirror_ready && return 0; sleep 0.25; done
  tail -n 20 "$HOSTED_HOME/mirror.log" >&2
  die "docker-registry did not answer on $MIRROR"
}

ensure_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  log "creating the host-only bridge $BRIDGE ($BRIDGE_CIDR)"
  ip link add name "$BRIDGE" type bridge
  ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# The private root is the first engine's (scripts/engine-lib.sh); it is unpacked under that engine's lock.
install_private_root() {
  mkdir -p "$ENGINE_HOME"
  (
    exec 8>"$ENGINE_HOME/.lock"
    flock 8
    install_trixie_engine
  )
}

private_ready() { DOCKER_HOST=$PRIVATE_HOST docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Never "bridge": "none": a dockerd started with it deletes the interface docker0, which is the
# first engine's, and that engine's containers lose their network.
daemon_config() {
  cat <<JSON
{
  "storage-driver": "overlay2",
  "registry-mirrors": ["http://$MIRROR"],
  "bridge": "$BRIDGE",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false,
  "cgroup-parent": "/docker-buildx-cache-hosted"
}
JSON
}

# Starts the private engine unless it runs with this configuration already.
ensure_private() {
  [ "$(daemon_config)" = "$(cat "$HOSTED_HOME/daemon.json" 2>/dev/null)" ] && private_ready && return 0
  is_root || unavailable "provisioning the hosted-agent engine needs root (apt-get, a bridge, mounts); run as root, or set DBXC_HOSTED_DOCKER_HOST to an engine with the classic image store"
  install_commands runc:runc ip:iproute2
  install_private_root
  ensure_docker_client
  ensure_bridge
  stop_pidfile "$HOSTED_HOME/run/dockerd.pid"
  daemon_config >"$HOSTED_HOME/daemon.json"
  start_dockerd "$HOSTED_HOME" "$HOSTED_HOME/daemon.json"
}

# The engine the hosted suites use.
engine_host() {
  if [ -n "${DBXC_HOSTED_DOCKER_HOST:-}" ]; then
    DOCKER_HOST=$DBXC_HOSTED_DOCKER_HOST docker version >/dev/null 2>&1 || die "no engine answers at DBXC_HOSTED_DOCKER_HOST=$DBXC_HOSTED_DOCKER_HOST"
    [ "$(image_store "$DBXC_HOSTED_DOCKER_HOST")" = classic ] || die "the engine at DBXC_HOSTED_DOCKER_HOST=$DBXC_HOSTED_DOCKER_HOST uses the containerd image store; a hosted agent's engine uses the classic one"
    echo "$DBXC_HOSTED_DOCKER_HOST"
  else
    echo "$PRIVATE_HOST"
  fi
}

mirror_has() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$MIRROR/v2/${1%%:*}/manifests/${1#*:}")" = 200 ]
}

# Imports a root file system (a folder) as $MIRROR/$2 into the engine at $1 and pushes it; the
# local tags are removed, so that the engine gets the image through the mirror as a hosted agent does.
push_to_mirror() {
  local host=$1 image=$2 dir=$3; shift 3
  local changes=() c
  for c in "$@"; do changes+=(-c "$c"); done
  tar -C "$dir" -c . | DOCKER_HOST=$host docker import "${changes[@]}" - "$MIRROR/$image" >/dev/null
  DOCKER_HOST=$host docker push -q "$MIRROR/$image" >/dev/null
  DOCKER_HOST=$host docker image rm "$MIRROR/$image" >/dev/null
}

# moby/buildkit:buildx-stable-1 as ../shared/buildkit/README.md describes it: buildkitd, bookworm's
# runc with its libraries, busybox for a shell, and the files BuildKit expects. buildx reaches a
# docker-container builder through `buildctl dial-stdio` and waits for it with `buildctl debug
# workers`, and no buildctl is in ../shared, so /usr/bin/buildctl is a stand-in that does those two
# things with socat (with its libraries too).
push_buildkit() {
  local host=$1 stamp=$HOSTED_HOME/mirror/.buildkitd.sha256 sum
  sum=$(sha256sum "$BIN/buildkitd" | cut -d' ' -f1)
  mirror_has "$BUILDKIT_IMAGE" && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return 0
  install_commands runc:runc socat:socat busybox:busybox-static
  log "assembling $BUILDKIT_IMAGE from $(basename "$(shared_file buildkitd)") and pushing it to the mirror"
  local tmp lib
  tmp=$(mktemp -d)
  busybox_rootfs "$tmp"
  mkdir -p "$tmp/usr/bin" "$tmp/var/lib/buildkit" "$tmp/run"
  : >"$tmp/etc/hosts"
  : >"$tmp/etc/resolv.conf"
  : >"$tmp/etc/hostname"
  cp "$BIN/buildkitd" "$(command -v runc)" "$(command -v socat)" "$tmp/usr/bin/"
  for lib in $({ ldd "$(command -v runc)"; ldd "$(command -v socat)"; } | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$tmp$(dirname "$lib")"
    cp -L "$lib" "$tmp$lib"
  done
  cat >"$tmp/usr/bin/buildctl" <<'SH'
#!/bin/sh
# Stand-in for buildctl: buildx runs only `buildctl debug workers` (to wait) and `buildctl dial-stdio`.
sock=/run/buildkit/buildkitd.sock
case "$1" in
  dial-stdio) exec socat STDIO "UNIX-CONNECT:$sock" ;;
  debug) exec socat -u OPEN:/dev/null "UNIX-CONNECT:$sock" ;;
  *) echo "buildctl: this image's stand-in does only dial-stdio and debug workers" >&2; exit 1 ;;
esac
SH
  chmod +x "$tmp/usr/bin/buildctl"
  push_to_mirror "$host" "$BUILDKIT_IMAGE" "$tmp" 'ENTRYPOINT ["buildkitd"]' 'VOLUME /var/lib/buildkit' 'ENV BUILDKIT_SETUP_CGROUPV2_ROOT=1'
  rm -rf "$tmp"
  echo "$sum" >"$stamp"
}

push_busybox() {
  mirror_has "$BUSYBOX_IMAGE" && return 0
  install_commands busybox:busybox-static
  log "pushing $BUSYBOX_IMAGE to the mirror"
  local tmp
  tmp=$(mktemp -d)
  busybox_rootfs "$tmp"
  push_to_mirror "$1" "$BUSYBOX_IMAGE" "$tmp" 'CMD ["/bin/sh"]'
  rm -rf "$tmp"
}

report() {
  local buildx
  buildx=$(shared_file docker-buildx)
  buildx=${buildx##*/docker-buildx-v}
  echo "DOCKER_HOST=$1"
  echo "MIRROR=$MIRROR"
  echo "BUILDX_VERSION=${buildx%%-linux-amd64.xz}"
  echo "BUILDX_PLUGIN=$BIN/docker-buildx"
  echo "DEBIAN_BUILDX=$DEBIAN_BUILDX"
  echo "BUILDKITD=$BIN/buildkitd"
}

check_shared() {
  [ "$(uname -m)" = x86_64 ] || unavailable "the binaries in ../shared/buildkit are for x86-64; this machine is $(uname -m)"
  [ -n "$(shared_file buildkitd)" ] && [ -n "$(shared_file docker-buildx)" ] ||
    unavailable "no buildkitd-v*-linux-amd64.xz and docker-buildx-v*-linux-amd64.xz in $SHARED/buildkit (set DBXC_SHARED to the folder that holds buildkit/)"
}

up() {
  check_shared
  mkdir -p "$HOSTED_HOME"
  exec 9>"$HOSTED_HOME/.lock"
  flock 9
  install_commands xz:xz-utils curl:curl
  unpack_checked "$(shared_file buildkitd)" "$BIN/buildkitd"
  unpack_checked "$(shared_file docker-buildx)" "$BIN/docker-buildx"
  start_mirror
  local host
  host=$(engine_host)
  [ "$host" != "$PRIVATE_HOST" ] || ensure_private
  if [ ! -x "$DEBIAN_BUILDX" ]; then
    # With a developer's own engine, Debian's buildx may not be unpacked yet.
    is_root || unavailable "Debian's buildx 0.13.1 is not unpacked in $ROOTFS, and unpacking it needs root (scripts/engine.sh up does it)"
    install_private_root
  fi
  push_buildkit "$host"
  push_busybox "$host"
  log "ready: $(DOCKER_HOST=$host docker version --format 'engine {{.Server.Version}}'), $(image_store "$host") image store, mirror $MIRROR"
  report "$host"
}

env_() {
  check_shared
  local host
  host=$(engine_host)
  DOCKER_HOST=$host docker version >/dev/null 2>&1 && mirror_ready || die "the hosted-agent engine is not running; run scripts/hosted-engine.sh up"
  report "$host"
}

down() {
  stop_pidfile "$HOSTED_HOME/run/dockerd.pid"
  stop_pidfile "$HOSTED_HOME/mirror.pid"
  # dockerd leaves its network namespace mounted under the exec root; nothing else is unmounted.
  local mnt
  for mnt in $(awk -v home="$HOSTED_HOME/" 'index($2, home) == 1 { print $2 }' /proc/mounts | sort -r); do umount "$mnt" || true; done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE" || true; fi
  log "stopped"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) env_ ;;
  *) die "usage: $0 up|down|env" ;;
esac
