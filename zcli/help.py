"""Help text, generated from the catalogue: resources, verbs, parameters, query fields."""

from __future__ import annotations

from zcli.catalogue import Api, Catalogue, Resource, kebab
from zcli.parser import Help, UsageError, did_you_mean, positional_slot

USAGE = """\
usage: zcli [OPTIONS] <resource> <verb> [NAME_OR_UUID] [key=value ...] [--key value ...]
       zcli [OPTIONS] <resource> list [FIELD OP VALUE ...] [--count] [--limit N] [--sort-by F]
       zcli [OPTIONS] <resource> get NAME_OR_UUID
       zcli [OPTIONS] api <ApiName> [key=value ...]
       zcli login --account NAME [--password P]   |   zcli logout
       zcli shell (also bare zcli on a terminal)   |   zcli dashboard
       zcli completion bash|zsh|fish   |   zcli job wait JOB... [-q]   |   zcli job cancel JOB
       zcli vm top | zcli host top [--sort KEY] [--limit N] [--interval S] [--count N] [COND ...]
       zcli help [<resource> [<verb>]]   |   zcli <resource> [<verb>] --help
       zcli api [<ApiName>] --help
"""

OPTIONS = """\
global options (before or after the command; -- ends the options):
  -o, --output FORMAT    table (default), wide (a table with more columns), json, yaml, csv
                         or value (tab-separated, no header)
  -c, --columns A,B      columns to print (repeatable), join paths too (host.name,
                         vmNics.ip); default: the resource type's columns
  -q, --quiet            print only UUIDs, one per line, and no progress of long operations
  --no-header            no header line in table and csv output
  --endpoint ENDPOINT    unix:PATH or tcp://HOST:PORT (env ZMN_ENDPOINT; default $ZMN_HOME/zmn.sock)
  --session UUID         session to send (env ZMN_SESSION; default the one saved by zcli login)
  --no-wait              for long operations: print the job UUID and return at once
  --timeout SECONDS      give up waiting after this long (exit status 124)
  -f, --file FILE        run commands from FILE (- for stdin), one per line, on one connection
  --continue-on-error    with -f: run the remaining lines after a failing one
  --parallel N           with -f: keep N lines in flight on the connection (1-64; default 1,
                         one at a time); output in line order, exit status the worst
  -y, --yes              destroy or delete without asking (a terminal asks first)
  --version              print the version
  -h, --help             this help

arguments:
  --key value, --key=value and key=value are the same; --some-key is someKey; --flag alone
  is true. NAME_OR_UUID fills the uuid parameter (several: one call each, vm stop a b c);
  names are accepted wherever a resource is referenced. --image, --offering, --network,
  --host, --zone, --cidr, --vm... name the parameter they end (imageUuid,
  instanceOfferingUuid, l3NetworkUuids...). Sizes take K, M, G, T (--memory-size 2G); enum
  values any case. For list and Query APIs, key=value that is not a parameter is a query
  condition; --key that is not one is an error. --sort-by -name sorts descending.
  In batch files and the shell, # starts a comment at the start of a word; \\, is a comma
  inside a list item. ZStack's conditions= and timeout= (milliseconds) are accepted.
  --some-key-file FILE reads someKey (or someKeys) from FILE: a text parameter takes the
  file's text (base64 when it is not UTF-8), a list one its non-empty lines not starting
  with # (vm create --user-data-file F --ssh-key-file K).

on a terminal:
  tables show names for references, a short id, sizes, ages and coloured states (NO_COLOR),
  sorted by name and cut to the width; -o wide shows more; get prints a summary. Destroying
  a running VM or deleting what others depend on asks first (-y does not); each change is
  told in one line on stderr. Into a pipe the output stays what scripts read.

environment:
  ZMN_ENDPOINT, ZMN_SESSION, ZMN_HOME, NO_COLOR, XDG_CONFIG_HOME (zcli/sessions.json),
  XDG_CACHE_HOME (zcli/catalogue-HASH.json)
"""

EXIT_STATUSES = """\
exit status:
  0    success
  1    failed: the operation failed and was rolled back, permission denied, session expired
  2    usage: unknown resource, verb or parameter, or a bad value
  3    not found
  4    conflict or wrong state (dependents exist, duplicate, not allowed in this state)
  5    unavailable: the management node cannot be reached or is stopping
  124  a wait timed out (--timeout); the operation may still finish
  130  interrupted (Ctrl-C)
"""


def render_help(req: Help, catalogue: Catalogue | None) -> str:
    topic = req.topic
    if catalogue is None:
        return (
            USAGE
            + "\n(the management node cannot be reached: resources are not listed)\n\n"
            + OPTIONS
            + "\n"
            + EXIT_STATUSES
        )
    if not topic:
        return USAGE + "\n" + resources_text(catalogue) + "\n" + OPTIONS + "\n" + EXIT_STATUSES
    if topic[0] == "api":
        if len(topic) == 1:
            return apis_text(catalogue)
        api = catalogue.apis.get(topic[1])
        if api is None:
            raise UsageError(
                f"no API named {topic[1]!r}{did_you_mean(topic[1], list(catalogue.apis))}",
                field="api",
            )
        return api_text(api, f"zcli api {api.name}", catalogue.resource_of_type(api.resource))
    res = catalogue.resource(topic[0])
    if res is None:
        words = catalogue.resource_words()
        raise UsageError(
            f"unknown resource {topic[0]!r}{did_you_mean(topic[0], words)}", field=topic[0]
        )
    if len(topic) == 1:
        return resource_text(res, catalogue)
    verb = topic[1]
    if verb in ("list", "get") and res.query:
        return query_text(res, verb, catalogue)
    name = res.verbs.get(verb)
    if verb in res.groups:
        return "\n".join(
            api_text(catalogue.apis[n], f"zcli {res.cli} {verb}", res) for n in res.groups[verb]
        )
    if name is None:
        verbs = catalogue.verbs(res)
        raise UsageError(
            f"{res.cli} has no verb {verb!r}{did_you_mean(verb, verbs)}"
            f" (verbs: {', '.join(verbs)})",
            field="verb",
        )
    return api_text(catalogue.apis[name], f"zcli {res.cli} {verb}", res)


def resources_text(catalogue: Catalogue) -> str:
    lines = ["resources and verbs (zcli <resource> --help for more):"]
    for cli in sorted(catalogue.resources):
        res = catalogue.resources[cli]
        aliases = catalogue.aliases_of(res)
        name = cli + (f" ({', '.join(aliases)})" if aliases else "")
        lines.append(f"  {name:<24} {', '.join(catalogue.verbs(res))}")
    lines.append("  api                      any API by name (zcli api --help lists them)")
    return "\n".join(lines) + "\n"


def apis_text(catalogue: Catalogue) -> str:
    width = max((len(n) for n in catalogue.apis), default=10)
    lines = ["usage: zcli api <ApiName> [key=value ...]", "", "APIs:"]
    lines += [f"  {a.name:<{width}}  {a.summary}" for a in catalogue.apis.values()]
    return "\n".join(lines) + "\n"


def resource_text(res: Resource, catalogue: Catalogue) -> str:
    lines = [f"usage: zcli {res.cli} <verb> [NAME_OR_UUID] [key=value ...] [--key value ...]", ""]
    if res.summary:
        lines += [f"{res.name}: {res.summary}", ""]
    aliases = catalogue.aliases_of(res)
    if aliases:
        lines += [f"aliases: {', '.join(aliases)}", ""]
    lines.append("verbs:")
    if res.query:
        lines.append(
            f"  {'list':<28} query {res.name} resources ({res.query}); conditions FIELD OP VALUE"
        )
        lines.append(f"  {'get NAME_OR_UUID':<28} show one {res.name}")
    for verb in sorted({*res.verbs, *res.groups}):
        summary, name = catalogue.verb_summary(res, verb)
        text = summary if verb in res.groups else f"{summary} ({name})"
        lines.append(f"  {verb:<28} {text}")
    lines += ["", f"table columns: {', '.join(res.columns)}"]
    return "\n".join(lines) + "\n"


def params_lines(api: Api, skip: tuple[str, ...] = ()) -> list[str]:
    lines = []
    for p in api.params.values():
        if p.name in skip:
            continue
        kind = "flag" if p.type == "bool" else p.type_text()
        need = "required" if p.required else f"default {_default(p.default)}"
        lines.append(f"  --{kebab(p.name)}, {p.name}=  {kind}; {need}")
        if p.doc:
            lines.append(f"      {p.doc}")
    return lines


def api_text(api: Api, prefix: str, res: Resource | None) -> str:
    slot = None if prefix.startswith("zcli api") else positional_slot(api)
    positional = f" [{'NAME' if slot == 'name' else 'NAME_OR_UUID'}]" if slot else ""
    lines = [
        f"usage: {prefix}{positional} [key=value ...] [--key value ...]",
        "",
        f"{api.name}: {api.doc or api.summary}",
    ]
    if api.long:
        lines.append("long operation: waits and shows progress; --no-wait prints the job UUID")
    lines += ["", "parameters:", *(params_lines(api) or ["  (none)"])]
    if api.is_query and res is not None:
        lines += ["", *fields_lines(res)]
    return "\n".join(lines) + "\n"


def query_text(res: Resource, verb: str, catalogue: Catalogue) -> str:
    api = catalogue.apis[res.query or ""]
    if verb == "get":
        lines = [
            f"usage: zcli {res.cli} get NAME_OR_UUID",
            "",
            f"show one {res.name} ({api.name} by uuid or name); exit status 3 when none matches",
        ]
    else:
        ops = " ".join(o["op"] for o in catalogue.data.get("query", {}).get("operators", []))
        lines = [
            f"usage: zcli {res.cli} list [FIELD OP VALUE ...] [--count] [--limit N] [--sort-by F]",
            "",
            f"{api.doc or api.summary}",
            f"operators: {ops}",
            "",
            "options:",
            *params_lines(api, skip=("conditions",)),
        ]
    lines += ["", *fields_lines(res)]
    return "\n".join(lines) + "\n"


def fields_lines(res: Resource) -> list[str]:
    lines = [f"fields of {res.name}:"]
    for f in res.fields:
        kind = "|".join(f["enum"]) if f.get("enum") else f.get("type", "")
        doc = f"  {f['doc']}" if f.get("doc") else ""
        lines.append(f"  {f['name']:<24} {kind}{doc}")
    if res.joins:
        lines.append("joins (FIELD may be join.field, e.g. " + f"{res.joins[0]['name']}.name):")
        lines += [f"  {j['name']:<24} {j['resource']}" for j in res.joins]
    return lines


def _default(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == []:
        return "[]"
    return str(value)
