#!/usr/bin/env bash
# Installs what building the gateway's native Kafka driver (@confluentinc/kafka-javascript, with
# librdkafka inside) from source needs on Debian/Ubuntu: a C/C++ toolchain and the development
# files of the libraries librdkafka links against (zlib, OpenSSL, zstd, lz4, Cyrus SASL, curl).
# Then `CKJS_LINKING=dynamic npm ci` builds the driver (about 2-3 minutes on 2 cores).
# Idempotent: installs only the packages missing. Needs root (or sudo) and a Debian mirror.
# Usage: bash deploy/local/install-native-deps.sh
set -euo pipefail

PACKAGES=(build-essential python3 zlib1g-dev libssl-dev libzstd-dev liblz4-dev libsasl2-dev libcurl4-openssl-dev)

say() { printf 'install-native-deps: %s\n' "$*"; }
die() { printf 'install-native-deps: FAILED: %s\n' "$*" >&2; exit 1; }

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script is for Debian/Ubuntu; install the equivalents of: ${PACKAGES[*]}"
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  say "all present: ${PACKAGES[*]}"
  exit 0
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install as root: apt-get install ${missing[*]}"
  SUDO=(sudo)
fi
say "installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
  say "apt-get install failed; updating the package lists and trying once more"
  "${SUDO[@]}" apt-get update || die "apt-get update failed"
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
say "done"
