"""Cold ``zcli``: one-shot commands and a completion request, each a fresh process.

Compared with a cold ``python -I -c pass`` measured in the same run: the ratio says how much
the CLI adds to bare interpreter start-up (imports, catalogue, the round trip).

The install measured is this checkout's ``.venv``: the ``zcli`` console script of an editable
install (whose path finder also runs in the ``python -I -c pass`` baseline). Modules load
from cached bytecode, as from any installed package: the children get a ``__pycache__``
prefix in the work dir (filled by the unmeasured warm-up run), since an environment with
``PYTHONDONTWRITEBYTECODE`` would otherwise compile every zcli module on every run; that
figure is in the note (``no bytecode cache``).
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import sys

from bench.baselines import cold_process
from bench.cloud import build_cloud
from bench.harness import Result, Run
from bench.node import NodeProcess, tool
from zmn.client import AsyncClient

FAMILY = "cli"
LIST_VMS = 20  # VMs `zcli vm list` shows: names of hosts, clusters, L3s, images in its table
GOAL_RATIO = 1.5  # cold zcli within 1.5x of a cold `python -I -c pass` of the same run

ONE_SHOTS = [
    ("vm_list", ["vm", "list"]),
    ("zone_list_json", ["-o", "json", "zone", "list"]),
    ("api_query_count", ["api", "QueryZone", "count=true"]),
]
# completing a query field of a resource command: needs the catalogue (cached on disk after
# the first request, as in a real shell) and no call for names
COMPLETE = ["__complete", "--", "zone", "list", "na"]


def cached_env(run: Run, node: NodeProcess) -> dict[str, str]:
    """The node's environment with bytecode cached under the work dir."""
    env = dict(node.env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(run.workdir / "pycache")
    return env


def uncached_env(node: NodeProcess) -> dict[str, str]:
    """Every module compiled from source on every run."""
    env = dict(node.env)
    env.pop("PYTHONPYCACHEPREFIX", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _importtime(env: dict[str, str], argv: list[str]) -> list[list[tuple[int, str, float]]]:
    """``-X importtime`` of ``python ARGV`` as groups, one per top-level import: its
    (depth, module, cumulative ms) lines, nested imports first."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    groups: list[list[tuple[int, str, float]]] = []
    pending: list[tuple[int, str, float]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2]
        depth = (len(name) - len(name.lstrip()) + 1) // 2
        pending.append((depth, name.strip(), int(parts[1]) / 1e3))
        if depth == 1:
            groups.append(pending)
            pending = []
    return groups


def import_costs(
    env: dict[str, str], args: list[str], top: int = 6
) -> tuple[float, list[tuple[str, float]]]:
    """What a cold ``zcli ARGS`` spends importing (``-X importtime``, ms) beyond what the bare
    interpreter imports at start-up (``site``, an editable install's path finder): the total,
    and the packages it pulls in, heaviest first (zcli's own modules left out)."""
    startup = {g[-1][1] for g in _importtime(env, ["-c", "pass"])}
    first: dict[str, tuple[int, float]] = {}  # per top-level package: its shallowest import
    total = 0.0
    for group in _importtime(env, [tool("zcli"), *args]):
        if group[-1][1] in startup:
            continue
        total += group[-1][2]
        for depth, name, ms in group:
            root = name.split(".")[0]
            if root != "zcli" and (root not in first or depth < first[root][0]):
                first[root] = (depth, ms)
    costs = [(root, ms) for root, (_depth, ms) in first.items()]
    return total, sorted(costs, key=lambda c: -c[1])[:top]


def import_note(env: dict[str, str], args: list[str]) -> str:
    total, heavy = import_costs(env, args)
    listed = ", ".join(f"{mod} {ms:.1f} ms" for mod, ms in heavy)
    return (
        f"imports beyond bare start-up take {total:.0f} ms (-X importtime),"
        f" heaviest packages: {listed}"
    )


def uncached_note(node: NodeProcess, argv: list[str], runs: int) -> str:
    s = cold_process(argv, max(3, runs // 3), env=uncached_env(node))
    return f"no bytecode cache: {s.p(50) * 1e3:.0f} ms p50"


def has_complete(node: NodeProcess) -> bool:
    done = node.run(["zcli", *COMPLETE], timeout=30)
    return done.returncode == 0 and "name" in done.stdout


async def _vms(node: NodeProcess, destroy: list[str] | None = None) -> list[str]:
    """Make LIST_VMS VMs on a small cloud of their own (or destroy the ones given, so that
    later families, which act on every running VM, do not see them)."""
    async with AsyncClient(node.endpoint) as admin:
        if destroy is not None:
            for uuid in destroy:
                await admin.call("DestroyVmInstance", {"uuid": uuid})
            return []
        cloud = await build_cloud(admin, hosts=2, vms=LIST_VMS, prefix="cli", net=251)
        made = []
        for i in range(LIST_VMS):
            reply = await admin.call("CreateVmInstance", cloud.vm_args(f"cli-vm-{i:02d}"))
            made.append(reply["inventory"]["uuid"])
        return made


def cpu_ratio(argv: list[str], env: dict[str, str], runs: int) -> str:
    """CPU time (user + system) of the command's own process against a cold ``python -I -c
    pass``, run alternately: unlike wall time, machine load barely moves it."""
    base = [sys.executable, "-I", "-c", "pass"]
    cpu: dict[str, list[float]] = {"base": [], "cmd": []}
    for _ in range(runs):
        for key, cmd in (("base", base), ("cmd", argv)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, capture_output=True, env=env, check=False)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            cpu[key].append(used)
    b, c = statistics.median(cpu["base"]), statistics.median(cpu["cmd"])
    return f"CPU p50 {c * 1e3:.1f} ms = {c / b:.2f}x python -I's {b * 1e3:.1f} ms"


def within(ratio: float | None) -> bool:
    return ratio is not None and ratio <= GOAL_RATIO


def measure(run: Run, node: NodeProcess) -> None:
    print("cli", flush=True)
    vms = asyncio.run(_vms(node))
    try:
        _measure(run, node)
    finally:
        asyncio.run(_vms(node, destroy=vms))


def _measure(run: Run, node: NodeProcess) -> None:
    runs = run.sizes.cold_runs
    base = run.baselines.get("python_pass")
    env = cached_env(run, node)
    for name, args in ONE_SHOTS:
        argv = [tool("zcli"), *args]
        s = cold_process(argv, runs, env=env)
        run.add(
            Result(
                FAMILY,
                name,
                s.p(50) * 1e3,
                "ms",
                s,
                size=f"{runs} runs",
                note=(
                    f"`zcli {' '.join(args)}`"
                    + (f" ({LIST_VMS} VMs, piped: the table)" if name == "vm_list" else "")
                    + f"; {cpu_ratio(argv, env, runs)}; {import_note(env, args)};"
                    + f" {uncached_note(node, argv, runs)}"
                ),
            ).compare(
                base, goal=f"p50 within {GOAL_RATIO}x of python -I", check=lambda _v, r: within(r)
            )
        )
    if not has_complete(node):
        run.skip(FAMILY, "complete", "`zcli __complete` is not available in this checkout")
        return
    argv = [tool("zcli"), *COMPLETE]
    s = cold_process(argv, runs, env=env)
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
                f" {cpu_ratio(argv, env, runs)}; {import_note(env, COMPLETE)};"
                f" {uncached_note(node, argv, runs)}"
            ),
        ).compare(
            base, goal=f"p50 within {GOAL_RATIO}x of python -I", check=lambda _v, r: within(r)
        )
    )
