#!/usr/bin/env bash
# Make sure a Docker engine answers and has the local base image `local/bookworm`; print the
# DOCKER_HOST to use on stdout (progress goes to stderr). Idempotent: quick when all is there.
#
#   1. An engine that already answers is used: $DOCKER_HOST, else /var/run/docker.sock, else the
#      private one below if it is still running.
#   2. Otherwise Debian's docker.io (and debootstrap) are installed if missing, and a private
#      dockerd is started in the background (it keeps running for later test runs; stop it with
#      `scripts/ensure-docker.sh --stop`):
#        data root  $SERVERLESS_SCORE_DOCKER_ROOT/data   (default .tools/docker of this checkout)
#        socket     $SERVERLESS_SCORE_DOCKER_ROOT/docker.sock
#        exec root  /run/serverless-score-docker-<hash>  (runtime state; short socket paths)
#      with --bridge=none --iptables=false: containers use the host network (no NAT here).
#   3. No registry is reachable here, so the base image is made from Debian: debootstrap a
#      minbase bookworm from the machine's own apt mirror (~50 s, once), keep its tarball in the
#      root (a fresh data root re-imports it in seconds) and `docker import` it as local/bookworm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="${SERVERLESS_SCORE_DOCKER_ROOT:-$root/.tools/docker}"
sock="$state/docker.sock"
exec_root="/run/serverless-score-docker-$(printf '%s' "$state" | sha256sum | cut -c1-8)"
base_image="local/bookworm"
rootfs_tar="$state/bookworm-rootfs.tar"

say() { echo "ensure-docker: $*" >&2; }

answers() {  # does an engine answer on this DOCKER_HOST?
  DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

stop_private() {
  if [ -f "$state/dockerd.pid" ]; then
    pid="$(cat "$state/dockerd.pid")"
    if kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/comm" 2>/dev/null; then
      say "stopping dockerd (pid $pid)"
      kill "$pid"
      for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$state/dockerd.pid"
  fi
  # dockerd leaves its network namespace mounted in the exec root
  if [ -d "$exec_root" ] && ! pgrep -f -- "--exec-root $exec_root" >/dev/null 2>&1; then
    umount "$exec_root/netns/default" 2>/dev/null || true
    rm -rf "$exec_root" 2>/dev/null || true
  fi
}

if [ "${1:-}" = "--stop" ]; then
  stop_private
  exit 0
fi

need_root() {
  [ "$(id -u)" -eq 0 ] || { say "need root to $1 (run as root, or start Docker and set DOCKER_HOST)"; exit 1; }
}

install_debs() {  # install the Debian packages given that are missing
  local missing=()
  for deb in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$deb" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$deb")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "apt-get install ${missing[*]}"
  say "installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${1:-}" = "--registry-binary" ]; then
  command -v docker-registry >/dev/null 2>&1 || install_debs docker-registry
  command -v docker-registry
  exit 0
fi

# -- 1. an engine that already answers ---------------------------------------------------------
host=""
for candidate in "${DOCKER_HOST:-}" "unix:///var/run/docker.sock" "unix://$sock"; do
  if [ -n "$candidate" ] && command -v docker >/dev/null 2>&1 && answers "$candidate"; then
    host="$candidate"
    break
  fi
done

# -- 2. else our own dockerd -------------------------------------------------------------------
if [ -z "$host" ]; then
  command -v dpkg-query >/dev/null 2>&1 || { say "no Docker engine answers; install Docker and set DOCKER_HOST"; exit 1; }
  install_debs docker.io
  need_root "start dockerd"
  stop_private  # a dockerd of ours that no longer answers
  mkdir -p "$state/data" "$exec_root"
  rm -f "$sock"
  say "starting dockerd (data root $state/data)"
  setsid dockerd --storage-driver overlay2 --iptables=false --ip6tables=false --bridge=none \
    --data-root "$state/data" --exec-root "$exec_root" --pidfile "$state/dockerd.pid" \
    -H "unix://$sock" </dev/null >"$state/dockerd.log" 2>&1 &
  host="unix://$sock"
  for _ in $(seq 300); do answers "$host" && break; sleep 0.1; done
  answers "$host" || { say "dockerd did not start; last lines of $state/dockerd.log:"; tail -20 "$state/dockerd.log" >&2; exit 1; }
fi
export DOCKER_HOST="$host"

# -- 3. the base image -------------------------------------------------------------------------
apt_mirror() {  # the Debian mirror this machine's apt uses (deb822 or one-line sources); "" if none
  local uri
  uri=$(grep -h -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$uri" ] || uri=$(grep -h -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                         | grep -v security | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' || true)
  echo "$uri"  # never a host of our own choosing: the machine's configuration says where packages come from
}

if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  if [ ! -s "$rootfs_tar" ]; then
    install_debs debootstrap
    need_root "debootstrap"
    mirror="$(apt_mirror)"
    [ -n "$mirror" ] || { say "no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d: configure apt's sources (debootstrap uses the same mirror), then run again"; exit 1; }
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    say "debootstrap --variant=minbase bookworm from $mirror (about a minute, once)"
    debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$state/debootstrap.log" 2>&1 \
      || { say "debootstrap failed; see $state/debootstrap.log"; exit 1; }
    rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
    mkdir -p "$state"
    tar -C "$tmp/rootfs" -cf "$rootfs_tar.partial" .
    mv "$rootfs_tar.partial" "$rootfs_tar"
  fi
  say "importing $base_image from $rootfs_tar"
  docker import --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$rootfs_tar" "$base_image" >/dev/null
fi
echo "$DOCKER_HOST"
