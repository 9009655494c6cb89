#!/usr/bin/env bash
# Install the blob tests' storage emulator into .tools/azurite (gitignored), from npm only:
#   azurite 3.37   implements Put Block From URL, so the server-side merge is tested for real;
#                  it needs Node >= 22, installed from npm as the `node` package (no other download);
#   azurite 3.35   (as azurite-legacy) answers 501 to it, to test the download-and-stage fallback.
# Idempotent: returns at once when the pinned versions are installed. Called by `make test` and,
# when missing, by the test suite itself (tests/azurite.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/scripts/azurite"
dest="$root/.tools/azurite"

installed() {
  [ -x "$dest/node_modules/.bin/node" ] \
    && [ -f "$dest/node_modules/azurite/dist/src/blob/main.js" ] \
    && [ -f "$dest/node_modules/azurite-legacy/dist/src/blob/main.js" ] \
    && cmp -s "$src/package-lock.json" "$dest/package-lock.json"
}

if installed; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-azurite: installing npm (Debian package)" >&2
    apt-get update -qq && apt-get install -y -qq npm >/dev/null
  else
    echo "ensure-azurite: npm is needed to install Azurite (e.g. apt-get install npm)" >&2
    exit 1
  fi
fi
echo "ensure-azurite: installing Azurite 3.37 + 3.35 and Node 22 from npm into .tools/azurite" >&2
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
installed || { echo "ensure-azurite: the install did not produce node 22 and both Azurites" >&2; exit 1; }
echo "ensure-azurite: node $("$dest/node_modules/.bin/node" --version) ready" >&2
