"""Usage metrics of a simulator cloud: rates by API and the Prometheus endpoint, scraped and
parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.inproc import Api, running_node
from tests.support.metrics import metrics_node, scrape
from tests.support.vmcloud import GiB, build_cloud
from zmn.api.errors import NotFound


async def test_simulated_usage_is_served_as_rates_and_scraped_by_prometheus(
    tmp_path: Path,
) -> None:
    async with metrics_node(tmp_path / "home") as (node, api, cloud):
        vms = [await cloud.vm(f"vm-{i}") for i in range(2)]
        await asyncio.sleep(3.6)  # three synthetic rounds at least

        got = await api("GetVmMetrics", uuid="vm-0")  # a name resolves like any VM reference
        assert got["uuid"] == vms[0]["uuid"] and got["hostUuid"] == cloud["h1"]
        latest = got["latest"]
        assert 0 < latest["cpuPercent"] <= 90
        assert latest["diskReadBytesPerSecond"] > 0 and latest["netRxBytesPerSecond"] > 0
        assert 0 < latest["memoryUsed"] <= latest["memoryTotal"] == GiB
        assert len(got["samples"]) >= 2 and got["samples"][-1] == latest
        host = await api("GetHostMetrics", uuid="h1")
        assert 0 < host["latest"]["cpuPercent"] <= 100
        assert host["latest"]["memoryTotal"] == 16 * GiB and host["latest"]["cpuNum"] == 8

        # the window is bounded by global config
        await api("UpdateGlobalConfig", category="metrics", name="window.samples", value="2")
        await asyncio.sleep(1.5)
        assert len((await api("GetVmMetrics", uuid="vm-0"))["samples"]) == 1

        text = await scrape(node)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    info = families["zmn_node_info"].samples[0]
    assert info.labels["node"] == node.uuid and info.value == 1
    cpu = families["zmn_vm_cpu_seconds"]
    assert cpu.type == "counter"
    seen = {s.labels["vm_uuid"]: s for s in cpu.samples if s.name == "zmn_vm_cpu_seconds_total"}
    assert set(seen) == {v["uuid"] for v in vms}
    assert all(s.value > 0 and s.labels["host_uuid"] == cloud["h1"] for s in seen.values())
    mem = families["zmn_host_memory_total_bytes"].samples
    assert [(s.labels["host_uuid"], s.value) for s in mem] == [(cloud["h1"], 16 * GiB)]
    assert families["zmn_node_api_calls"].samples[0].value > 0


async def test_metrics_of_an_unknown_vm_are_refused_like_any_vm_reference(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        await build_cloud(api, hosts=((8, 16 * GiB),))
        with pytest.raises(NotFound) as missing:
            await api("GetVmMetrics", uuid="no-such-vm")
        assert missing.value.code == "VM_INSTANCE.NOT_FOUND"
        vm = await (await build_cloud(api, prefix="b")).vm("fresh")
        got = await api("GetVmMetrics", uuid=vm["uuid"])  # not sampled yet: empty, not an error
        assert (got["latest"], got["samples"]) == (None, [])


async def test_zcli_vm_top_and_host_top_sort_by_usage(tmp_path: Path) -> None:
    from tests.integration.test_zcli import Zcli

    async with running_node(tmp_path / "home") as (node, server):
        api = Api(node)
        await api("UpdateGlobalConfig", category="metrics", name="simulator.interval", value="1")
        cloud = await build_cloud(api, hosts=((8, 16 * GiB), (8, 16 * GiB)))
        for i in range(3):
            await cloud.vm(f"vm-{i}")
        await asyncio.sleep(2.6)
        zcli = Zcli(tmp_path, node, server)
        got = await zcli("-o", "json", "vm", "top", "--limit", "2")
        assert got.rc == 0, got.err
        rows = json.loads(got.out)
        assert len(rows) == 2 and all(r["name"].startswith("vm-") for r in rows)
        assert rows[0]["cpuPercent"] >= rows[1]["cpuPercent"] > 0
        table = await zcli("vm", "top", "--sort", "memory", f"hostUuid={cloud['h1']}")
        assert table.rc == 0 and "CPU%" in table.out.splitlines()[0], table.err
        listed = [ln.split()[0] for ln in table.out.splitlines()[2:]]
        on_h1 = (await api("QueryVmInstance", conditions=[f"hostUuid={cloud['h1']}"]))[
            "inventories"
        ]
        assert sorted(listed) == sorted(v["name"] for v in on_h1)
        hosts = json.loads((await zcli("-o", "json", "host", "top", "--sort", "load")).out)
        loads = [h["load1"] for h in hosts]
        assert loads == sorted(loads, reverse=True)
        assert {h["name"] for h in hosts} == {"h1", "h2"}
        bad = await zcli("vm", "top", "--sort", "colour")
        assert bad.rc == 2 and "--sort is one of cpu, memory, disk, net" in bad.err
