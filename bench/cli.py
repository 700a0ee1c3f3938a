"""Cold ``zcli``: one-shot commands and a completion request, each a fresh process.

Compared with a cold ``python -I -c pass`` measured in the same run: the ratio says how much
the CLI adds to bare interpreter start-up (imports, catalogue, the round trip).
"""

from __future__ import annotations

import subprocess
import sys

from bench.baselines import cold_process
from bench.harness import Result, Run
from bench.node import NodeProcess, tool

FAMILY = "cli"

ONE_SHOTS = [
    ("zone_list_json", ["-o", "json", "zone", "list"]),
    ("api_query_count", ["api", "QueryZone", "count=true"]),
]
# completing a query field of a resource command: needs the catalogue (cached on disk after
# the first request, as in a real shell) and no call for names
COMPLETE = ["__complete", "--", "zone", "list", "na"]


def import_costs(
    node: NodeProcess, args: list[str], top: int = 6
) -> tuple[float, list[tuple[str, float]]]:
    """What a cold ``zcli ARGS`` spends importing (``-X importtime``, ms): the total, and the
    packages it pulls in, heaviest first (zcli's own modules and the interpreter's left out)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", tool("zcli"), *args],
        capture_output=True,
        text=True,
        env=node.env,
        timeout=60,
        check=False,
    )
    # per top-level package: the cumulative time of its first (shallowest) import
    first: dict[str, tuple[int, float]] = {}
    total = 0.0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2]
        depth = len(name) - len(name.lstrip())
        root = name.strip().split(".")[0]
        if depth == 1:
            total += int(parts[1]) / 1e3
        if root in ("zcli", "encodings", "site", "zipimport", "_frozen_importlib_external"):
            continue
        if root not in first or depth < first[root][0]:
            first[root] = (depth, int(parts[1]) / 1e3)
    costs = [(root, ms) for root, (_depth, ms) in first.items()]
    return total, sorted(costs, key=lambda c: -c[1])[:top]


def import_note(node: NodeProcess, args: list[str]) -> str:
    total, heavy = import_costs(node, args)
    listed = ", ".join(f"{mod} {ms:.0f} ms" for mod, ms in heavy)
    return f"imports take {total:.0f} ms (-X importtime), heaviest packages: {listed}"


def has_complete(node: NodeProcess) -> bool:
    done = node.run(["zcli", *COMPLETE], timeout=30)
    return done.returncode == 0 and "name" in done.stdout


def measure(run: Run, node: NodeProcess) -> None:
    print("cli", flush=True)
    runs = run.sizes.cold_runs
    base = run.baselines.get("python_pass")
    env = node.env
    for name, args in ONE_SHOTS:
        s = cold_process([tool("zcli"), *args], runs, env=env)
        run.add(
            Result(
                FAMILY,
                name,
                s.p(50) * 1e3,
                "ms",
                s,
                size=f"{runs} runs",
                note=f"`zcli {' '.join(args)}`; {import_note(node, args)}",
            ).compare(base, goal="p50 < 150 ms", check=lambda v, _r: v < 150)
        )
    if not has_complete(node):
        run.skip(FAMILY, "complete", "`zcli __complete` is not available in this checkout")
        return
    s = cold_process([tool("zcli"), *COMPLETE], runs, env=env)
    run.add(
        Result(
            FAMILY,
            "complete",
            s.p(50) * 1e3,
            "ms",
            s,
            size=f"{runs} runs",
            note=(
                f"`zcli {' '.join(COMPLETE)}` (fresh process, catalogue cache on disk);"
                f" {import_note(node, COMPLETE)}"
            ),
        ).compare(base, goal="p50 < 50 ms", check=lambda v, _r: v < 50)
    )
