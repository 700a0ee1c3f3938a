"""The man pages: ``zcli(1)`` and ``zcli-query(7)`` here, ``zmn(8)`` and ``zagent(8)`` in
:mod:`zcli.gen.man_admin`.

Each part comes from where it is defined: resources, verbs, query operators, options and joins
from the catalogue; zcli's options and exit statuses from :mod:`zcli.help`; the query semantics
from :mod:`zmn.core.query`'s docstring; zmn's commands from its argparse parser and its
``zmn.conf`` keys from :mod:`zmn.core.config`; zagent's from :mod:`agent.main` and
:mod:`agent.config`. What is written here by hand is prose and the EXAMPLES, which the test
suite runs (``tests/integration/test_doc_examples.py``) against the reference cloud of
``demo/cloud.zcli``.
"""

from __future__ import annotations

import re
from typing import Any

from zcli import help as zhelp
from zcli.catalogue import ALIASES, Catalogue, kebab
from zcli.gen.roff import Page, bold, italic, line
from zmn import __version__

SOURCE = f"zstack-terminal {__version__}"

# The reference cloud (demo/cloud.zcli) has zone z1, cluster c1, hosts h1-h3 (h1 and h2 with
# 32 vCPUs, h3 with 16), L2 networks l2 and l2-vlan100, L3 network l3 and IP range r1.
ZCLI_EXAMPLES: list[tuple[str, list[str]]] = [
    (
        "Build the reference cloud from a batch file, then list its zones:",
        ["zcli -f demo/cloud.zcli", "zcli zone list"],
    ),
    ("Show one zone as JSON, by name (a UUID works as well):", ["zcli -o json zone get z1"]),
    (
        "Call an API by name, as in ZStack's CLI; a query takes conditions:",
        ["zcli api QueryHost cluster.zone.name=z1", "zcli api QueryCluster count=true"],
    ),
    (
        "Create a cluster; references take names or UUIDs:",
        ["zcli cluster create --name c2 --zone-uuid z1 --hypervisor-type Simulator"],
    ),
    (
        "Change a description, naming the zone by its name:",
        ["zcli zone update z1 --description 'first zone'"],
    ),
    (
        "Print chosen columns without decoration, for scripts:",
        ["zcli -o value -c name,managementIp host list --sort-by name", "zcli -q l3-network list"],
    ),
    (
        "Run several commands on one connection, from standard input:",
        ["printf 'zone list\\ncluster list\\n' | zcli -f -"],
    ),
    (
        "Keep 8 lines of a batch in flight on its connection (the output stays in line order):",
        ["printf 'zone create z7\\nzone create z8\\n' | zcli -q -f - --parallel 8"],
    ),
    (
        "Feed the shell's grammar (the api keyword is optional) from a pipe:",
        ["echo 'QueryZone name=z1' | zcli shell"],
    ),
    ("Describe a verb's parameters:", ["zcli help cluster create"]),
    (
        "Options go after the command as well; a table can follow joins, and sort descending:",
        [
            "zcli host list -o wide --sort-by -name",
            "zcli host list -c name,cluster.name,cluster.zone.name -o csv",
        ],
    ),
    (
        "Verbs shared by two APIs pick the one the options fit; sizes take suffixes:",
        [
            "zcli l3 create l3c --network l2",
            "zcli ip-range add r3 --cidr 10.8.0.0/24 --l3-network l3c",
            "zcli l2 create l2-vlan300 --zone z1 --physical-interface eth0 --vlan 300",
            "zcli disk-offering create d20 --disk-size 20G",
        ],
    ),
    (
        "A VM with cloud-init user data and an SSH key read from files (a NoCloud seed on KVM"
        " hosts), then a template of its root volume once it is stopped:",
        [
            "zcli vm create web7 --image-uuid img --l3-network-uuids l3"
            " --instance-offering-uuid small --user-data-file demo/user-data.yaml"
            " --ssh-key-file demo/demo-key.pub",
            "zcli vm stop web7",
            "zcli image create-template --name web7-tpl --root-volume-uuid ROOT-for-web7"
            "   # a stopped vm's disk",
        ],
    ),
]

QUERY_EXAMPLES: list[tuple[str, list[str]]] = [
    (
        "Enabled hosts with at least 32 vCPUs (quote conditions holding < or >):",
        ["zcli host list state=Enabled 'totalCpuCapacity>=32'"],
    ),
    (
        "Hosts by a list of management IPs, and by a name pattern:",
        ["zcli host list managementIp?=10.0.0.11,10.0.0.12", "zcli host list name~=h%"],
    ),
    (
        "Through joins: hosts in zone z1, zones holding a host with this IP, L3 networks of"
        " cluster c1's L2 networks:",
        [
            "zcli api QueryHost cluster.zone.name=z1",
            "zcli api QueryZone cluster.host.managementIp=10.0.0.11",
            "zcli l3-network list l2Network.cluster.name=c1",
        ],
    ),
    (
        "VMs with a NIC on L3 network l3 (the join of the architecture's example):",
        ["zcli vm list vmNics.l3Network.name=l3"],
    ),
    (
        "Null tests and tag pseudo-fields:",
        ["zcli zone list description=null", "zcli zone list __userTag__~=prod"],
    ),
    (
        "Count, sort, page, pick fields, group:",
        [
            "zcli host list --count state=Enabled",
            "zcli -o value -c name,totalCpuCapacity host list --sort-by totalCpuCapacity"
            " --sort-direction desc --limit 2",
            "zcli -o json host list --fields uuid,name",
            "zcli -o json api QueryHost groupBy=clusterUuid",
        ],
    ),
]


def generate(data: dict[str, Any]) -> dict[str, str]:
    from zcli.gen.man_admin import zagent_page, zmn_page

    cat = Catalogue(data)
    return {
        "man/zcli.1": zcli_page(cat),
        "man/zcli-query.7": query_page(cat),
        "man/zmn.8": zmn_page(),
        "man/zagent.8": zagent_page(),
    }


def _examples(page: Page, examples: list[tuple[str, list[str]]]) -> None:
    page.section("Examples")
    for what, commands in examples:
        page.example(what, commands)


def _help_sections(text: str) -> dict[str, list[str]]:
    """``zcli help``'s text, cut at its ``title:`` lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        if raw and not raw.startswith(" ") and raw.rstrip().endswith(":"):
            current = sections.setdefault(raw.split(" (")[0].rstrip(":"), [])
        elif raw.strip():
            current.append(raw)
    return sections


def _two_columns(lines: list[str]) -> list[tuple[str, str]]:
    """``  TERM    text`` lines (continuations indented further) as (term, text) pairs."""
    out: list[tuple[str, str]] = []
    for raw in lines:
        m = re.match(r"^  (\S.*?)(?:\s{2,}(.*))?$", raw)
        if m and not raw.startswith("      "):
            out.append((m.group(1), m.group(2) or ""))
        elif out:
            out[-1] = (out[-1][0], f"{out[-1][1]} {raw.strip()}".strip())
    return out


def _option_tag(term: str) -> str:
    """``-o, --output FORMAT`` -> bold options, italic argument."""
    parts = []
    for piece in term.split(", "):
        opt, _, arg = piece.partition(" ")
        parts.append(bold(opt) + (" " + italic(arg) if arg else ""))
    return ", ".join(parts)


# --------------------------------------------------------------------------- zcli(1)


def zcli_page(cat: Catalogue) -> str:
    page = Page("zcli", 1, SOURCE, "User Commands")
    page.section("Name").raw(
        "zcli \\- command\\-line client and shell of a zstack\\-terminal cloud"
    )
    page.section("Synopsis").raw(".nf")
    for usage in zhelp.USAGE.splitlines():
        page.raw(line(usage.removeprefix("usage: ").strip()))
    page.raw(line("zcli [OPTIONS] shell"), ".fi")
    page.section("Description")
    page.para(
        "zcli drives a zstack-terminal management node (zmn(8)) through its API. Its commands"
        " are generated from the API catalogue the node publishes, cached under the"
        " catalogue's hash: every resource type is a command, every API on that type a verb,"
        " and ``Query<Type>`` gives ``list`` and ``get``. ``zcli api <ApiName> key=value...``"
        " calls any API by its ZStack name. Data goes to standard output, errors to standard"
        " error as ``error: CODE: message``."
    )
    sections = _help_sections(zhelp.OPTIONS)
    page.section("Options")
    page.para(
        "Global options go before or after the command and its arguments, in one-shot"
        " commands, batch files and the shell; ``--`` ends them. An unknown or misplaced"
        " option is a usage error naming it."
    )
    for term, text in _two_columns(sections.get("global options", [])):
        page.tagged(_option_tag(term), text)
    page.section("Arguments")
    page.para(" ".join(s.strip() for s in sections.get("arguments", [])))
    page.para(
        "Query conditions are FIELD OP VALUE with the operators of zcli-query(7); a field may"
        " pass through joins (``cluster.zone.name=z1``)."
    )
    page.section("Tables")
    page.para(
        "On a terminal (and with ``-o wide`` anywhere) a table is for people: names instead"
        " of UUIDs in reference columns (one query per referenced type, never one per row), a"
        " short ``id`` (``-c uuid`` for the full UUID), an ``ip`` column for VMs, sizes such as"
        " ``1.0 GiB``, ages such as ``3m``, states in colour unless ``NO_COLOR`` is set, rows"
        " sorted by name (``--sort-by F``, ``--sort-by -F`` descending) and cut with an"
        " ellipsis to the terminal's width; ``get`` prints a summary with addresses, volumes"
        " and tags. ``-c`` takes join paths (``host.name``, ``vmNics.ip``,"
        " ``host.cluster.zone.name``); an unknown column is an error. Into a pipe, and in"
        " ``-o json|yaml|csv|value``, the output is what scripts have always read."
    )
    page.para(
        "On a terminal, destroying a running VM or deleting something other resources depend"
        " on asks first unless ``--yes``; each change is told in one line on standard error."
        " Without a terminal nothing is asked and nothing more is said; a batch file (-f) is"
        " never asked."
    )
    _resources(page, cat)
    page.section("Shell")
    page.para(
        "``zcli shell``, or ``zcli`` alone on a terminal, reads commands with the same grammar,"
        " the leading ``zcli`` implied and the ``api`` keyword optional, so"
        " ``QueryHost state=Enabled`` runs as typed in ZStack's CLI. Tab completes API names"
        " (by substring), resources, verbs, parameters, query fields through joins, operators,"
        " enum values, and live resources by name (the UUID where a name is shared, or in a"
        " query condition on a UUID field), from names kept fresh in the background; a join"
        " is inserted with its dot. A line ending in a backslash continues on the next; Ctrl-C"
        " cancels the line; Ctrl-R searches the history and Enter runs the line found; Ctrl-D"
        " or ``exit`` leaves; ``help <ApiName>`` describes an API. The prompt shows the"
        " account and the node's host; ``status`` shows the full endpoint, the session and"
        " the options; ``set output json`` (or columns, timeout, quiet, no-header, no-wait)"
        " keeps an option for the session. History is kept with secret"
        " parameters (``password`` and the others the catalogue marks secret) replaced by"
        " ``***``."
    )
    page.section("Completion")
    page.para(
        "``zcli completion bash|zsh|fish`` prints the script for the node's catalogue"
        " (install it as the README says); the same scripts are in ``completions/``"
        " (``zcli.bash``, ``_zcli``, ``zcli.fish``). They complete commands, resources, verbs and API names by"
        " themselves and ask ``zcli __complete`` for the rest, bounded by timeout(1) and"
        " ``ZCLI_COMPLETE_BUDGET`` seconds (default 0.5): a node that does not answer"
        " yields no candidates, never a hang."
    )
    page.section("Exit status")
    for term, text in _two_columns(zhelp.EXIT_STATUSES.splitlines()[1:]):
        page.tagged(bold(term), text)
    page.section("Environment")
    for name, text in ENVIRONMENT:
        page.tagged(bold(name), text)
    page.section("Files")
    for name, text in FILES:
        page.tagged(italic(name), text)
    _examples(page, ZCLI_EXAMPLES)
    page.section("See also").raw("zcli\\-query(7), zmn(8), zagent(8)")
    return page.text()


ENVIRONMENT = [
    ("ZMN_ENDPOINT", "the node to talk to: unix:PATH, tcp://HOST:PORT or tls://HOST:PORT"),
    ("ZMN_HOME", "the node's home; the default endpoint is its zmn.sock"),
    ("ZMN_SESSION", "a session UUID to send (else the one kept by zcli login)"),
    ("ZMN_TLS_CA", "a CA file to verify a tls:// endpoint with"),
    ("ZCLI_COMPLETE_BUDGET", "seconds zcli __complete may spend asking the node (0.5)"),
    ("NO_COLOR", "no colours in tables"),
    ("XDG_CONFIG_HOME, XDG_CACHE_HOME, XDG_STATE_HOME", "where the files below live"),
]

FILES = [
    ("$XDG_CONFIG_HOME/zcli/sessions.json", "sessions kept by zcli login, one per endpoint"),
    ("$XDG_CACHE_HOME/zcli/catalogue-HASH.json", "cached API catalogues"),
    (
        "$XDG_CACHE_HOME/zcli/names-KEY.json",
        "live names for completion, per endpoint and session (mode 0600)",
    ),
    ("$XDG_STATE_HOME/zcli/history", "the shell's history, secrets scrubbed (mode 0600)"),
]


def _resources(page: Page, cat: Catalogue) -> None:
    page.section("Resources and verbs")
    page.para(
        "Each resource type is a command; its verbs call the APIs below."
        " ``zcli help <resource> <verb>`` lists a verb's parameters."
    )
    for cli in sorted(cat.resources):
        res = cat.resources[cli]
        aliases = sorted(a for a, t in ALIASES.items() if t == res.name)
        title = cli + (f" ({', '.join(aliases)})" if aliases else "")
        page.subsection(title)
        page.para(f"{res.name}: {res.summary}" if res.summary else res.name)
        for verb in cat.verbs(res):
            if verb in ("list", "get"):
                text = (
                    f"query {res.name} resources ({res.query}); conditions FIELD OP VALUE"
                    if verb == "list"
                    else f"show one {res.name} by name or UUID"
                )
            else:
                summary, name = cat.verb_summary(res, verb)
                text = summary if verb in res.groups else f"{summary} ({name})"
            page.tagged(bold(verb), text)
    other = sorted(a.name for a in cat.apis.values() if cat.resource_of_type(a.resource) is None)
    if other:
        page.subsection("APIs without a resource (zcli api NAME)")
        for name in other:
            page.tagged(bold(name), cat.apis[name].summary)


# --------------------------------------------------------------------------- zcli-query(7)


def _query_semantics() -> list[str]:
    """The bullets of :mod:`zmn.core.query`'s docstring, joined into sentences."""
    from zmn.core import query

    doc = query.__doc__ or ""
    body = doc.split("Semantics", 1)[1].split("\n", 1)[1] if "Semantics" in doc else ""
    bullets: list[str] = []
    for raw in body.splitlines():
        text = raw.strip()
        if not text and bullets:
            break  # the bullets end at the first blank line (paging, counting follow)
        if text.startswith("* "):
            bullets.append(text[2:])
        elif text and bullets:
            bullets[-1] += " " + text
    bullets = [re.sub(r"\*(\w+)\*", r"\1", b) for b in bullets]
    return [b[:1].upper() + b[1:].rstrip(";.") + "." for b in bullets]


def query_page(cat: Catalogue) -> str:
    page = Page("zcli-query", 7, SOURCE, "Miscellaneous")
    page.section("Name").raw("zcli\\-query \\- conditions, joins and options of Query APIs")
    page.section("Synopsis").raw(".nf")
    page.raw(line("zcli <resource> list [FIELD OP VALUE ...] [--count] [--limit N] [--sort-by F]"))
    page.raw(line("zcli api Query<Type> [FIELD OP VALUE ...] [option=value ...]"), ".fi")
    page.section("Description")
    page.para(
        "Every resource type has a ``Query<Type>`` API (``zcli <resource> list``). A"
        " condition is a field, an operator and a value, with no spaces:"
        " ``state=Enabled``. Several conditions must all hold. Field names are checked"
        " against the catalogue; values are bound parameters, never pasted into SQL."
    )
    query = cat.data.get("query", {})
    page.section("Operators")
    docs = {o["op"]: o["doc"] for o in query.get("operators", [])}
    from zcli.complete import OPERATOR_ORDER

    for op in [o for o in OPERATOR_ORDER if o in docs] + sorted(set(docs) - set(OPERATOR_ORDER)):
        page.tagged(bold(op), docs[op])
    page.para(
        "Quote conditions that hold ``<`` or ``>`` from the shell: ``'cpuNum>=2'``. ``=null``"
        " and ``!=null`` take no value."
    )
    page.section("Joins")
    page.para(
        "A field may be a dotted path: zero or more joins, then a field of the resource the"
        " last join reaches (``cluster.zone.name``). Plugins may add joins to other types."
    )
    for sentence in _query_semantics():
        page.para(sentence)
    page.para(
        "ZStack's names work beside ours: a join under ZStack's name (``Volume.image`` is"
        " ``rootImage``) and ZStack's list fields, which hold when some joined row matches"
        " (``attachedClusterUuids=UUID`` is ``cluster.uuid=UUID``)."
    )
    page.para("The joins of each resource type, and the type each reaches:")
    raw = {r["name"]: r for r in cat.data.get("resources", [])}
    for cli in sorted(cat.resources):
        res = cat.resources[cli]
        if res.joins:
            joins = ", ".join(
                f"{j['name']} ({j['resource']}"
                + (f", ZStack's name for {j['aliasOf']})" if j.get("aliasOf") else ")")
                for j in res.joins
            )
            lists = (raw.get(res.name) or {}).get("aliases") or {}
            joins += "".join(f"; list field {a} ({p})" for a, p in sorted(lists.items()))
            page.tagged(bold(res.name), joins)
    page.section("Tag pseudo-fields")
    for tag in query.get("tagFields", []):
        kind = "user" if "user" in tag.lower() else "system"
        page.tagged(bold(tag), f"the resource's {kind} tags: holds when some tag matches")
    page.section("Options")
    query_api = next((a for a in cat.apis.values() if a.is_query), None)
    page.para("Options are parameters of the Query API, given as key=value or --kebab-key value:")
    for name in query.get("options", []):
        param = query_api.params.get(name) if query_api else None
        doc = param.doc if param else ""
        page.tagged(f"{bold(name)}, {bold('--' + kebab(name))}", doc)
    page.section("Paging")
    page.para(
        "Rows come ordered by ``sortBy`` (ascending or descending) and then by UUID. A reply"
        " cut short by ``limit`` carries ``next``, an opaque cursor; pass it back as"
        " ``after`` (``--after``) with the same conditions, ``sortBy`` and ``sortDirection``"
        " to get the rows right behind the last one. The last page has no ``next``. This is"
        " keyset paging: a page deep in a million rows costs what the first page costs, and"
        " rows added or removed meanwhile never shift a page. ``start`` (``--start``) stays"
        " for ZStack compatibility: it is SQL OFFSET, which reads and throws away every row"
        " it skips; page with ``after`` instead. ``start`` and ``after`` do not combine."
    )
    _examples(page, QUERY_EXAMPLES)
    page.section("See also").raw("zcli(1)")
    return page.text()
