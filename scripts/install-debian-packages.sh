#!/usr/bin/env bash
# Installs the Debian packages the tests use, the way `make` installs Azurite from npm: faketime (the clock tier
# runs the fast tests under a shifted wall clock) and chromium (the HTML report's and the cards' browser tests).
# Does nothing for a package already installed. Needs root (or password-less sudo) for apt-get; otherwise it says
# which command to run and fails, so that `make test` never passes with a tier silently missing.
set -euo pipefail
declare -A binary=([faketime]=faketime [chromium]=chromium)
missing=()
for pkg in "$@"; do
  command -v "${binary[$pkg]:-$pkg}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "error: the tests need the Debian packages ${missing[*]}: run 'sudo apt-get install ${missing[*]}' once" >&2
  exit 1
fi
echo "==> installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
