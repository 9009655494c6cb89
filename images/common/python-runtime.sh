#!/bin/sh
# Python for the runner on any Debian/Ubuntu base, with or without Python in it
# (python:3.12-slim has one; local/bookworm and rocker/r-ver do not). One step per call:
#   build    python3 with venv support, in the build stage
#   venv     /opt/venv: the pinned dependencies and serverless-score, then pip itself removed
#   runtime  the interpreter the venv links to, in the final stage
#   user     the non-root user the image runs as (uid 10001)
set -eu

apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
}

case "$1" in
  build)
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3 python3-venv
    ;;
  venv)
    python3 -m venv /opt/venv
    # The controller downloaded every wheel: install offline. Without them, from PIP_INDEX_URL.
    set --
    if ls /build/wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /build/wheels; fi
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
    /opt/venv/bin/pip install -q "$@" -r /build/requirements.lock
    /opt/venv/bin/pip install -q --no-deps "$@" /build/src
    /opt/venv/bin/pip uninstall -y -q pip setuptools wheel 2>/dev/null || true
    # The packages' own test suites and C headers (~90 MB) are never used by a scoring run.
    find /opt/venv/lib -depth -type d -path '*/site-packages/*' -name tests -exec rm -rf {} +
    rm -rf /opt/venv/lib/python3*/site-packages/pyarrow/include
    ;;
  runtime)
    command -v python3 >/dev/null 2>&1 || apt_install python3
    ;;
  user)
    if ! id -u scorer >/dev/null 2>&1; then
      if command -v useradd >/dev/null 2>&1; then
        useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin scorer
      else  # a minbase Debian has no useradd (package passwd): the entries are enough
        echo "scorer:x:10001:10001:scorer:/home/scorer:/usr/sbin/nologin" >>/etc/passwd
        echo "scorer:x:10001:" >>/etc/group
        mkdir -p /home/scorer && chown 10001:10001 /home/scorer
      fi
    fi
    ;;
  *)
    echo "python-runtime.sh: unknown step $1" >&2
    exit 2
    ;;
esac
