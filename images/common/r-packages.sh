#!/bin/sh
# R and the R packages a model needs:  r-packages.sh MODE [--no-renv] PACKAGE...
#   MODE apt   r-base-core and r-cran-<package> from the distribution (Debian, Ubuntu): binary,
#              no compiler; a package the distribution does not have is refused with a message
#   MODE cran  rocker/r-ver's install2.r, from the CRAN snapshot its tag pins; renv.lock beside
#              this script, when present, is restored with renv
#   MODE auto  cran when install2.r is there, else apt
set -eu
here="$(dirname "$0")"
. "$here/apt.sh"
mode="$1"
shift
renv=yes
if [ "${1:-}" = "--no-renv" ]; then renv=no; shift; fi
if [ "$mode" = auto ]; then
  if command -v install2.r >/dev/null 2>&1; then mode=cran; else mode=apt; fi
fi

# R's base packages come with R itself: nothing to install for them.
wanted=""
for pkg in "$@"; do
  case "$pkg" in
    base|compiler|datasets|graphics|grDevices|grid|methods|parallel|splines|stats|stats4|tcltk|tools|utils) ;;
    *) wanted="$wanted $pkg" ;;
  esac
done

case "$mode" in
  apt)
    if [ "$renv" = yes ] && [ -f "$here/renv.lock" ]; then
      echo "error: renv.lock needs CRAN (R_INSTALL=cran on a rocker/r-ver base), not apt" >&2
      exit 1
    fi
    if [ -z "$wanted" ] && command -v Rscript >/dev/null 2>&1; then exit 0; fi
    apt_update
    debs="r-base-core"
    missing=""
    for pkg in $wanted; do
      deb="r-cran-$(echo "$pkg" | tr 'A-Z' 'a-z')"
      if apt-cache show "$deb" >/dev/null 2>&1; then debs="$debs $deb"; else missing="$missing $pkg"; fi
    done
    if [ -n "$missing" ]; then
      echo "error: R packages not packaged by this distribution (r-cran-*):$missing;" \
           "build on a rocker base (--base rocker/r-ver:4.5.1) to install them from CRAN" >&2
      exit 1
    fi
    # shellcheck disable=SC2086
    apt_get $debs
    apt_clean
    ;;
  cran)
    # shellcheck disable=SC2086
    [ -z "$wanted" ] || install2.r --error --skipinstalled --ncpus -1 $wanted
    if [ "$renv" = yes ] && [ -f "$here/renv.lock" ]; then
      install2.r --error --skipinstalled renv
      Rscript -e "renv::restore(lockfile = '$here/renv.lock', library = .libPaths()[1], prompt = FALSE)"
    fi
    rm -rf /tmp/downloaded_packages
    # What apt.sh keeps dpkg from unpacking, from the library install2.r wrote to.
    lib="$(Rscript -e 'cat(.libPaths()[1])')"
    if [ -n "$lib" ] && [ -d "$lib" ]; then
      rm -rf "$lib"/*/help "$lib"/*/html "$lib"/*/doc "$lib"/*/tests "$lib"/*/po
    fi
    ;;
  *)
    echo "error: R_INSTALL must be auto, apt or cran; got $mode" >&2
    exit 2
    ;;
esac
