"""The agent's usage samples: /proc parsing and libvirt's bulk domain stats."""

from __future__ import annotations

import os
from pathlib import Path

from agent.drivers.fake import FakeDriver
from agent.metrics import MetricsSampler, from_domain_stats, host_usage


def test_host_usage_reads_cpu_memory_and_load_from_proc(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    (tmp_path / "meminfo").write_text(
        "MemTotal:       2048 kB\nMemFree:         512 kB\nMemAvailable:   1024 kB\n"
    )
    (tmp_path / "loadavg").write_text("0.50 0.25 0.10 1/100 4242\n")
    hz = os.sysconf("SC_CLK_TCK")
    got = host_usage(tmp_path)
    assert got["cpuTotal"] == 1000 / hz and got["cpuBusy"] == 150 / hz  # idle+iowait left out
    assert (got["memoryTotal"], got["memoryUsed"]) == (2048 * 1024, 1024 * 1024)
    assert (got["load1"], got["load5"], got["load15"]) == (0.5, 0.25, 0.1)


def test_domain_stats_sum_disks_and_nics_and_prefer_the_guests_memory_view() -> None:
    rec = {
        "cpu.time": 7_000_000_000, "vcpu.current": 2,
        "balloon.current": 1024, "balloon.maximum": 2048, "balloon.rss": 900,
        "block.count": 2, "block.0.rd.bytes": 10, "block.1.rd.bytes": 5, "block.0.wr.reqs": 3,
        "net.count": 1, "net.0.rx.bytes": 100, "net.0.tx.bytes": 40,
    }  # fmt: skip
    got = from_domain_stats(rec)
    assert got == {
        "cpuTime": 7e9, "cpuNum": 2.0, "memoryTotal": 1024 * 1024.0,
        "memoryUsed": 900 * 1024.0, "diskReadBytes": 15.0, "diskWriteOps": 3.0,
        "netRxBytes": 100.0, "netTxBytes": 40.0,
    }  # fmt: skip
    rec.update({"balloon.available": 1000, "balloon.unused": 400})
    assert from_domain_stats(rec)["memoryUsed"] == 600 * 1024.0


def test_the_sampler_reports_the_host_and_running_domains() -> None:
    sent: list[tuple[str, dict]] = []

    class Rec:
        def submit(self, kind: str, payload: dict) -> None:
            sent.append((kind, payload))

    driver = FakeDriver()
    sampler = MetricsSampler(driver, Rec(), 0.05)
    sampler.start()
    try:
        import time

        deadline = time.monotonic() + 5
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sampler.stop()
    kind, payload = sent[0]
    assert kind == "metrics" and payload["vms"] == {} and payload["host"]["memoryTotal"] > 0
    off = MetricsSampler(driver, Rec(), 0)
    off.start()
    assert off._thread is None  # interval 0: no reports
