"""``zcli __complete`` and the bash, zsh and fish scripts that call it, run for real.

No node runs here: the catalogue and the live names come from a prepared cache, as they do
on an operator's machine between refreshes; an endpoint that never answers shows that a Tab
costs at most the budget.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.conftest import need
from zcli.gen import ROOT, build_catalogue
from zcli.shell.namecache import state_path
from zmn.core.catalogue import catalogue_hash

BIN = Path(sys.executable).parent
Z1 = "a1" + "0" * 30
C1 = "c3" + "0" * 30


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A cache holding the real catalogue and the names of a node that is not running."""
    tmp = tmp_path_factory.mktemp("complete")
    data = build_catalogue()
    digest = catalogue_hash(data)
    cache = tmp / "cache" / "zcli"
    cache.mkdir(parents=True)
    (cache / f"catalogue-{digest}.json").write_bytes(msgspec.json.encode(data))
    endpoint = f"unix:{tmp / 'gone' / 'zmn.sock'}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_", "ZCLI_"))}
    environ.update(
        PATH=f"{BIN}{os.pathsep}{environ.get('PATH', '')}",
        ZMN_ENDPOINT=endpoint,
        XDG_CACHE_HOME=str(tmp / "cache"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        PYTHONPATH=str(ROOT),
    )
    forever = time.time() + 10**7  # these names never go stale during the test
    names = {
        "catalogueHash": digest,
        "checked": forever,
        "types": {
            "Zone": {"at": forever, "rows": [[Z1, "z1"]]},
            "Cluster": {"at": forever, "rows": [[C1, "c1"]]},
        },
    }
    path = _state_path(environ, endpoint)
    path.write_bytes(msgspec.json.encode(names))
    return environ


def _state_path(environ: dict[str, str], endpoint: str) -> Path:
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = environ["XDG_CACHE_HOME"]
    try:
        return state_path(endpoint, None)
    finally:
        if saved is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = saved


def callback(env: dict[str, str], *words: str, **extra: str) -> tuple[list[str], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "zcli"), "__complete", "--", *words],
        capture_output=True,
        text=True,
        env={**env, **extra},
        timeout=30,
    )
    took = time.monotonic() - start
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.splitlines(), took


# --------------------------------------------------------------------------- zcli __complete


def test_callback_prints_text_and_description(env: dict[str, str]) -> None:
    lines, _ = callback(env, "api", "QueryHost", "cluster.zone.na")
    assert lines == ["cluster.zone.name\tstring"]
    lines, _ = callback(env, "api", "CreateCluster", "name=x", "zoneUuid=")
    assert lines == [f"zoneUuid=z1\tZone {Z1[:8]}"]  # the name goes in, the UUID is shown
    lines, _ = callback(env, "zone", "li")
    assert [line.split("\t")[0] for line in lines] == ["list"]
    lines, _ = callback(env, "api", "QueryZone", "cluster.ho")
    assert [line.split("\t")[0] for line in lines] == ["cluster.host."]


def test_callback_follows_the_endpoint_option(env: dict[str, str]) -> None:
    other = "unix:/nowhere/else.sock"
    lines, _ = callback(env, "--endpoint", other, "cluster", "create", "--zone-uuid", "")
    assert lines == []  # no names known for that endpoint, and it does not answer
    lines, _ = callback(env, "cluster", "create", "--zone-uuid", "")
    assert lines == [f"z1\tZone {Z1[:8]}"]


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP port that accepts connections and never says hello."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def test_a_silent_node_costs_the_budget_not_a_hang(
    env: dict[str, str], silent_endpoint: str
) -> None:
    baseline = min(_timed([sys.executable, "-c", "import zcli.complete"], env) for _ in range(3))
    budget = "0.3"
    lines, took = callback(
        env, "api", "CreateCluster", "zoneUuid=", ZMN_ENDPOINT=silent_endpoint,
        ZCLI_COMPLETE_BUDGET=budget,
    )  # fmt: skip
    assert lines == []
    assert took < baseline + float(budget) + 1.5, (took, baseline)
    # static words still come, from the last catalogue cached
    lines, took = callback(
        env, "zone", "li", ZMN_ENDPOINT=silent_endpoint, ZCLI_COMPLETE_BUDGET=budget
    )
    assert [line.split("\t")[0] for line in lines] == ["list"]
    assert took < baseline + float(budget) + 1.5, (took, baseline)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.monotonic() - start


def test_callback_never_fails_on_a_broken_cache(tmp_path: Path, env: dict[str, str]) -> None:
    broken = {**env, "XDG_CACHE_HOME": str(tmp_path), "ZCLI_COMPLETE_BUDGET": "0.2"}
    (tmp_path / "zcli").mkdir()
    (tmp_path / "zcli" / "catalogue-x.json").write_text("{not json")
    lines, _ = callback(broken, "zone", "")
    assert lines == []


# What a Tab may import: the interpreter's own start-up modules aside, none of these (each
# costs a cold callback milliseconds; the server's libraries and the UI toolkits far more).
HEAVY = (
    "typer", "rich", "prompt_toolkit", "sqlalchemy", "msgspec", "textual", "yaml", "asyncio",
    "ssl", "socket", "dataclasses", "inspect", "typing", "contextlib", "threading", "difflib",
    "zmn.api.errors", "zmn.api.querylang", "zmn.client", "zmn.core", "zcli.parser",
    "zcli.options", "zcli.runner",
)  # fmt: skip
# zcli.cache may load: it imports marshal, os, re and sys (json only for a catalogue that has
# no marshal copy yet); the callback reads the catalogue's read-only slice through it


def test_a_callback_imports_nothing_heavy(env: dict[str, str]) -> None:
    """``zcli __complete`` as the console script runs it: what it imports beyond what the
    interpreter had loaded at start-up (pathlib, say, when an editable install's finder runs)."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from zcli.main import main\n"
        "for words in (['zone', 'list', 'na'], ['cluster', 'create', '--zone-uuid', ''],\n"
        "              ['api', 'QueryHost', 'cluster.zone.name='], ['-o', ''], ['']):\n"
        "    main(['__complete', '--', *words])\n"
        "sys.stderr.write(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "name\tstring" in proc.stdout and f"z1\tZone {Z1[:8]}" in proc.stdout
    loaded = proc.stderr.split()
    heavy = [m for m in loaded if m in HEAVY or m.startswith(tuple(h + "." for h in HEAVY))]
    assert heavy == [], loaded


# --------------------------------------------------------------------------- bash


def bash(env: dict[str, str], line: str) -> list[str]:
    script = (
        f"source {shlex.quote(str(ROOT / 'completions' / 'zcli.bash'))}\n"
        f"COMP_LINE={shlex.quote(line)}\n"
        "COMP_POINT=${#COMP_LINE}\n"
        "_zcli 2>/dev/null\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    ).stdout
    return [w for w in out.splitlines() if w]


def test_bash_static_words(env: dict[str, str]) -> None:
    assert bash(env, "zcli zo") == ["zone"]
    assert bash(env, "zcli -o json zone ") == ["list", "get", "change-state", "create",
                                                "delete", "update"]  # fmt: skip
    assert bash(env, "zcli -o ") == ["table", "json", "yaml", "csv", "value", "wide"]
    assert bash(env, "zcli api QueryZ") == ["QueryZone"]
    assert bash(env, "zcli help clu") == ["cluster"]
    assert bash(env, "zcli --end") == ["--endpoint"]


def test_bash_dynamic_words(env: dict[str, str]) -> None:
    assert bash(env, "zcli api QueryHost cluster.zone.na") == ["cluster.zone.name"]
    # bash replaces only what follows the last '=': the script drops what precedes it
    assert bash(env, "zcli api CreateCluster name=x zoneUuid=") == ["z1"]
    assert bash(env, "zcli cluster create --zone-uuid ") == ["z1"]
    assert bash(env, "zcli api QueryCluster zoneUuid=") == [Z1]  # a condition takes the UUID
    assert bash(env, "zcli host list state=Ena") == ["Enabled"]
    assert bash(env, "zcli cluster get ") == ["c1"]
    assert bash(env, "zcli cluster get c3") == [C1]  # typing a UUID completes the UUID


# --------------------------------------------------------------------------- zsh

ZSH_STUBS = r"""
compdef() { : }
compadd() {
    local arrname=""
    while (( $# )); do
        case $1 in
            -a) arrname=$2; shift 2 ;;
            -d|-S|-t|-J|-X|-P) shift 2 ;;
            --) shift; print -rl -- "$@"; return 0 ;;
            -*) shift ;;
            *) print -rl -- "$@"; return 0 ;;
        esac
    done
    [[ -n $arrname ]] && print -rl -- "${(@P)arrname}"
    return 0
}
_describe() {
    local name=${@[-1]} item
    for item in "${(@P)name}"; do print -r -- "${item%%:*}"; done
}
_files() { print -r -- FILES }
"""


def zsh(env: dict[str, str], *words: str) -> list[str]:
    need(shutil.which("zsh") is not None, "zsh is not installed")
    script = (
        ZSH_STUBS
        + f"source {shlex.quote(str(ROOT / 'completions' / '_zcli'))}\n"
        + f"words=({' '.join(shlex.quote(w) for w in words)})\n"
        + "CURRENT=${#words}\n_zcli\n"
    )
    out = subprocess.run(
        ["zsh", "-f", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_zsh_script(env: dict[str, str]) -> None:
    assert "zone" in zsh(env, "zcli", "")
    assert zsh(env, "zcli", "-o", "") == ["table", "json", "yaml", "csv", "value", "wide"]
    assert zsh(env, "zcli", "zone", "")[:2] == ["list", "get"]
    assert "QueryZone" in zsh(env, "zcli", "api", "")
    assert zsh(env, "zcli", "api", "QueryHost", "cluster.zone.na") == ["cluster.zone.name"]
    assert zsh(env, "zcli", "api", "CreateCluster", "zoneUuid=") == ["zoneUuid=z1"]
    assert zsh(env, "zcli", "-f", "") == ["FILES"]


def test_zsh_script_parses() -> None:
    need(shutil.which("zsh") is not None, "zsh is not installed")
    path = ROOT / "completions" / "_zcli"
    subprocess.run(["zsh", "-n", str(path)], check=True)


# --------------------------------------------------------------------------- fish


def fish(env: dict[str, str], line: str) -> list[str]:
    need(shutil.which("fish") is not None, "fish is not installed")
    script = (
        f"source {shlex.quote(str(ROOT / 'completions' / 'zcli.fish'))}; "
        f"complete -C{shlex.quote(line)}"
    )
    out = subprocess.run(
        ["fish", "--no-config", "-c", script],
        capture_output=True,
        text=True,
        env={**env, "HOME": env["XDG_CONFIG_HOME"]},
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return [w.split("\t")[0] for w in out.stdout.splitlines() if w]


def test_fish_script(env: dict[str, str]) -> None:
    assert fish(env, "zcli zo") == ["zone"]
    assert {"list", "get", "create", "delete"} <= set(fish(env, "zcli zone "))
    assert "json" in fish(env, "zcli -o ")
    assert fish(env, "zcli api QueryZ") == ["QueryZone"]
    assert fish(env, "zcli api QueryHost cluster.zone.na") == ["cluster.zone.name"]
    assert fish(env, "zcli api CreateCluster zoneUuid=") == ["zoneUuid=z1"]
