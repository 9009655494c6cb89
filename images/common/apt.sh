# Debian/Ubuntu packages for the images, sourced by python-runtime.sh and r-packages.sh (sh).
# A container reads no documentation, manual page or translation, so dpkg is told not to unpack
# them (copyright files stay); apt's lists and its binary caches (/var/cache/apt/*.bin, ~75 MB
# after an `apt-get update`) go in the same layer that made them, or each layer carries a copy.
#   apt_update                        apt-get update, with the exclusions in place
#   apt_get PACKAGE...                install, without recommends
#   apt_clean                         drop lists, caches and logs
#   apt_install PACKAGE...            the three

apt_update() {
  mkdir -p /etc/dpkg/dpkg.cfg.d
  cat >/etc/dpkg/dpkg.cfg.d/serverless-score-slim <<'EOF'
# serverless-score images: no docs, manual pages or translations (a scoring container reads none)
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
# R's manuals, NEWS and translations, and each R package's help pages, vignettes, tests and
# message catalogues (r-base-core, r-cran-*): loading and running a package needs none of them
path-exclude=/usr/share/R/doc/html/*
path-exclude=/usr/share/R/doc/manual/*
path-exclude=/usr/share/R/doc/NEWS*
path-exclude=/usr/lib/R/library/translations/*
path-exclude=/usr/lib/R/library/*/help/*
path-exclude=/usr/lib/R/library/*/html/*
path-exclude=/usr/lib/R/library/*/doc/*
path-exclude=/usr/lib/R/library/*/po/*
path-exclude=/usr/lib/R/site-library/*/help/*
path-exclude=/usr/lib/R/site-library/*/html/*
path-exclude=/usr/lib/R/site-library/*/doc/*
path-exclude=/usr/lib/R/site-library/*/tests/*
path-exclude=/usr/lib/R/site-library/*/po/*
EOF
  apt-get update -qq
}

apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

apt_clean() {
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
         /var/log/apt/* /var/log/dpkg.log /var/cache/debconf/*-old
}

apt_install() {  # (&&: a failure is this function's status also where set -e is suspended)
  apt_update && apt_get "$@" && apt_clean
}
