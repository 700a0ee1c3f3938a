#!/usr/bin/env bash
# System packages the suite needs. Installed only when running as root and missing; as another
# user it prints what is missing and carries on (tests that need them skip, or fail in CI).
set -euo pipefail
packages=(tmux pkg-config libvirt-dev libvirt-clients libxml2-utils dnsmasq-base nftables iproute2 bridge-utils zsh fish man-db groff-base
    openssh-server openssh-client libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils
    stress-ng python3-venv python3-libvirt python3-yaml mariadb-client postgresql-client)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "system packages missing (install them as root): ${missing[*]}" >&2
    exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
