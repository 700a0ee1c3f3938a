#!/usr/bin/env bash
# Create the virtualenv and install the project with its development tools. The agent's
# libvirt-python is added when libvirt's headers are present (scripts/system-deps.sh installs
# them when run as root), so a plain `pip install .` never needs them.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
extras="dev"
if pkg-config --exists libvirt 2>/dev/null; then
    extras="dev,agent"
fi
"$venv/bin/python" -m pip install -q -e ".[$extras]"
echo "installed the project into $venv (extras: $extras)"
