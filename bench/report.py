"""docs/benchmarks.md: the machine, the baselines, then every benchmark in Rally-like tables."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from bench.harness import Result, Run, fmt
from bench.machine import describe

HEADER = """# Benchmarks

Written by `python -m bench` ({mode}); run `make bench` again rather than edit a figure.
Text written by hand sits between `<!-- kept -->` and `<!-- /kept -->` in its section: a run
carries it over (after the section's new table) and keeps whole the sections of the families
it did not run (`--only`); the Machine table is the latest run's.
Every figure is measured against a real management node process (`zmn init` + `zmn start` in
a temporary `ZMN_HOME`, SQLite, local bus) driven through its public socket by many concurrent
`AsyncClient` connections, next to a baseline measured on the same machine in the same run.
The ratio is figure / baseline. Latencies are per call; p50/p95/p99 are nearest-rank.
"""

FAMILY_TITLES = {
    "api": "API round trip",
    "cli": "Cold CLI",
    "batch": "Batch creates through zcli",
    "bus": "In-process bus",
    "query": "Query at scale",
    "vm": "VM create",
    "jobs": "API jobs in flight",
    "tracking": "Host tracking",
    "growth": "Flat cost growth",
    "stress": "Stress: concurrent creates (ZStack's test on one node)",
}


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 1000 else f"{ms:.3g}"


def _row(r: Result) -> str:
    s = r.samples
    lat = [_ms(s.p(q)) for q in (50, 95, 99)] if s and s.latencies else ["-", "-", "-"]
    success = f"{s.success * 100:.1f}% ({s.ok}/{s.tried})" if s else "-"
    base = f"{fmt(r.baseline.value)} {r.baseline.unit} ({r.baseline.name})" if r.baseline else "-"
    ratio = f"{r.ratio:.3g}x" if r.ratio is not None else "-"
    met = {True: "met", False: "**missed**", None: "-"}[r.met]
    goal = f"{r.goal}: {met}" if r.goal else "-"
    return (
        f"| {r.name} | {r.size or '-'} | {fmt(r.value)} {r.unit} | {base} | {ratio} | {goal} |"
        f" {' | '.join(lat)} | {success} |"
    )


TABLE_HEAD = (
    "| benchmark | size | figure | baseline (same run) | ratio | goal | p50 ms | p95 ms | p99 ms"
    " | success |\n|---|---|---|---|---|---|---|---|---|---|"
)


def render(run: Run, *, load_before: str, load_after: str, extra_sections: list[str]) -> str:
    mode = "`--ci`: tiny sizes" if run.ci else "full sizes"
    out = [HEADER.format(mode=mode)]
    out.append("## Machine\n")
    out.append("| | |\n|---|---|")
    for key, value in describe():
        out.append(f"| {key} | {value} |")
    out.append(
        f"| load average (1/5/15 min) | before the run {load_before}; after it {load_after} |"
    )
    out.append(
        f"| CPU pressure (PSI some, avg60) | before the run {run.facts_text.get('psi_before', '?')};"
        f" after it {run.facts_text.get('psi_after', '?')} (time some task waited for a CPU) |"
    )
    elapsed = dt.timedelta(seconds=round(_elapsed(run)))
    out.append(f"| run | {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {elapsed} wall |")
    spent = ", ".join(f"{family} {seconds:.0f} s" for family, seconds in run.timings.items())
    out.append(f"| time by family | {spent or '-'} |\n")
    out.append("## Baselines\n")
    out.append(
        "| baseline | figure | p50 ms | p95 ms | p99 ms | success | what |\n|---|---|---|---|---|---|---|"
    )
    for b in run.baselines.values():
        s = b.samples
        lat = [_ms(s.p(q)) for q in (50, 95, 99)] if s and s.latencies else ["-", "-", "-"]
        success = f"{s.success * 100:.1f}%" if s else "-"
        out.append(
            f"| {b.name} | {fmt(b.value)} {b.unit} | {' | '.join(lat)} | {success} | {b.note} |"
        )
    out.append("")
    families: list[str] = []
    for r in run.results:
        if r.family not in families:
            families.append(r.family)
    for family in list(FAMILY_TITLES):
        if family not in families and (
            family in run.notes or any(s.family == family for s in run.skipped)
        ):
            families.append(family)
    for family in families:
        out.append(f"## {FAMILY_TITLES.get(family, family)}\n")
        rows = [r for r in run.results if r.family == family]
        if rows:
            out.append(TABLE_HEAD)
            out.extend(_row(r) for r in rows)
            out.append("")
            if family == "growth":  # drawn by bench/growth.py from this run's JSON
                out.append(
                    "![each growth figure against the VMs already in the database](growth.png)\n"
                )
            for r in rows:
                if r.note:
                    out.append(f"- `{r.name}`: {r.note}")
        for s in run.skipped:
            if s.family == family:
                out.append(f"- `{s.name}` not run: {s.reason}")
        for note in run.notes.get(family, []):
            out.append(f"- {note}")
        out.append("")
    out.extend(extra_sections)
    return "\n".join(out).rstrip() + "\n"


def _elapsed(run: Run) -> float:
    import time

    return time.monotonic() - run.started


KEPT = re.compile(r"<!-- kept -->.*?<!-- /kept -->", re.DOTALL)
_HEADING = re.compile(r"^(?=## )", re.MULTILINE)


def _sections(text: str) -> tuple[str, dict[str, str]]:
    """The text before the first ``## `` heading, and each section by its heading line (in
    order, each with its heading)."""
    first, *rest = _HEADING.split(text)
    return first, {part.split("\n", 1)[0]: part for part in rest}


def merge(old: str, new: str) -> str:
    """The ``new`` report with what it does not write carried over from the ``old`` one: the
    kept blocks of each section (hand-written, put at the end of the new section of the same
    heading) and the sections the run did not write (families not run keep their figures).
    The order is the old report's; a new section goes after the one it follows in ``new``."""
    head, new_sections = _sections(new)
    _, old_sections = _sections(old)
    order = list(old_sections)
    previous: str | None = None
    for heading in new_sections:
        if heading not in order:
            order.insert(order.index(previous) + 1 if previous in order else 0, heading)
        previous = heading
    out = [head.rstrip("\n") + "\n\n"]
    for heading in order:
        section = new_sections.get(heading)
        if section is None:
            out.append(old_sections[heading].rstrip("\n") + "\n\n")
            continue
        kept = [k for k in KEPT.findall(old_sections.get(heading, "")) if k not in section]
        out.append("\n\n".join([section.rstrip("\n"), *kept]) + "\n\n")
    return "".join(out).rstrip("\n") + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
