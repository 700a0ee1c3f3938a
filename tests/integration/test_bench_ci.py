"""The benchmark harness at CI sizes (`python -m bench --ci`): every benchmark still runs.

It starts real node processes, so it is the slowest integration test; what it guards is that
no benchmark rots: each family produces finite, positive figures next to their baselines,
and every call a benchmark made succeeded.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# every benchmark the --ci run must produce (family, name)
EXPECTED = {
    ("cli", "zone_list_json"),
    ("cli", "api_query_count"),
    ("batch", "zcli_batch_serial"),
    ("batch", "zcli_batch_parallel"),
    ("api", "ping_rtt"),
    ("api", "ping_concurrent"),
    ("vm", "single_create_p50"),
    ("vm", "create_throughput"),
    ("vm", "create_p95_under_load"),
    ("vm", "create_node_cpu"),
    ("jobs", "memory_per_job"),
    ("bus", "local_bus_request_reply"),
    ("query", "bulk_load"),
    ("query", "get_by_uuid"),
    ("query", "join3_count"),
    ("query", "count_by_state"),
    ("query", "first_page"),
    ("query", "deep_page"),
    ("tracking", "ping_cpu_share"),
    ("tracking", "boot_to_idle"),
    ("tracking", "ping_cpu_share_100_vms"),
    ("tracking", "boot_to_idle_100_vms"),
    ("tracking", "ping_cpu_share_1k_vms"),
    ("tracking", "boot_to_idle_1k_vms"),
    ("stress", "drain_time"),
    ("stress", "node_rss_peak"),
    *(
        ("growth", f"{figure}_{level}")
        for figure in (
            "create_throughput",
            "create_p95",
            "create_cpu",
            "alloc_host",
            "alloc_ip",
            "query_name",
            "query_prefix",
            "join3_count",
        )
        for level in ("0", "100", "1k")
    ),
}
BASELINES = {
    "python_pass",
    "insert_single",
    "insert_bulk",
    "socket_rtt",
    "socket_rtt_concurrent",
    "lean_create",
    "lean_create_concurrent",
    "asyncclient_batch_create",
    "direct_await",
    "sql_get_by_uuid",
    "sql_join3_count",
    "sql_group_by_state",
    "sql_keyset_page",
}


@dataclass
class CiRun:
    proc: subprocess.CompletedProcess[str]
    data: dict[str, Any]
    report: str
    work: Path


# the whole CI bench run is one module fixture: about 160 s on a quiet machine, more than the
# suite's 300 s per test when the cores are shared (it timed out beside stress-ng --cpu 2)
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> CiRun:
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMN_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--ci",
            "--workdir",
            str(out / "work"),
            "--out",
            str(out / "benchmarks.md"),
            "--json",
            str(out / "results.json"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    data = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    report = (out / "benchmarks.md").read_text() if (out / "benchmarks.md").exists() else ""
    return CiRun(proc, data, report, out / "work")


def _sane(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_ci_run_succeeds_and_leaves_no_node(ci_run: CiRun) -> None:
    proc, data = ci_run.proc, ci_run.data
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert data["ok"] is True and data["ci"] is True
    crashed = [s for s in data["skipped"] if s["name"] == "(family)"]
    assert crashed == [], crashed
    for pid_file in ci_run.work.glob("*/home/zmn.pid"):
        pid = int(pid_file.read_text())
        assert not Path(f"/proc/{pid}").exists(), f"node {pid} of {pid_file} still runs"


@pytest.mark.slow
def test_every_benchmark_has_sane_numbers_and_full_success(ci_run: CiRun) -> None:
    data = ci_run.data
    got = {(r["family"], r["name"]): r for r in data["results"]}
    assert EXPECTED <= set(got), sorted(EXPECTED - set(got))
    for key, r in got.items():
        if key[0] == "tracking" and key[1].startswith("ping_cpu_share") and r["value"] == 0.0:
            # one round of the CI size's 200 hosts costs about one 10 ms clock tick of CPU:
            # the window may count none (it did, loaded); the round itself is checked below
            assert "holding 1 ping round(s)" in r["note"], r["note"]
            continue
        assert _sane(r["value"]), (key, r["value"])
        if r["tried"] is not None:
            assert r["tried"] > 0, key
            assert r["success"] == 1.0, (key, r["errors"])
        if r["baseline"] is not None:
            assert _sane(r["baselineValue"]) and _sane(r["ratio"]), key
    # the completion benchmark runs when `zcli __complete` exists, else it is reported as skipped
    assert ("cli", "complete") in got or any(s["name"] == "complete" for s in data["skipped"])


@pytest.mark.slow
def test_baselines_are_measured_in_the_same_run(ci_run: CiRun) -> None:
    data = ci_run.data
    baselines = {b["name"]: b for b in data["baselines"]}
    assert BASELINES <= set(baselines), sorted(BASELINES - set(baselines))
    for name in BASELINES:
        assert _sane(baselines[name]["value"]), name
        if baselines[name]["tried"]:
            assert baselines[name]["success"] == 1.0, (name, baselines[name]["errors"])
    # the lean reference is what the VM figures are divided by
    vm = {r["name"]: r for r in data["results"] if r["family"] == "vm"}
    assert vm["single_create_p50"]["baseline"] == "lean_create"
    assert vm["create_throughput"]["baseline"] == "lean_create_concurrent"
    batch = {r["name"]: r for r in data["results"] if r["family"] == "batch"}
    assert {r["baseline"] for r in batch.values()} == {"asyncclient_batch_create"}


@pytest.mark.slow
def test_correctness_checks_inside_the_benchmarks_held(ci_run: CiRun) -> None:
    data = ci_run.data
    got = {(r["family"], r["name"]): r for r in data["results"]}
    bus = got[("bus", "local_bus_request_reply")]
    assert "0 violation(s)" in bus["note"]
    assert bus["success"] == 1.0, bus["errors"]
    # The goal's absolute rate (>= 20,000 msgs/s) is for `make bench` on a quiet machine; here
    # the suite shares the cores with other workers (it missed the goal under ordinary load),
    # so the bus is held against the direct await measured in the same run, which the same
    # load slows alike (0.9x on a quiet machine).
    assert bus["ratio"] >= 0.2, bus
    tracked = got[("tracking", "ping_cpu_share")]["note"]
    hosts = data["sizes"]["track_hosts"]
    assert f"{hosts:,}/{hosts:,} hosts Connected" in tracked
    stress = got[("stress", "drain_time")]
    n = data["sizes"]["stress_vms"]
    assert (
        f"{n:,}/{n:,} requests answered, 0 error(s); 0 consistency violation(s)" in stress["note"]
    ), stress["note"]
    assert f"{n:,} VMs in the database" in stress["note"], stress["note"]
    # the join count's answer is the same at every level: only the tables around it grow
    fixed = data["sizes"]["growth_fixed"]
    for level in ("0", "100", "1k"):
        assert f"count=true` = {fixed} " in got[("growth", f"join3_count_{level}")]["note"]
    jobs = got[("jobs", "memory_per_job")]
    assert f"{data['sizes']['jobs']:,} jobs in flight at once" in jobs["note"]


@pytest.mark.slow
def test_report_describes_the_machine_and_every_family(ci_run: CiRun) -> None:
    report = ci_run.report
    for heading in (
        "## Machine",
        "## Baselines",
        "## Cold CLI",
        "## Batch creates through zcli",
        "## VM create",
        "## In-process bus",
        "## Query at scale",
        "## API jobs in flight",
        "## Host tracking",
        "## Flat cost growth",
        "## Stress: concurrent creates (ZStack's test on one node)",
        "## Sizes",
    ):
        assert heading in report, heading
    # the growth curve is drawn next to the report, from the run's results
    assert "![each growth figure against the VMs already in the database](growth.png)" in report
    png = (ci_run.work.parent / "growth.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    for row in ("| CPU |", "| cores |", "| memory |", "| kernel |", "| Python |", "| database |"):
        assert row in report, row
    assert (
        "| benchmark | size | figure | baseline (same run) | ratio | goal | p50 ms | p95 ms | p99 ms"
        in report
    )
