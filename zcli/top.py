"""``zcli vm top`` and ``zcli host top``: running VMs or connected hosts sorted by usage.

    zcli vm top   [--sort cpu|memory|disk|net] [--limit N] [--interval S] [--count N] [COND ...]
    zcli host top [--sort cpu|memory|load]     [--limit N] [--interval S] [--count N] [COND ...]

Rates come from ``GetVmMetrics`` / ``GetHostMetrics`` (the node's recent window); the
resources from ``QueryVmInstance state=Running`` / ``QueryHost status=Connected`` plus the
conditions given (``hostUuid=...``, ``name~=web%``). On a terminal the table is redrawn every
``--interval`` seconds (default 2) until Ctrl-C or ``--count`` rounds; anywhere else one table
is printed (``--count`` for more). ``-o json`` prints each round's rows as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

from zcli.parser import UsageError
from zcli.table import print_table
from zmn.api.ids import short_id

if TYPE_CHECKING:
    from zcli.options import Options
    from zcli.runner import Runner

KINDS: dict[str, dict[str, Any]] = {
    "vm": {
        "query": ("QueryVmInstance", "state=Running"),
        "metrics": "GetVmMetrics",
        "sorts": {
            "cpu": lambda m: m.get("cpuPercent", 0),
            "memory": lambda m: m.get("memoryUsed", 0),
            "disk": lambda m: (
                m.get("diskReadBytesPerSecond", 0) + m.get("diskWriteBytesPerSecond", 0)
            ),
            "net": lambda m: m.get("netRxBytesPerSecond", 0) + m.get("netTxBytesPerSecond", 0),
        },
        "columns": [
            "NAME",
            "UUID",
            "HOST",
            "CPU%",
            "MEMORY",
            "DISK R/s",
            "DISK W/s",
            "NET RX/s",
            "NET TX/s",
        ],
    },
    "host": {
        "query": ("QueryHost", "status=Connected"),
        "metrics": "GetHostMetrics",
        "sorts": {
            "cpu": lambda m: m.get("cpuPercent", 0),
            "memory": lambda m: m.get("memoryUsed", 0),
            "load": lambda m: m.get("load1", 0),
        },
        "columns": ["NAME", "UUID", "CPU%", "MEMORY", "LOAD 1/5/15"],
    },
}


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def _args(kind: str, tokens: list[str]) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {"sort": "cpu", "limit": 20, "interval": 2.0, "count": None}
    conditions: list[str] = []
    it = iter(tokens)
    for token in it:
        key, eq, value = token.partition("=")
        name = key.removeprefix("--")
        if token.startswith("--") and name in opts:
            if not eq:
                value = next(it, "")
            try:
                opts[name] = (
                    value if name == "sort" else (float if name == "interval" else int)(value)
                )
            except ValueError:
                raise UsageError(
                    f"{kind} top: --{name} needs a number, got {value!r}", field=name
                ) from None
        elif token.startswith("--"):
            raise UsageError(
                f"{kind} top has no option {token} (--sort --limit --interval --count)", field=name
            )
        else:
            conditions.append(token)
    if opts["sort"] not in KINDS[kind]["sorts"]:
        raise UsageError(
            f"{kind} top: --sort is one of {', '.join(KINDS[kind]['sorts'])}", field="sort"
        )
    return opts, conditions


def rows(
    runner: Runner, kind: str, conditions: list[str], sort: str, limit: int
) -> list[dict[str, Any]]:
    """One round: every matching resource with its latest rates, busiest first."""
    spec = KINDS[kind]
    api, running = spec["query"]
    client = runner.connect()
    found = client.call(api, {"conditions": [running, *conditions], "limit": 1000})
    out = []
    for inv in found.get("inventories", []):
        latest = client.call(spec["metrics"], {"uuid": inv["uuid"]}).get("latest") or {}
        out.append({"name": inv.get("name"), "uuid": inv["uuid"],
                    "hostUuid": inv.get("hostUuid"), **latest})  # fmt: skip
    key = spec["sorts"][sort]
    out.sort(key=lambda r: (-key(r), str(r["name"])))
    return out[:limit]


def _table(kind: str, found: list[dict[str, Any]]) -> list[list[str]]:
    table = []
    for r in found:
        cpu = f"{r['cpuPercent']:.1f}" if "cpuPercent" in r else "-"
        mem = f"{_size(r.get('memoryUsed'))}/{_size(r.get('memoryTotal'))}"
        if kind == "vm":
            table.append([str(r["name"]), short_id(r["uuid"]), short_id(r.get("hostUuid") or "-"), cpu, mem,
                          *(_size(r.get(k)) for k in ("diskReadBytesPerSecond",
                            "diskWriteBytesPerSecond", "netRxBytesPerSecond",
                            "netTxBytesPerSecond"))])  # fmt: skip
        else:
            load = "/".join(f"{r[k]:.2f}" if k in r else "-" for k in ("load1", "load5", "load15"))
            table.append([str(r["name"]), short_id(r["uuid"]), cpu, mem, load])
    return table


def top(runner: Runner, opts: Options, kind: str, tokens: list[str]) -> int:
    from zmn.api.errors import ZmnError

    try:
        args, conditions = _args(kind, tokens)
    except UsageError as exc:
        return runner.report(exc)
    out = runner.out
    live = out.isatty() and opts.output != "json"
    count = args["count"] if args["count"] is not None else (0 if live else 1)
    done = 0
    try:
        while True:
            found = rows(runner, kind, conditions, args["sort"], args["limit"])
            if opts.output == "json":
                out.write(json.dumps(found, indent=2) + "\n")
            else:
                if live:
                    out.write("\x1b[H\x1b[2J")
                    out.write(f"{kind} top, by {args['sort']}, {time.strftime('%H:%M:%S')}\n")
                print_table(KINDS[kind]["columns"], _table(kind, found), out)
            out.flush()
            done += 1
            if count and done >= count:
                return 0
            time.sleep(args["interval"])
    except ZmnError as exc:
        return runner.report(exc)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 0
