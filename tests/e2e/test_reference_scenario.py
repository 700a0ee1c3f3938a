"""Issue 2's reference scenario from bash, every line, with ``-o json`` parsed as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import BIN, ZmnProcess

SCRIPT = r"""
set -euo pipefail
j() { zcli -o json api "$@"; }
uuid() { python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])'; }
Z=$(j CreateZone name=z1 | uuid)
C=$(j CreateCluster name=c1 zoneUuid=$Z hypervisorType=Simulator | uuid)
j AddSimulatorHost name=h1 managementIp=10.0.0.11 clusterUuid=$C cpuCapacity=32 memoryCapacity=68719476736 | uuid >/dev/null
P=$(j AddSimulatorPrimaryStorage name=ps1 zoneUuid=$Z url=/sim/ps totalCapacity=1099511627776 availableCapacity=1099511627776 | uuid)
j AttachPrimaryStorageToCluster primaryStorageUuid=$P clusterUuid=$C | python3 -m json.tool >/dev/null
B=$(j AddSimulatorBackupStorage name=bs1 url=/sim/bs totalCapacity=1099511627776 availableCapacity=1099511627776 | uuid)
j AttachBackupStorageToZone backupStorageUuid=$B zoneUuid=$Z | python3 -m json.tool >/dev/null
j AddImage name=img url=http://images.example/img.qcow2 format=qcow2 mediaType=RootVolumeTemplate backupStorageUuids=$B | uuid >/dev/null
j CreateInstanceOffering name=small cpuNum=1 memorySize=1073741824 | uuid >/dev/null
j CreateDiskOffering name=d10 diskSize=10737418240 | uuid >/dev/null
L2=$(j CreateL2NoVlanNetwork name=l2 zoneUuid=$Z physicalInterface=eth0 | uuid)
j CreateL2VlanNetwork name=l2v zoneUuid=$Z physicalInterface=eth0 vlan=100 | uuid >/dev/null
j AttachL2NetworkToCluster l2NetworkUuid=$L2 clusterUuid=$C | python3 -m json.tool >/dev/null
L3=$(j CreateL3Network name=l3 l2NetworkUuid=$L2 | uuid)
j AddIpRange name=r1 l3NetworkUuid=$L3 startIp=10.0.0.100 endIp=10.0.0.200 netmask=255.255.255.0 gateway=10.0.0.1 | uuid >/dev/null
j QueryZone name=z1 > "$OUT/zones.json"
echo "$Z" > "$OUT/zone-uuid"
"""


@pytest.fixture
def zmn(tmp_path: Path) -> Iterator[ZmnProcess]:
    proc = ZmnProcess(tmp_path / "home")
    assert proc.zmn("init").code == 0
    assert proc.zmn("start").code == 0
    yield proc
    proc.stop_quietly()


def test_reference_scenario_from_bash(zmn: ZmnProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    zmn.extra_env["OUT"] = str(out)
    zmn.extra_env["PATH"] = f"{BIN}:{os.environ['PATH']}"
    ran = zmn.run("bash", "-c", SCRIPT, timeout=180)
    assert ran.code == 0, ran.err
    zones = json.loads((out / "zones.json").read_text())
    assert isinstance(zones, list) and [z["name"] for z in zones] == ["z1"]
    assert zones[0]["uuid"] == (out / "zone-uuid").read_text().strip()


def test_bad_parameter_names_the_field_and_prints_nothing(zmn: ZmnProcess) -> None:
    bad = zmn.zcli("-o", "json", "api", "CreateZone", "nmae=z1")
    assert bad.code == 2
    assert bad.out == ""
    assert "nmae" in bad.err and "did you mean name" in bad.err
    wrong_type = zmn.zcli(
        "-o", "json", "api", "CreateInstanceOffering", "name=x", "cpuNum=two", "memorySize=1"
    )
    assert wrong_type.code == 2 and wrong_type.out == "" and "cpuNum" in wrong_type.err
