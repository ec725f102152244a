# Shared by scripts/engine.sh and scripts/hosted-engine.sh; sourced, never run. The caller sets
# LOG_PREFIX before sourcing.
#
# Debian trixie's docker.io, docker-buildx, containerd and tini are downloaded (never installed over
# bookworm) and unpacked into one private root, which both engines run from; bookworm's own runc and
# iptables are installed, because trixie's runc needs a newer glibc.

CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}
ENGINE_HOME=${DBXC_ENGINE_HOME:-$CACHE_ROOT/docker-buildx-cache-engine}
ROOTFS=$ENGINE_HOME/root
# Debian's buildx 0.13.1, the oldest the task is tested with, as unpacked from trixie's docker-buildx.
DEBIAN_BUILDX=$ROOTFS/usr/libexec/docker/cli-plugins/docker-buildx

log() { echo "$LOG_PREFIX: $*" >&2; }
die() { echo "$LOG_PREFIX: error: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
# shellcheck source=daemon.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"

# The engine that `docker` reaches with the caller's environment, as a DOCKER_HOST value, or nothing.
reachable_engine() {
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || return 0
  if [ -n "${DOCKER_HOST:-}" ]; then
    echo "$DOCKER_HOST"
  else
    docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || true
  fi
}

# containerd or classic: the image store of the engine at $1.
image_store() {
  local status
  status=$(DOCKER_HOST=$1 docker info --format '{{json .DriverStatus}}' 2>/dev/null) || { echo unknown; return; }
  case "$status" in *io.containerd.snapshotter.v1*) echo containerd ;; *) echo classic ;; esac
}

apt_update_once() {
  mkdir -p "$ENGINE_HOME"
  if [ ! -f "$ENGINE_HOME/.apt-updated" ]; then
    apt-get update -qq >&2
    touch "$ENGINE_HOME/.apt-updated"
  fi
}

# Installs the bookworm packages that provide the commands named as command:package, when missing.
install_commands() {
  local missing=() pair
  for pair in "$@"; do
    case "$pair" in
      busybox:*) [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx sh && continue ;;
      *) command -v "${pair%%:*}" >/dev/null 2>&1 && continue ;;
    esac
    missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  is_root || die "these bookworm packages are missing and installing them needs root: ${missing[*]}"
  apt_update_once
  log "installing bookworm packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

install_trixie_engine() {
  [ -x "$ROOTFS/usr/sbin/dockerd" ] && [ -x "$DEBIAN_BUILDX" ] && return 0
  is_root || die "unpacking trixie's docker.io into $ROOTFS needs root (apt-get)"
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

# The docker client: the one on PATH, else trixie's.
ensure_docker_client() {
  command -v docker >/dev/null 2>&1 && return 0
  [ -x "$ROOTFS/usr/bin/docker" ] || die "no docker client on PATH and none unpacked from docker-cli"
  ln -sf "$ROOTFS/usr/bin/docker" /usr/local/bin/docker
}

# Starts dockerd from the private root with its own data root, exec root, pid file and socket, all
# under $1, and the daemon.json $2; waits until it answers on $1/run/docker.sock.
start_dockerd() {
  local home=$1 config=$2 pidfile=$1/run/dockerd.pid host=unix://$1/run/docker.sock
  mkdir -p "$home/run" "$home/data" "$home/exec"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "stopping an unresponsive engine"
    kill "$(cat "$pidfile")" || true
    sleep 2
  fi
  rm -f "$pidfile" "$home/run/docker.sock"
  log "starting dockerd (log: $home/dockerd.log)"
  PATH=$ROOTFS/usr/bin:$ROOTFS/usr/sbin:$PATH daemon "$home/dockerd.log" dockerd \
    --config-file "$config" --data-root "$home/data" --exec-root "$home/exec" \
    --pidfile "$pidfile" -H "$host"
  for _ in $(seq 1 60); do
    DOCKER_HOST=$host docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  tail -n 30 "$home/dockerd.log" >&2
  die "dockerd did not answer at $host within 30 s; see $home/dockerd.log"
}

# Stops the process in pid file $1 and waits for it.
stop_pidfile() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$1"
}

# A busybox root file system in $1 (from busybox-static): a shell and the usual tools.
busybox_rootfs() {
  mkdir -p "$1/bin" "$1/etc" "$1/tmp" "$1/root"
  cp /bin/busybox "$1/bin/busybox"
  local applet
  for applet in $("$1/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$1/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$1/etc/passwd"
  echo 'root:x:0:' >"$1/etc/group"
  chmod 1777 "$1/tmp"
}

# Imports a busybox root file system as image $2 into the engine at $1.
import_busybox() {
  local tmp
  tmp=$(mktemp -d)
  busybox_rootfs "$tmp"
  tar -C "$tmp" -c . | DOCKER_HOST=$1 docker import -c 'CMD ["/bin/sh"]' - "$2" >/dev/null
  rm -rf "$tmp"
}
