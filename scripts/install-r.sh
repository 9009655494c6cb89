#!/usr/bin/env bash
# Make sure R and the R packages the R runtime, its tests and the examples need are installed.
# Idempotent and quick when everything is there (one dpkg query). On Debian/Ubuntu it installs
# what is missing from Debian's packages (no CRAN, no compiler); elsewhere it says what to install.
set -euo pipefail

# rstudioapi: suggested by the R package (its addin), so `R CMD check` needs it. R's arrow is
# not in Debian: the package reads Parquet through the CLI without it.
DEBS=(r-base-core r-cran-jsonlite r-cran-data.table r-cran-randomforest r-cran-ranger
      r-cran-glmnet r-cran-testthat r-cran-processx r-cran-curl r-cran-rstudioapi)
R_PACKAGES=(jsonlite data.table randomForest ranger glmnet testthat processx curl rstudioapi)

if command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for deb in "${DEBS[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$deb" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$deb")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    exit 0
  fi
  echo "installing R from Debian packages: ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

# Not Debian: accept an R that already has the packages, or say what is missing.
if ! command -v Rscript >/dev/null 2>&1; then
  echo "error: R is not installed and this is not Debian/Ubuntu; install R (>= 4.1), then in R:" >&2
  echo "  install.packages(c($(printf '"%s", ' "${R_PACKAGES[@]}" | sed 's/, $//')))" >&2
  exit 1
fi
absent=$(Rscript -e "p <- c($(printf '"%s",' "${R_PACKAGES[@]}" | sed 's/,$//')); cat(p[!vapply(p, requireNamespace, TRUE, quietly = TRUE)])")
if [ -n "$absent" ]; then
  echo "error: R packages missing: $absent; install them with install.packages() in R" >&2
  exit 1
fi
