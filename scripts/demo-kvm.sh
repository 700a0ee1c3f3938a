#!/usr/bin/env bash
# `make demo-kvm` (root): two namespaced KVM hosts and an image store on this machine, a
# management node in ./.demo-kvm/home, the guest image built from Debian packages and two
# running VMs; prints how to log into one (ssh) and open the other's console.
# `make demo-kvm-stop` (or `scripts/demo-kvm.sh stop`) takes it all down.
set -euo pipefail
cd "$(dirname "$0")/.."
exec env PYTHONPATH="$PWD" .venv/bin/python demo/kvm.py "${1:-start}"
