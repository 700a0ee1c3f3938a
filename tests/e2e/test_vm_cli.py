"""The VM life cycle driven from bash with zcli against a real ``zmn init && zmn start`` node.

The reference cloud comes from ``demo/cloud.zcli``; the script then runs a VM through create,
stop, start, reboot, pause, resume, migrate, cold stop, destroy (Delay policy), recover and
expunge, with a data volume and a snapshot, checking states with ``-o value``, exit statuses
(4 for an operation the state does not allow, 3 for a VM that is gone, 124 for a wait that
ran out), the progress lines on stderr and ``--no-wait``. CheckConsistency must be empty.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import BIN, ZmnProcess

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
# run a verb printing only the VM's new state, and check it
op() { want=$1; shift; got=$(zcli -o value -c state vm "$@" 2>/dev/null) || fail "vm $*";
       [ "$got" = "$want" ] || fail "vm $*: $got, expected $want"; }

out=$(zcli -o value -c state,hostUuid,vmNics vm create web-1 imageUuid=img \
      instanceOfferingUuid=small l3NetworkUuids=l3 systemTags=hostname::web1 2>progress.txt) \
    || fail create
grep -q "CreateVmInstance: .*vm-allocate-nics" progress.txt || fail "no progress line"
read -r state host nics <<<"$out"
[ "$state" = Running ] || fail "created $state"
[[ $nics == *'"ip":"10.0.0.'* ]] || fail "no address in $nics"
echo "created=$state"

op Stopped stop web-1
zcli vm pause web-1 >/dev/null 2>err.txt; rc=$?
[ $rc -eq 4 ] || fail "pausing a stopped VM exited $rc"
grep -q "in state Stopped" err.txt || fail "the error does not name the state"
echo "pause-stopped=$rc"
op Running start web-1
op Running reboot web-1
op Paused pause web-1
op Running resume web-1
moved=$(zcli -o value -c hostUuid,lastHostUuid vm migrate web-1 2>/dev/null) || fail migrate
[ "$moved" = "$(printf '%s\t%s' "${moved%%$'\t'*}" "$host")" ] || fail "migrate: $moved"
[ "${moved%%$'\t'*}" != "$host" ] || fail "did not move"

job=$(zcli --no-wait vm reboot web-1)
[[ $job =~ ^[0-9a-f]{32}$ ]] || fail "--no-wait printed $job"
zcli -o value -c state job wait "$job" | grep -qx Succeeded || fail "job $job"

zcli host inject-failure "${moved%%$'\t'*}" operation=stop latency=1.5 >/dev/null || fail inject
zcli --timeout 0.3 vm stop web-1 >/dev/null 2>err.txt; rc=$?
[ $rc -eq 124 ] || fail "--timeout exited $rc"
echo "timeout=$rc"
sleep 1.5

zcli volume create data-1 diskOfferingUuid=d10 >/dev/null || fail "volume create"
dev=$(zcli -o value -c deviceId volume attach data-1 vmInstanceUuid=web-1 2>/dev/null)
[ "$dev" = 1 ] || fail "attach: device $dev"
zcli volume-snapshot create volumeUuid=data-1 name=snap-1 >/dev/null 2>&1 || fail snapshot
zcli volume detach data-1 >/dev/null 2>&1 || fail detach
zcli volume delete data-1 >/dev/null 2>&1 || fail "volume delete"

zcli api UpdateGlobalConfig category=vm name=deletionPolicy value=Delay >/dev/null || fail config
op Running start web-1
op Destroyed destroy web-1
op Stopped recover web-1
op Destroyed destroy web-1
zcli vm expunge web-1 >/dev/null 2>&1 || fail expunge
zcli vm get web-1 >/dev/null 2>&1; rc=$?
[ $rc -eq 3 ] || fail "a gone VM exited $rc"
echo "gone=$rc"
zcli -o json api CheckConsistency
"""


@pytest.fixture
def zmn(tmp_path: Path) -> Iterator[ZmnProcess]:
    proc = ZmnProcess(tmp_path / "home")
    yield proc
    proc.stop_quietly()


def test_vm_life_cycle_from_bash(zmn: ZmnProcess, tmp_path: Path) -> None:
    assert zmn.zmn("init").code == 0
    started = zmn.zmn("start")
    assert started.code == 0, started.err + started.out
    built = zmn.zcli("-q", "-f", str(ROOT / "demo" / "cloud.zcli"), timeout=120)
    assert built.code == 0, built.err
    env = {**zmn.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        ["bash", "-c", SCRIPT],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "pause-stopped=4" in lines and "timeout=124" in lines and "gone=3" in lines
    assert "created=Running" in lines
    report = json.loads(run.stdout[run.stdout.index("{") :])
    assert report == {"violations": []}
