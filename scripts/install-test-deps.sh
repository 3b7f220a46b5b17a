#!/usr/bin/env bash
# Installs the Debian packages the test suite runs against: a real registry, real image tools.
set -euo pipefail
packages=(skopeo umoci buildah podman docker-registry apache2-utils openssl zstd tar xz-utils debootstrap util-linux time curl strace)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
