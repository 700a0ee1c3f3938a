#!/usr/bin/env bash
# `make demo`: start a management node on the embedded default (SQLite, in-process bus,
# simulator hosts) in ./.demo/home, build the reference cloud once, then open the dashboard
# on a terminal or print a summary. Safe to run again: it reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export ZMN_HOME="$PWD/.demo/home"
export ZMN_ENDPOINT="unix:$ZMN_HOME/zmn.sock"
export XDG_CONFIG_HOME="$PWD/.demo/config" XDG_CACHE_HOME="$PWD/.demo/cache"
bin="$PWD/.venv/bin"

"$bin/zmn" init | sed 's/^/  init: /'
if "$bin/zmn" status >/dev/null 2>&1; then
    echo "  the demo node is already running"
else
    "$bin/zmn" start
fi

if [ "$("$bin/zcli" -o value api QueryZone name=z1 count=true 2>/dev/null)" != "1" ]; then
    echo "  building the demo cloud (zone z1, cluster c1, 3 simulator hosts, storage, image, networks)"
    build_log="$ZMN_HOME/demo-build.log"
    "$bin/zcli" -q -f demo/cloud.zcli >/dev/null 2>"$build_log" || { cat "$build_log" >&2; exit 1; }
    echo "  creating a handful of VMs"
    "$bin/zcli" -q -f demo/vms.zcli >/dev/null 2>>"$build_log" || { cat "$build_log" >&2; exit 1; }
else
    echo "  the demo cloud exists already"
fi

if [ -t 1 ] && [ -x "$bin/ztui" ] && [ -z "${ZMN_DEMO_NO_TUI:-}" ]; then
    exec "$bin/ztui"
fi

echo
echo "== hosts"
"$bin/zcli" host list
echo
echo "== VMs"
"$bin/zcli" -c name,state,cpuNum,memorySize vm list
cat <<NEXT

The management node runs in the background on $ZMN_HOME. Try:

  export ZMN_HOME=$ZMN_HOME
  export PATH=$bin:\$PATH
  zcli zone list
  zcli api QueryHost cluster.zone.name=z1
  zcli vm list state=Running
  zcli shell            # interactive, with completion
  ztui                  # the live dashboard
  zcli -o json host get h1
  zmn status
  make demo-stop        # stop the node
NEXT
