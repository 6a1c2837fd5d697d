#!/usr/bin/env bash
# Installs the Debian packages that building, testing and benchmarking
# peercache need. Safe to run again: apt-get skips what is present.
set -euo pipefail

packages=(
  build-essential pkg-config meson ninja-build
  libzmq3-dev libmsgpack-dev libsodium-dev liburcu-dev libcriterion-dev
  redis-tools redis-server netcat-openbsd python3
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
