"""``python -m bench``: baselines first, then every benchmark family, then docs/benchmarks.md.

    python -m bench                       full sizes, writes docs/benchmarks.md
    python -m bench --ci                  tiny sizes (about a minute), report in $TMPDIR
    python -m bench --only vm,query       some families (baselines always run)
    python -m bench --size vms=2000 --size query_vms=200000
    python -m bench --json results.json   the results as JSON as well

Families: cli, batch, api, vm, jobs, bus, query, tracking, tui, profile, cluster, kvm, boot,
growth, stress, ha, migrate.
Exit status 1 when a family
crashed or a benchmark had a failed call (a missed goal is reported, not an exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import (
    api,
    baselines,
    batch,
    boot,
    bus,
    cli,
    cluster,
    growth,
    ha,
    jobs,
    kvm,
    migrate,
    profile,
    query,
    stress,
    tracking,
    tui,
    vm,
)
from bench.harness import Result, Run, Sizes
from bench.machine import cpu_pressure, load_average
from bench.node import NodeProcess, wait_idle
from bench.report import merge, render, write

FAMILIES = [
    "cli", "batch", "api", "vm", "jobs", "bus", "query", "tracking", "tui", "profile", "cluster",
    "kvm", "boot", "growth", "stress", "ha", "migrate",
]  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
NODE_CONF = {"log.level": "WARNING", "shutdown.grace": "5"}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--ci", action="store_true", help="tiny sizes, for CI (under a minute)")
    p.add_argument("--only", default="", help=f"comma-separated families ({', '.join(FAMILIES)})")
    p.add_argument("--skip", default="", help="comma-separated families to leave out")
    p.add_argument(
        "--size", action="append", default=[], metavar="NAME=VALUE", help="override a size"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="report path (default docs/benchmarks.md; with --ci $TMPDIR/zmn-benchmarks-ci.md)",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--workdir", type=Path, help="where node homes go (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    return p.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.ci() if args.ci else Sizes()
    fields = {f.name: f for f in dataclasses.fields(Sizes)}
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown size {name!r}; sizes: {', '.join(fields)}")
        current = getattr(sizes, name)
        setattr(
            sizes, name, type(current)(float(value)) if isinstance(current, float) else int(value)
        )
    return sizes


class Homes:
    """Node homes cloned from one ``zmn init`` (init runs migrations and hashes the admin
    password: seconds a node; a copy of the fresh home is the same state)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.template: NodeProcess | None = None

    def new(self, name: str) -> NodeProcess:
        if self.template is None:
            self.template = NodeProcess(self.workdir / "template" / "home", dict(NODE_CONF))
            self.template.init()
        home = self.workdir / name / "home"
        shutil.copytree(self.template.home, home)
        (home / "node.uuid").unlink(missing_ok=True)
        return NodeProcess(home, dict(NODE_CONF))


async def guarded(run: Run, family: str, work: Callable[[], Awaitable[Any]]) -> bool:
    t0 = time.monotonic()
    try:
        await work()
    except Exception as exc:
        traceback.print_exc()
        run.skip(family, "(family)", f"crashed: {type(exc).__name__}: {exc}")
        return False
    finally:
        run.timings[family] = run.timings.get(family, 0.0) + time.monotonic() - t0
        print(f"  [{family}: {time.monotonic() - t0:.1f} s]", flush=True)
    return True


async def start_main(run: Run, node: NodeProcess) -> None:
    """Start the shared node and record what an empty node's start costs in CPU."""
    node.start()
    await wait_idle(node)
    run.facts["empty_boot_cpu"] = node.cpu_seconds()


async def batch_family(run: Run, node: NodeProcess) -> None:
    node.start()
    try:
        await batch.measure(run, node)
    finally:
        node.stop()


async def main_async(args: argparse.Namespace) -> int:
    chosen = [f for f in (args.only.split(",") if args.only else FAMILIES) if f]
    chosen = [f for f in chosen if f not in set(args.skip.split(","))]
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise SystemExit(f"unknown family {', '.join(unknown)}; families: {', '.join(FAMILIES)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="zmn-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run = Run(sizes_from(args), workdir, ci=args.ci)
    homes = Homes(workdir)
    load_before = load_average()
    run.facts_text["psi_before"] = cpu_pressure()
    print(
        f"bench: {'ci' if args.ci else 'full'} sizes, work dir {workdir}, load {load_before}",
        flush=True,
    )
    ok = True
    try:
        ok &= await guarded(run, "baseline", lambda: baselines.measure(run))
        if {"cli", "api", "vm", "jobs"} & set(chosen):
            node = homes.new("main")
            try:
                ok &= await guarded(run, "start", lambda: start_main(run, node))
                if "cli" in chosen:
                    ok &= await guarded(
                        run, "cli", lambda: asyncio.to_thread(cli.measure, run, node)
                    )
                if "api" in chosen:
                    ok &= await guarded(run, "api", lambda: api.measure(run, node))
                if "vm" in chosen or "jobs" in chosen:
                    ok &= await guarded(run, "vm", lambda: vm.measure(run, node))
                if "jobs" in chosen:
                    ok &= await guarded(run, "jobs", lambda: jobs.measure(run, node))
            finally:
                node.stop()
        if "batch" in chosen:
            ok &= await guarded(run, "batch", lambda: batch_family(run, homes.new("batch")))
        if "bus" in chosen:
            ok &= await guarded(run, "bus", lambda: bus.measure(run))
        if "query" in chosen:
            ok &= await guarded(run, "query", lambda: query.measure(run, homes.new("query")))
        if "tracking" in chosen:
            ok &= await guarded(run, "tracking", lambda: tracking.measure(run, homes.new))
        if "growth" in chosen:
            ok &= await guarded(run, "growth", lambda: growth.measure(run, homes.new))
        if "stress" in chosen:
            ok &= await guarded(run, "stress", lambda: stress.measure(run, homes.new("stress")))
        if "tui" in chosen:
            ok &= await guarded(run, "tui", lambda: tui.measure(run, homes.new("tui")))
        if "profile" in chosen:
            ok &= await guarded(run, "profile", lambda: profile.measure(run))
        if "cluster" in chosen:
            ok &= await guarded(run, "cluster", lambda: cluster.measure(run))
        if "kvm" in chosen and not args.ci:  # a minute of set-up; the KVM e2e covers it in CI
            ok &= await guarded(run, "kvm", lambda: kvm.family(run))
        if "boot" in chosen and not args.ci:  # VMs booted to SSH: minutes; e2e covers it in CI
            ok &= await guarded(run, "boot", lambda: boot.family(run))
        if "ha" in chosen and not args.ci:  # a host killed and a guest booted: minutes; e2e in CI
            ok &= await guarded(run, "ha", lambda: ha.family(run))
        if "migrate" in chosen and not args.ci:  # a guest booted first; the e2e covers CI
            ok &= await guarded(run, "migrate", lambda: migrate.family(run))
    finally:
        load_after = load_average()
        run.facts_text["psi_after"] = cpu_pressure()
        default = Path(tempfile.gettempdir()) / "zmn-benchmarks-ci.md" if args.ci else DOC
        out = args.out or default
        text = render(
            run,
            load_before=load_before,
            load_after=load_after,
            extra_sections=[*notes(run), *run.profiles],
        )
        if out.exists() and not args.ci:  # hand-written blocks, families not run this time
            text = merge(out.read_text(), text)
        write(out, text)
        if args.json:
            write(args.json, json.dumps(as_json(run, ok), indent=2))
        if any(r.family == "growth" for r in run.results):  # the curve next to the report
            curve = workdir / "growth.json"
            write(curve, json.dumps(as_json(run, ok)))
            growth.plot(curve, out.parent / "growth.png")
        print(f"bench: wrote {out}", flush=True)
        if args.keep or args.workdir:
            print(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [r for r in run.results if r.samples is not None and r.samples.errors]
    for r in failed:
        print(
            f"bench: {r.family}/{r.name}: {len(r.samples.errors) if r.samples else 0} failure(s), e.g. "
            f"{r.samples.errors[0] if r.samples else ''}",
            file=sys.stderr,
        )
    return 0 if ok and not failed else 1


def notes(run: Run) -> list[str]:
    from bench.notes import sections

    return sections(run)


def as_json(run: Run, ok: bool) -> dict[str, Any]:
    def one(r: Result) -> dict[str, Any]:
        s = r.samples
        return {
            "family": r.family,
            "name": r.name,
            "value": r.value,
            "unit": r.unit,
            "baseline": r.baseline.name if r.baseline else None,
            "baselineValue": r.baseline.value if r.baseline else None,
            "ratio": r.ratio,
            "goal": r.goal,
            "met": r.met,
            "p50ms": s.p(50) * 1e3 if s else None,
            "p95ms": s.p(95) * 1e3 if s else None,
            "p99ms": s.p(99) * 1e3 if s else None,
            "tried": s.tried if s else None,
            "ok": s.ok if s else None,
            "success": s.success if s else None,
            "errors": (s.errors[:5] if s else []),
            "size": r.size,
            "note": r.note,
        }

    return {
        "ok": ok,
        "ci": run.ci,
        "sizes": dataclasses.asdict(run.sizes),
        "baselines": [one(b) for b in run.baselines.values()],
        "results": [one(r) for r in run.results],
        "skipped": [dataclasses.asdict(s) for s in run.skipped],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
