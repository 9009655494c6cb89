#!/bin/sh
# Python for the runner on any Debian/Ubuntu base, with or without Python in it
# (python:3.12-slim has one; local/bookworm and rocker/r-ver do not). One step per call:
#   build    python3 with venv support and strip, in the build stage
#   venv     /opt/venv: the pinned dependencies and serverless-score, then pip itself removed
#   runtime  the interpreter the venv links to, in the final stage
#   user     the non-root user the image runs as (uid 10001)
set -eu
here="$(dirname "$0")"
. "$here/apt.sh"

case "$1" in
  build)
    # strip (binutils) slims the venv's shared libraries (slim-venv.sh); it stays in this stage.
    # A base that has Python needs no apt otherwise, so there a failed apt only costs the strip.
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      apt_install python3 python3-venv binutils
    elif ! command -v strip >/dev/null 2>&1; then
      (apt_install binutils) || echo "python-runtime.sh: binutils could not be installed:" \
        "the venv's shared libraries stay unstripped (about 60 MB more)" >&2
    fi
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
    sh "$here/slim-venv.sh" /opt/venv
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
