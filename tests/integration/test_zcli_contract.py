"""The script contract: what zcli prints into a pipe and in ``-o json|yaml|csv|value`` stays
byte for byte what it printed before the tables for people (issue 15, item 2).

A fixed cloud (client-chosen UUIDs) is built through ``zcli -f``; then every resource type's
``list`` and ``get`` in ``-o json``, and a set of piped tables, csv, value and yaml outputs,
are compared with files recorded before the change, after replacing what differs between
runs (generated UUIDs, dates, MAC addresses) by placeholders numbered in order of appearance.
Regenerate with ``ZCLI_RECORD=1`` only when the contract is meant to change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.integration.test_zcli import Zcli, zcli  # noqa: F401 - the fixture
from tests.support.snapshots import check as snapshot

SNAP = Path(__file__).resolve().parents[1] / "snapshots" / "zcli_contract"
# types whose rows grow with every call the test makes (audit) or whose rows are made by
# each connection (sessions): their list is not stable; their get still is (jobs)
VOLATILE_LISTS = ("audit-log", "session", "job")

CLOUD = """\
api CreateZone name=z1 resourceUuid=a0000000000000000000000000000001
api CreateCluster name=c1 zoneUuid=z1 hypervisorType=Simulator resourceUuid=a0000000000000000000000000000002
api AddSimulatorHost name=h1 managementIp=10.0.0.11 clusterUuid=c1 cpuCapacity=32 memoryCapacity=68719476736 resourceUuid=a0000000000000000000000000000003
api AddSimulatorHost name=h2 managementIp=10.0.0.12 clusterUuid=c1 cpuCapacity=16 memoryCapacity=34359738368 resourceUuid=a0000000000000000000000000000004
api AddSimulatorPrimaryStorage name=ps1 zoneUuid=z1 url=/sim/ps totalCapacity=10995116277760 availableCapacity=10995116277760 resourceUuid=a0000000000000000000000000000005
api AttachPrimaryStorageToCluster primaryStorageUuid=ps1 clusterUuid=c1
api AddSimulatorBackupStorage name=bs1 url=/sim/bs totalCapacity=1099511627776 availableCapacity=1099511627776 resourceUuid=a0000000000000000000000000000006
api AttachBackupStorageToZone backupStorageUuid=bs1 zoneUuid=z1
api AddImage name=img url=http://images.example/ttylinux.qcow2 format=qcow2 mediaType=RootVolumeTemplate backupStorageUuids=bs1 resourceUuid=a0000000000000000000000000000007
api CreateInstanceOffering name=small cpuNum=1 memorySize=1073741824 resourceUuid=a0000000000000000000000000000008
api CreateDiskOffering name=d10 diskSize=10737418240 resourceUuid=a0000000000000000000000000000009
api CreateL2NoVlanNetwork name=l2 zoneUuid=z1 physicalInterface=eth0 resourceUuid=a0000000000000000000000000000010
api AttachL2NetworkToCluster l2NetworkUuid=l2 clusterUuid=c1
api CreateL3Network name=l3 l2NetworkUuid=l2 resourceUuid=a0000000000000000000000000000011
api AddIpRange name=r1 l3NetworkUuid=l3 startIp=10.0.0.100 endIp=10.0.0.200 netmask=255.255.255.0 gateway=10.0.0.1 resourceUuid=a0000000000000000000000000000012
api CreateVmInstance name=web1 imageUuid=img instanceOfferingUuid=small l3NetworkUuids=l3 resourceUuid=a0000000000000000000000000000013
api CreateSecurityGroup name=sg1 resourceUuid=a0000000000000000000000000000014
api CreateDataVolume name=data1 diskOfferingUuid=d10 resourceUuid=a0000000000000000000000000000015
"""

PIPED = [
    "zone list",
    "host list",
    "vm list",
    "vm-nic list",
    "volume list type=Root",
    "l3-network list",
    "instance-offering list",
    "vm get web1",
    "host get h1",
    "-o csv vm list",
    "-o value host list",
    "-o yaml vm list",
    "-o yaml zone get z1",
    "-o csv -c name,state,memorySize vm list",
    "--no-header volume list type=Data",
    "-q vm list",
]

_UUID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
_MAC = re.compile(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}")
_TMP = re.compile(r"/[^\s\"']*/pytest-\d+/(?:popen-gw\d+/)?[^/\s\"']+")  # xdist adds popen-gwN
_PID = re.compile(r'"pid": \d+|pid: \d+')


def normalise(text: str) -> str:
    seen: dict[str, str] = {}

    def uuid(m: re.Match[str]) -> str:
        value = m.group(0)
        if value.startswith("a00000000000000000000000000000"):
            return value  # a UUID the cloud chose: stable
        return seen.setdefault(value, f"<uuid{len(seen) + 1}>")

    text = _UUID.sub(uuid, text)
    text = _DATE.sub("<date>", text)
    text = _MAC.sub("<mac>", text)
    text = _PID.sub("<pid>", text)
    text = _TMP.sub("<tmp>", text)
    return text


def check(name: str, text: str) -> None:
    snapshot(SNAP / name, text, "; the contract says it must not")


def dump(doc: object) -> str:
    """What ``-o json`` prints for one result."""
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def canonical(out: str) -> str:
    """The batch's documents after checking they are printed exactly as :func:`dump` does,
    the rows of each list in an order that does not depend on generated UUIDs (the node
    orders by UUID by default)."""
    docs = batch_outputs(out)
    assert out == "".join(dump(d) for d in docs)

    def key(row: object) -> str:
        return _DATE.sub("", _UUID.sub("", dump(row)))

    return "".join(dump(sorted(d, key=key) if isinstance(d, list) else d) for d in docs)


def batch_outputs(out: str) -> list[object]:
    """The JSON documents a batch of ``-o json`` lines printed, one after the other."""
    decoder = json.JSONDecoder()
    docs, i = [], 0
    while i < len(out):
        doc, i = decoder.raw_decode(out, i)
        docs.append(doc)
        while i < len(out) and out[i].isspace():
            i += 1
    return docs


async def test_json_list_and_get_of_every_resource_unchanged(zcli: Zcli) -> None:  # noqa: F811
    await zcli.ok("-f", "-", stdin=CLOUD)
    cat = (await zcli.ok("-o", "json", "api", "GetApiCatalogue")).json()["catalogue"]
    query_apis = {a["name"] for a in cat["apis"]}
    kinds = [r["cli"] for r in cat["resources"] if f"Query{r['name']}" in query_apis]
    assert len(kinds) > 20 and "vm" in kinds

    lists = "".join(f"-o json {k} list\n" for k in kinds)
    ran = await zcli.ok("-f", "-", stdin=lists)
    docs = batch_outputs(ran.out)
    assert len(docs) == len(kinds)
    gets = []
    for kind, rows in zip(kinds, docs, strict=True):
        assert isinstance(rows, list)
        rows = [r for r in rows if isinstance(r, dict) and r.get("uuid")]
        names = [r.get("name") for r in rows]
        # a row that is the same in every run: a UUID the cloud chose, else a unique name
        rows.sort(
            key=lambda r: (
                not r["uuid"].startswith("a000"),
                names.count(r.get("name")),
                str(r.get("name")),
            )
        )
        if rows and (rows[0]["uuid"].startswith("a000") or names.count(rows[0].get("name")) == 1):
            gets.append(f"-o json {kind} get {rows[0]['uuid']}\n")
    assert len(gets) > 15
    stable = "".join(f"-o json {k} list\n" for k in kinds if k not in VOLATILE_LISTS)
    listed = await zcli.ok("-f", "-", stdin=stable)
    check("json_lists.txt", normalise(canonical(listed.out)))
    got = await zcli.ok("-f", "-", stdin="".join(gets))
    check("json_gets.txt", normalise(canonical(got.out)))


async def test_piped_tables_and_text_formats_unchanged(zcli: Zcli) -> None:  # noqa: F811
    await zcli.ok("-f", "-", stdin=CLOUD)
    parts = []
    for line in PIPED:
        run = await zcli.ok(*line.split())
        parts.append(f"$ zcli {line}\n{run.out}")
    check("piped.txt", normalise("".join(parts)))
