"""Rates from raw samples, and the window's bound."""

from __future__ import annotations

from zmn.services.metrics.window import MetricsWindow, Sample, host_rates, series, vm_rates


def test_vm_rates_are_per_second_and_cpu_is_a_share_of_the_vcpus() -> None:
    a = Sample(100.0, {"cpuTime": 0, "cpuNum": 2, "diskReadBytes": 1000, "netTxBytes": 0})
    b = Sample(110.0, {"cpuTime": 5e9, "cpuNum": 2, "diskReadBytes": 21000, "netTxBytes": 50,
                       "memoryUsed": 10, "memoryTotal": 20})  # fmt: skip
    r = vm_rates(a, b)
    assert r["cpuPercent"] == 25.0  # 5 s of CPU over 10 s on 2 vCPUs
    assert r["diskReadBytesPerSecond"] == 2000.0 and r["netTxBytesPerSecond"] == 5.0
    assert (r["memoryUsed"], r["memoryTotal"], r["time"]) == (10, 20, 110.0)


def test_a_counter_that_went_down_gives_no_rate() -> None:
    a = Sample(0.0, {"cpuTime": 9e9, "diskWriteBytes": 10})
    b = Sample(5.0, {"cpuTime": 1e9, "diskWriteBytes": 20})  # the domain restarted
    r = vm_rates(a, b)
    assert "cpuPercent" not in r and r["diskWriteBytesPerSecond"] == 2.0


def test_host_cpu_is_busy_over_total() -> None:
    a = Sample(0.0, {"cpuBusy": 10.0, "cpuTotal": 100.0})
    b = Sample(10.0, {"cpuBusy": 30.0, "cpuTotal": 180.0, "load1": 1.5})
    assert host_rates(a, b) == {"time": 10.0, "cpuPercent": 25.0, "load1": 1.5}


def test_the_window_keeps_the_last_samples_and_ignores_old_ones() -> None:
    w = MetricsWindow(3)
    for t in range(5):
        w.add("vm", "v", Sample(float(t), {"cpuTime": t * 1e9}))
    w.add("vm", "v", Sample(2.0, {"cpuTime": 0}))  # reordered: dropped
    assert [s.time for s in w.samples("v")] == [2.0, 3.0, 4.0]
    assert [r["cpuPercent"] for r in series(w.samples("v"), "vm")] == [100.0, 100.0]
    assert set(w.latest("vm")) == {"v"} and w.latest("host") == {}
    w.size = 2
    w.add("vm", "v", Sample(5.0, {}))
    assert [s.time for s in w.samples("v")] == [4.0, 5.0]
    w.forget("v")
    assert w.samples("v") == []


def test_resources_without_recent_samples_are_pruned() -> None:
    w = MetricsWindow(5)
    w.add("vm", "old", Sample(10.0, {}))
    w.add("host", "new", Sample(100.0, {}))
    assert w.prune(50.0) == 1
    assert w.samples("old") == [] and set(w.latest("host")) == {"new"}
