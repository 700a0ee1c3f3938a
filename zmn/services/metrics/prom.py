"""The Prometheus exposition (``metrics.listen`` in zmn.conf), through ``prometheus_client``.

A collector reads the node's statistics and the latest sample of every host and VM at each
scrape (first asking the node for the simulator's samples, which are made when asked for): counters stay counters (``*_total``: Prometheus computes the rates), memory and load
are gauges. Served by ``prometheus_client``'s own HTTP server in a daemon thread, on a
registry of its own (not the process-global one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from zmn.services.metrics.window import MetricsWindow

log = logging.getLogger("zmn.metrics")

HOST = [  # (raw field, metric name, help, counter?, scale)
    ("cpuBusy", "zmn_host_cpu_busy_seconds", "CPU time the host spent busy", True, 1.0),
    ("cpuTotal", "zmn_host_cpu_seconds", "CPU time of all the host's CPUs", True, 1.0),
    ("memoryUsed", "zmn_host_memory_used_bytes", "memory in use", False, 1.0),
    ("memoryTotal", "zmn_host_memory_total_bytes", "memory installed", False, 1.0),
    ("load1", "zmn_host_load1", "load average over 1 minute", False, 1.0),
    ("load5", "zmn_host_load5", "load average over 5 minutes", False, 1.0),
    ("load15", "zmn_host_load15", "load average over 15 minutes", False, 1.0),
]
VM = [
    ("cpuTime", "zmn_vm_cpu_seconds", "CPU time the VM used", True, 1e-9),
    ("memoryUsed", "zmn_vm_memory_used_bytes", "memory the guest uses", False, 1.0),
    ("memoryTotal", "zmn_vm_memory_total_bytes", "memory the VM has", False, 1.0),
    ("diskReadBytes", "zmn_vm_disk_read_bytes", "bytes read from the VM's disks", True, 1.0),
    ("diskWriteBytes", "zmn_vm_disk_write_bytes", "bytes written to its disks", True, 1.0),
    ("diskReadOps", "zmn_vm_disk_read_ops", "read requests on its disks", True, 1.0),
    ("diskWriteOps", "zmn_vm_disk_write_ops", "write requests on its disks", True, 1.0),
    ("netRxBytes", "zmn_vm_network_receive_bytes", "bytes its NICs received", True, 1.0),
    ("netTxBytes", "zmn_vm_network_transmit_bytes", "bytes its NICs sent", True, 1.0),
]


class UsageCollector(Collector):
    def __init__(
        self,
        window: MetricsWindow,
        node_stats: Callable[[], dict[str, Any]],
        before: Callable[[], None] | None = None,
    ) -> None:
        self.window = window
        self.node_stats = node_stats
        self.before = before

    def collect(self) -> Iterator[Metric]:
        if self.before is not None:
            try:
                self.before()
            except Exception:  # the scrape answers with what the window holds
                log.exception("the simulator's samples for a scrape failed")
        stats = self.node_stats()
        info = GaugeMetricFamily(
            "zmn_node_info", "this management node", labels=["node", "version"]
        )
        info.add_metric([stats["node"], stats["version"]], 1)
        yield info
        calls = CounterMetricFamily("zmn_node_api_calls", "API calls answered", labels=["node"])
        calls.add_metric([stats["node"]], stats["totalCalls"])
        yield calls
        errors = CounterMetricFamily(
            "zmn_node_api_errors", "API calls that failed", labels=["node"]
        )
        errors.add_metric([stats["node"]], stats["totalErrors"])
        yield errors
        for name, key, text in (
            ("zmn_node_jobs_in_flight", "jobsInFlight", "jobs running"),
            ("zmn_node_queue_depth", "queueDepth", "tasks waiting in the task queues"),
        ):
            g = GaugeMetricFamily(name, text, labels=["node"])
            g.add_metric([stats["node"]], stats[key])
            yield g
        yield from _families(self.window, "host", HOST, ["host_uuid"], lambda u, s: [u])
        yield from _families(
            self.window, "vm", VM, ["vm_uuid", "host_uuid"], lambda u, s: [u, s.host_uuid or ""]
        )


def _families(
    window: MetricsWindow,
    kind: str,
    table: list[tuple[str, str, str, bool, float]],
    labels: list[str],
    label_values: Callable[[str, Any], list[str]],
) -> Iterator[Metric]:
    latest = window.latest(kind)
    for field, name, text, counter, scale in table:
        family: Metric = (
            CounterMetricFamily(name, text, labels=labels)
            if counter
            else GaugeMetricFamily(name, text, labels=labels)
        )
        for uuid, sample in sorted(latest.items()):
            if field in sample.values:
                family.add_metric(label_values(uuid, sample), sample.values[field] * scale)  # type: ignore[attr-defined]
        yield family


def serve(
    window: MetricsWindow,
    node_stats: Callable[[], dict[str, Any]],
    listen: str,
    before_scrape: Callable[[], None] | None = None,
) -> Any:
    """Start the exposition server on ``HOST:PORT``; returns the server (``shutdown()``).
    ``before_scrape`` runs in the server's thread at every scrape, before the window is read."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(UsageCollector(window, node_stats, before_scrape))
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    return server
