"""IP capacity per zone and per cluster: used and total addresses of the L3 networks' ranges.

The catalogue has no capacity field pair for addresses (a range's size is ``endIp -
startIp + 1``; its use is a count of ``UsedIp`` rows), so this one metric names its types:

* total of an L3 = the sizes of its ``IpRange`` rows; used = its ``UsedIp`` rows
  (``QueryUsedIp groupBy=l3NetworkUuid``, one query);
* a zone counts the L3s whose ``zoneUuid`` it is;
* a cluster counts the L3s on the L2 networks attached to it (``QueryCluster
  l2Network.uuid=…``, one query per L2 that carries a range).

About ``3 + L2s`` queries per refresh, whatever the number of VMs.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tui.catalogue import Metric
from tui.data import DataSource
from zmn.api.errors import ZmnError

LABEL = "ip"
NEEDED = ("IpRange", "UsedIp", "L3Network", "Cluster")
METRIC = Metric("L3Network", LABEL, "", "", "count")
ROWS = 100_000


@dataclass
class IpSums:
    # (container type, uuid) -> [used, total]
    sums: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0.0, 0.0])
    )
    cluster_zone: dict[str, str] = field(default_factory=dict)


def range_size(start: str, end: str) -> int:
    try:
        return max(0, int(ipaddress.ip_address(end)) - int(ipaddress.ip_address(start)) + 1)
    except ValueError:
        return 0


async def ip_sums(data: DataSource, parallel: int = 8) -> IpSums | None:
    """None when the node has no IP ranges to speak of (types missing, or an error)."""
    catalogue = data.catalogue
    if catalogue is None or not all(
        t in catalogue.resources and catalogue.resources[t].query_api for t in NEEDED
    ):
        return None
    try:
        ranges = await data.query(
            "IpRange", limit=ROWS, fields=["l3NetworkUuid", "startIp", "endIp"], count=False
        )
        if not ranges.rows:
            return IpSums()
        used = await data.groups("UsedIp", "l3NetworkUuid")
        l3s = await data.query(
            "L3Network", limit=ROWS, fields=["uuid", "zoneUuid", "l2NetworkUuid"], count=False
        )
    except ZmnError:
        return None
    total: dict[str, int] = defaultdict(int)
    for r in ranges.rows:
        total[str(r.get("l3NetworkUuid"))] += range_size(str(r.get("startIp")), str(r.get("endIp")))
    out = IpSums()
    by_l2: dict[str, list[str]] = defaultdict(list)
    for l3 in l3s.rows:
        uuid = str(l3.get("uuid"))
        if uuid not in total:
            continue
        if l3.get("zoneUuid"):
            pair = out.sums[("Zone", str(l3["zoneUuid"]))]
            pair[0] += used.get(uuid, 0)
            pair[1] += total[uuid]
        if l3.get("l2NetworkUuid"):
            by_l2[str(l3["l2NetworkUuid"])].append(uuid)
    gate = asyncio.Semaphore(parallel)

    async def clusters_of(l2: str) -> list[dict[str, Any]]:
        async with gate:
            page = await data.query(
                "Cluster",
                [f"l2Network.uuid={l2}"],
                limit=ROWS,
                fields=["uuid", "zoneUuid"],
                count=False,
            )
            return page.rows

    found = await asyncio.gather(*(clusters_of(l2) for l2 in by_l2), return_exceptions=True)
    for l2, clusters in zip(by_l2, found, strict=True):
        if isinstance(clusters, BaseException):
            continue
        for c in clusters:
            pair = out.sums[("Cluster", str(c["uuid"]))]
            for l3_uuid in by_l2[l2]:
                pair[0] += used.get(l3_uuid, 0)
                pair[1] += total[l3_uuid]
            if c.get("zoneUuid"):
                out.cluster_zone[str(c["uuid"])] = str(c["zoneUuid"])
    return out
