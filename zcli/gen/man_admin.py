"""The administrators' man pages, ``zmn(8)`` and ``zagent(8)``: commands and options from
their typer command trees, settings from :mod:`zmn.core.config` and :mod:`agent.config`, exit
statuses from their module docstrings. The EXAMPLES run in the test suite.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from zcli.gen.manpages import SOURCE, _examples
from zcli.gen.roff import Page, bold, italic, line

ZMN_EXAMPLES: list[tuple[str, list[str]]] = [
    (
        "Create the home, start the node, look at it, stop it:",
        ["zmn init", "zmn start", "zmn status", "zmn plugins", "zmn logs -n 5", "zmn stop"],
    ),
    (
        "See the systemd unit zmn service install would write (Type=notify, restart on"
        " failure, log in the journal):",
        ["zmn service install --print"],
    ),
    (
        "After installing a new release: back up, migrate (one node of a cluster migrates, the"
        " others wait), start again:",
        ["zmn backup zmn-backup.tar.gz", "zmn upgrade", "zmn start", "zmn stop"],
    ),
]

ZAGENT_EXAMPLES: list[tuple[str, list[str]]] = [
    (
        "Make a secret file for a new host (mode 0600; an existing file is kept), and print the"
        " version:",
        ["zagent gen-secret secret", "zagent version"],
    ),
]


# --------------------------------------------------------------------------- zmn(8)


def _docstring_list(doc: str, start: str) -> list[tuple[str, str]]:
    """``\\`\\`key\\`\\`   text`` lines after the line starting with ``start``."""
    out: list[tuple[str, str]] = []
    lines = doc.split(start, 1)[1].splitlines()[1:] if start in doc else []
    for raw in lines:
        m = re.match(r"^``(.+?)``\s*(.*)$", raw.strip())
        if m:
            keys = [m.group(1)]
            text = m.group(2).strip()
            extra = re.match(r"^/\s*``(.+?)``\s+(.*)$", text)
            if extra:
                keys.append(extra.group(1))
                text = extra.group(2)
            out.append((" ".join(k for k in keys if k), text))
        elif raw.strip() and out:
            out[-1] = (out[-1][0], f"{out[-1][1]} {raw.strip()}")
    return out


def _root(app: Any) -> Any:
    """The click command typer builds from ``app`` (imported here only: generation time)."""
    import typer

    return typer.main.get_command(app)


def _leaves(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(``name`` or ``group name``, command) of every command, in declaration order."""
    out: list[tuple[str, Any]] = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        if getattr(cmd, "commands", None) is not None:
            out += _leaves(cmd, path)
        else:
            out.append((" ".join(path), cmd))
    return out


def _takes_value(param: Any) -> bool:
    return not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def _options(cmd: Any) -> list[tuple[str, str]]:
    out = []
    for param in cmd.params:
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        takes = _takes_value(param)
        tag = ", ".join(bold(o) for o in [*param.opts, *param.secondary_opts])
        if takes:
            tag += " " + italic(str(param.name).upper())
        text = param.help or ""
        choices = getattr(param.type, "choices", None)
        if choices:
            text += f"{'; ' if text else ''}one of {', '.join(map(str, choices))}"
        default = getattr(param.default, "value", param.default)
        if takes and default not in (None, "") and "default" not in text:
            text += f"{'; ' if text else ''}default {default}"
        out.append((tag, text))
    return out


def _usage(prog: str, name: str, cmd: Any) -> str:
    pieces = [prog, name]
    for param in cmd.params:
        if param.param_type_name == "argument":
            pieces.append(str(param.metavar or param.name).upper())
            continue
        if getattr(param, "hidden", False):
            continue
        opt = min(param.opts, key=len) if not param.secondary_opts else param.opts[0]
        choices = getattr(param.type, "choices", None)
        value = "{" + ",".join(map(str, choices)) + "}" if choices else str(param.name).upper()
        pieces.append(f"[{opt} {value}]" if _takes_value(param) else f"[{opt}]")
    return " ".join(pieces)


def _usages(prog: str, app: Any) -> list[str]:
    return [_usage(prog, name, cmd) for name, cmd in _leaves(_root(app))]


def _commands(page: Page, app: Any) -> None:
    page.section("Commands")
    for name, cmd in _leaves(_root(app)):
        page.subsection(name)
        text = cmd.help or ""
        page.para(text[:1].upper() + text[1:] + "." if text else name)
        for tag, doc in _options(cmd):
            page.tagged(tag, doc)


def zmn_page() -> str:
    from zmn import cli
    from zmn.core import config

    page = Page("zmn", 8, SOURCE, "System Administration")
    page.section("Name").raw("zmn \\- the zstack\\-terminal management node")
    page.section("Synopsis").raw(".nf")
    for usage in _usages("zmn", cli.app):
        page.raw(line(usage))
    page.raw(".fi")
    page.section("Description")
    page.para(
        "zmn runs the management node: one asyncio process holding every orchestration service"
        " (zones, clusters, hosts, storage, images, networks, accounts, tags, global config),"
        " serving the API on a unix socket and optionally TCP/TLS. zcli(1) and ztui are its"
        " clients. Services are plugins found through Python entry points."
    )
    page.section("Options")
    for tag, text in _options(_root(cli.app)):
        page.tagged(tag, text)
    _commands(page, cli.app)
    page.section("Configuration")
    page.para(
        "Boot settings are ``key=value`` lines in ``$ZMN_HOME/zmn.conf``; a variable"
        " ``ZMN_<KEY>`` (upper case, dots as underscores) overrides a key, e.g."
        " ``ZMN_DB_URL``. Defaults are in brackets."
    )
    for keys, text in _docstring_list(config.__doc__ or "", "Keys"):
        defaults = [config.DEFAULTS.get(k) for k in keys.split()]
        shown = [d for d in defaults if d]
        suffix = f" [{', '.join(shown)}]" if shown else ""
        page.tagged(", ".join(bold(k) for k in keys.split()), text + suffix)
    page.para(
        "Global configuration lives in the database (``zcli api QueryGlobalConfig``,"
        " ``UpdateGlobalConfig``), typed and validated; see the catalogue's globalConfigs."
    )
    page.section("Exit status")
    statuses = re.search(r"Exit statuses: (.*?)\.", cli.__doc__ or "", re.S)
    for item in (statuses.group(1) if statuses else "").split(","):
        code, _, text = item.strip().partition(" ")
        if code:
            page.tagged(bold(code), " ".join(text.split()))
    page.section("Environment")
    page.tagged(bold("ZMN_HOME"), "the state directory (default ~/.local/share/zmn)")
    page.tagged(bold("ZMN_<KEY>"), "overrides the zmn.conf key KEY")
    page.section("Files")
    for name, text in ZMN_FILES:
        page.tagged(italic(f"$ZMN_HOME/{name}"), text)
    _examples(page, ZMN_EXAMPLES)
    page.section("See also").raw("zcli(1), zcli\\-query(7), zagent(8)")
    return page.text()


ZMN_FILES = [
    ("zmn.conf", "boot settings"),
    ("zmn.db", "the SQLite database (the default db.url)"),
    ("zmn.sock", "the API socket, mode 0660"),
    ("zmn.pid, zmn.lock", "the running node's pid, and the lock that keeps a second one out"),
    ("zmn.log", "the log of a node started in the background (rotated: zmn.log.1 ...)"),
    ("service-unit", "the systemd unit zmn service install wrote; zmn logs reads its journal"),
    ("admin-password", "the admin password zmn init generated, mode 0600"),
    ("node.uuid", "this node's UUID"),
]


# --------------------------------------------------------------------------- zagent(8)


def _field_comments(cls: type) -> dict[str, str]:
    """The ``# comment`` after each field of a dataclass's source (noqa reasons dropped)."""
    out = {}
    for raw in inspect.getsource(cls).splitlines():
        m = re.match(r"^\s+(\w+): [^#]*#\s*(.*)$", raw)
        if m and not m.group(2).startswith("noqa"):
            out[m.group(1)] = m.group(2)
    return out


def zagent_page() -> str:
    page = Page("zagent", 8, SOURCE, "System Administration")
    page.section("Name").raw("zagent \\- the zstack\\-terminal host agent")
    try:
        from agent import config as agent_config
        from agent import main as agent_main
    except ImportError:  # the agent is not part of this build
        page.section("Description").para("The host agent is not installed in this build.")
        return page.text()
    doc = agent_main.__doc__ or ""
    page.section("Synopsis").raw(".nf")
    for usage in _usages("zagent", agent_main.app):
        page.raw(line(usage))
    page.raw(".fi")
    page.section("Description")
    page.para(
        "zagent runs on each KVM host. The management node sends it authenticated"
        " HTTP(S)+JSON commands; it drives libvirt, bridges, DHCP and the firewall, and"
        " reports VM state changes back. AddKvmHost installs and starts it over SSH."
    )
    _commands(page, agent_main.app)
    page.section("Configuration")
    page.para(
        f"A YAML mapping, by default ``{agent_main.DEFAULT_CONFIG}``; unknown keys are refused."
        " Keys and defaults:"
    )
    notes = _field_comments(agent_config.AgentConfig)
    for f in dataclasses.fields(agent_config.AgentConfig):
        default = f.default if f.default is not dataclasses.MISSING else None
        text = notes.get(f.name, "")
        if default is not None:
            text += f"{'; ' if text else ''}default {default}"
        page.tagged(bold(f.name), text)
    page.section("Exit status")
    statuses = re.search(r"Exit statuses: (.*?)\.", doc, re.S)
    for item in (statuses.group(1) if statuses else "").split(","):
        code, _, text = item.strip().partition(" ")
        if code:
            page.tagged(bold(code), " ".join(text.split()))
    _examples(page, ZAGENT_EXAMPLES)
    page.section("See also").raw("zmn(8)")
    return page.text()
