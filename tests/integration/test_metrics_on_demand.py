"""The simulator's usage samples are made when asked for (no round over every host on a
timer), and each host's samples hold its VMs' at the same instants."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.metrics import metrics_node, scrape
from tests.support.vmcloud import GiB, build_cloud


async def test_samples_are_made_when_asked_and_a_scrape_asks_for_all(
    tmp_path: Path, db_engine: str
) -> None:
    async with metrics_node(tmp_path / "home") as (node, api, cloud):
        other = await build_cloud(api, hosts=((8, 16 * GiB),), prefix="b")
        here = [await cloud.vm(f"vm-{i}") for i in range(2)]
        there = await other.vm("far")
        await asyncio.sleep(2.5)
        window = node.services["metrics"].window  # type: ignore[attr-defined]
        assert window.latest("vm") == {} and window.latest("host") == {}  # nothing on a timer

        host = await api("GetHostMetrics", uuid=cloud["h1"])
        assert len(host["samples"]) >= 1 and host["latest"]["cpuPercent"] > 0
        host_times = [s.time for s in window.samples(cloud["h1"])]
        for vm in here:  # the host's VMs were sampled with it, at the same instants
            times = [s.time for s in window.samples(vm["uuid"])]
            assert times and times == host_times[-len(times) :]
        assert window.samples(there["uuid"]) == []  # another host's VM: not asked, not made

        text = await scrape(node)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    seen = {s.labels["vm_uuid"] for s in families["zmn_vm_cpu_seconds"].samples}
    assert seen == {v["uuid"] for v in [*here, there]}  # the scrape made the rest
    hosts = {s.labels["host_uuid"] for s in families["zmn_host_memory_total_bytes"].samples}
    assert hosts == {cloud["h1"], other["h1"]}
