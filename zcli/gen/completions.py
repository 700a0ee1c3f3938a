"""bash, zsh and fish completion scripts for ``zcli``, generated from the catalogue.

What the catalogue fixes is static in the scripts: global options, commands, resources,
their verbs and API names. The rest (parameters, query fields through joins, operators,
enum values, live UUIDs) comes from ``zcli __complete``, run under ``timeout`` and its own
time budget so that a Tab never hangs on a node that does not answer.
"""

from __future__ import annotations

from typing import Any

from zcli.catalogue import Catalogue
from zcli.complete import COMMANDS, SCRIPT_COMMANDS
from zcli.options import _OPTIONS, OUTPUTS

HEADER = (
    "Generated from the API catalogue by `make completions` (python -m zcli.gen\n"
    "completions); do not edit. Static: options, commands, resources, verbs, API names.\n"
    "Dynamic (parameters, query fields and joins, values, live UUIDs): `zcli __complete`,\n"
    "bounded by `timeout` and ZCLI_COMPLETE_BUDGET so that Tab never hangs.\n"
)
TIMEOUT = 2  # seconds: the outer bound; zcli's own budget is shorter


class Model:
    """The words the scripts list, from one catalogue."""

    def __init__(self, data: dict[str, Any]) -> None:
        cat = Catalogue(data)
        self.commands: dict[str, str] = {**COMMANDS, **SCRIPT_COMMANDS}
        self.resources: dict[str, str] = {}
        self.verbs: dict[str, list[tuple[str, str]]] = {}
        for word in cat.resource_words():
            res = cat.resource(word)
            assert res is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
            self.resources[word] = _one_line(res.summary or res.name)
            verbs = []
            for verb in cat.verbs(res):
                if verb in ("list", "get"):
                    doc = f"query {res.name}" if verb == "list" else f"show one {res.name}"
                else:
                    doc = cat.verb_summary(res, verb)[0]
                verbs.append((verb, _one_line(doc)))
            self.verbs[word] = verbs
        self.commands.update(self.resources)
        self.commands = dict(sorted(self.commands.items()))
        self.apis = {name: _one_line(cat.apis[name].summary) for name in sorted(cat.apis)}
        self.options = sorted(_OPTIONS)
        self.valued = sorted(o for o, (_attr, takes) in _OPTIONS.items() if takes)
        self.outputs = list(OUTPUTS)


def _one_line(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _sq(text: str) -> str:
    """Single-quote for sh, zsh and fish alike (no single quotes inside)."""
    return "'" + text.replace("'", "") + "'"


def _comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def generate(data: dict[str, Any]) -> dict[str, str]:
    model = Model(data)
    return {
        "completions/zcli.bash": bash(model),
        "completions/_zcli": zsh(model),
        "completions/zcli.fish": fish(model),
    }


# --------------------------------------------------------------------------- bash


def bash(m: Model) -> str:
    valued = "|".join(m.valued)
    cases = "".join(
        f"        {word}) echo {_sq(' '.join(v for v, _ in verbs))} ;;\n"
        for word, verbs in m.verbs.items()
    )
    return f"""\
# bash completion for zcli. Source it, or install it as
# /usr/share/bash-completion/completions/zcli.
{_comment(HEADER)}
_zcli_options={_sq(" ".join(m.options))}
_zcli_commands={_sq(" ".join(m.commands))}
_zcli_resources={_sq(" ".join(m.resources))}
_zcli_apis={_sq(" ".join(m.apis))}

_zcli_verbs() {{
    case "$1" in
{cases}    esac
}}

_zcli_run() {{
    if command -v timeout >/dev/null 2>&1; then
        timeout {TIMEOUT} "${{ZCLI_COMMAND:-zcli}}" "$@"
    else
        "${{ZCLI_COMMAND:-zcli}}" "$@"
    fi
}}

# Fill COMPREPLY from a word list (no globbing, no word splitting of the results).
_zcli_words() {{
    local list="$1" cur="$2"
    mapfile -t COMPREPLY < <(compgen -W "$list" -- "$cur")
}}

_zcli_dynamic() {{
    local cur="${{!#}}" out line nospace=""
    out="$(_zcli_run __complete -- "$@" 2>/dev/null)"
    # bash replaces only the part of the word after its last = or :
    local pre="${{cur%"${{cur##*[=:]}}"}}"
    COMPREPLY=()
    while IFS= read -r line; do
        [[ -z "$line" ]] && continue
        line="${{line%%$'\\t'*}}"
        [[ "$line" == *[=.,] ]] && nospace=1
        COMPREPLY+=("${{line#"$pre"}}")
    done <<< "$out"
    [[ -n "$nospace" ]] && compopt -o nospace 2>/dev/null
    return 0
}}

_zcli() {{
    local line="${{COMP_LINE:0:COMP_POINT}}"
    local -a words
    read -r -a words <<< "$line"
    if [[ ${{#words[@]}} -eq 0 || "$line" =~ [[:space:]]$ ]]; then
        words+=("")
    fi
    local n=$(( ${{#words[@]}} - 1 )) i=1
    local cur="${{words[n]}}"
    while (( i < n )); do
        case "${{words[i]}}" in
            --*=*) ;;
            {valued}) (( i++ )) ;;
            -*) ;;
            *) break ;;
        esac
        (( i++ ))
    done
    COMPREPLY=()
    if (( i >= n )); then
        case "${{words[n-1]}}" in
            -o|--output) _zcli_words {_sq(" ".join(m.outputs))} "$cur"; return 0 ;;
            -f|--file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
            {valued}) [[ $n -gt 1 ]] && return 0 ;;
        esac
        if [[ "$cur" == -* ]]; then
            _zcli_words "$_zcli_options" "$cur"
        else
            _zcli_words "$_zcli_commands" "$cur"
        fi
        return 0
    fi
    local cmd="${{words[i]}}"
    if (( n == i + 1 )) && [[ "$cur" != -* ]]; then
        case "$cmd" in
            api) _zcli_words "$_zcli_apis" "$cur"; return 0 ;;
            help) _zcli_words "$_zcli_resources api" "$cur"; return 0 ;;
            login|logout|shell) ;;
            *)
                local verbs
                verbs="$(_zcli_verbs "$cmd")"
                if [[ -n "$verbs" ]]; then
                    _zcli_words "$verbs" "$cur"
                    return 0
                fi
                ;;
        esac
    fi
    if (( n == i + 2 )) && [[ "$cmd" == help ]]; then
        if [[ "${{words[i+1]}}" == api ]]; then
            _zcli_words "$_zcli_apis" "$cur"
        else
            _zcli_words "$(_zcli_verbs "${{words[i+1]}}")" "$cur"
        fi
        return 0
    fi
    _zcli_dynamic "${{words[@]:1}}"
}}

complete -F _zcli zcli
"""


# --------------------------------------------------------------------------- zsh


def _zsh_desc(word: str, doc: str) -> str:
    return _sq(f"{word.replace(':', chr(92) + ':')}:{doc}")


def _zsh_array(name: str, items: dict[str, str] | list[tuple[str, str]]) -> str:
    pairs = items.items() if isinstance(items, dict) else items
    body = "".join(f"    {_zsh_desc(w, d)}\n" for w, d in pairs)
    return f"{name}=(\n{body})\n"


def zsh(m: Model) -> str:
    valued = "|".join(m.valued)
    cases = "".join(
        f"        {word}) verbs=({' '.join(_zsh_desc(v, d) for v, d in verbs)}) ;;\n"
        for word, verbs in m.verbs.items()
    )
    return f"""\
#compdef zcli
# zsh completion for zcli: put this file, named _zcli, in a directory of $fpath.
{_comment(HEADER)}
{_zsh_array("_zcli_commands", m.commands)}
{_zsh_array("_zcli_apis", m.apis)}
_zcli_resources=({" ".join(_sq(r) for r in m.resources)})

_zcli_verbs() {{
    local -a verbs
    case "$1" in
{cases}    esac
    (( $#verbs )) || return 1
    _describe -t verbs 'verb' verbs
}}

_zcli_run() {{
    if (( $+commands[timeout] )); then
        timeout {TIMEOUT} "${{ZCLI_COMMAND:-zcli}}" "$@"
    else
        "${{ZCLI_COMMAND:-zcli}}" "$@"
    fi
}}

_zcli_dynamic() {{
    local out line text desc
    local -a done_words done_show more_words more_show
    out="$(_zcli_run __complete -- "${{(@)words[2,CURRENT]}}" 2>/dev/null)"
    for line in "${{(@f)out}}"; do
        [[ -z "$line" ]] && continue
        text="${{line%%$'\\t'*}}"
        desc="${{line#*$'\\t'}}"
        [[ "$desc" == "$line" ]] && desc=""
        if [[ "$text" == *[=.,] ]]; then
            more_words+=("$text"); more_show+=("$text${{desc:+  -- $desc}}")
        else
            done_words+=("$text"); done_show+=("$text${{desc:+  -- $desc}}")
        fi
    done
    (( $#more_words )) && compadd -U -Q -S '' -l -d more_show -a more_words
    (( $#done_words )) && compadd -U -Q -l -d done_show -a done_words
    return 0
}}

_zcli() {{
    local n=$CURRENT i=2 cur="${{words[CURRENT]}}"
    while (( i < n )); do
        case "${{words[i]}}" in
            --*=*) ;;
            {valued}) (( i++ )) ;;
            -*) ;;
            *) break ;;
        esac
        (( i++ ))
    done
    if (( i >= n )); then
        case "${{words[n-1]}}" in
            -o|--output) compadd -- {" ".join(m.outputs)}; return ;;
            -f|--file) _files; return ;;
            {valued}) (( n > 2 )) && return 1 ;;
        esac
        if [[ "$cur" == -* ]]; then
            compadd -- {" ".join(m.options)}
        else
            _describe -t commands 'zcli command' _zcli_commands
        fi
        return
    fi
    local cmd="${{words[i]}}"
    if (( n == i + 1 )) && [[ "$cur" != -* ]]; then
        case "$cmd" in
            api) _describe -t apis 'API' _zcli_apis; return ;;
            help) compadd -- $_zcli_resources api; return ;;
            login|logout|shell) ;;
            *) _zcli_verbs "$cmd" && return ;;
        esac
    fi
    if (( n == i + 2 )) && [[ "$cmd" == help ]]; then
        if [[ "${{words[i+1]}}" == api ]]; then
            _describe -t apis 'API' _zcli_apis
        else
            _zcli_verbs "${{words[i+1]}}"
        fi
        return
    fi
    _zcli_dynamic
}}

if [[ "$funcstack[1]" == _zcli ]]; then
    _zcli "$@"
else
    compdef _zcli zcli
fi
"""


# --------------------------------------------------------------------------- fish


def fish(m: Model) -> str:
    valued = " ".join(m.valued)
    lines = [
        "# fish completion for zcli: put it in ~/.config/fish/completions/zcli.fish.",
        _comment(HEADER).rstrip("\n"),
        "",
        "# Where the word under the cursor is: option-value, command, verb:<cmd>, api,",
        "# help, help-verb:<resource> or dynamic.",
        "function __zcli_position",
        "    set -l words (commandline -opc)",
        "    set -l n (count $words)",
        "    set -l i 2",
        "    while test $i -le $n",
        "        switch $words[$i]",
        "            case '--*=*'",
        f"            case {valued}",
        "                if test $i -eq $n",
        "                    echo option-value",
        "                    return",
        "                end",
        "                set i (math $i + 1)",
        "            case '-*'",
        "            case '*'",
        "                break",
        "        end",
        "        set i (math $i + 1)",
        "    end",
        "    if test $i -gt $n",
        "        echo command",
        "    else if test $i -eq $n",
        "        switch $words[$i]",
        "            case api",
        "                echo api",
        "            case help",
        "                echo help",
        "            case login logout shell",
        "                echo dynamic",
        "            case '*'",
        "                echo verb:$words[$i]",
        "        end",
        "    else if test $i -eq (math $n - 1); and test $words[$i] = help",
        "        if test $words[$n] = api",
        "            echo api",
        "        else",
        "            echo help-verb:$words[$n]",
        "        end",
        "    else",
        "        echo dynamic",
        "    end",
        "end",
        "",
        "function __zcli_at -a where",
        "    test (__zcli_position) = $where",
        "end",
        "",
        "function __zcli_dynamic",
        "    set -l words (commandline -opc) (commandline -ct)",
        "    set -e words[1]",
        "    set -l zcli zcli",
        "    set -q ZCLI_COMMAND; and set zcli $ZCLI_COMMAND",
        "    if command -q timeout",
        f"        timeout {TIMEOUT} $zcli __complete -- $words 2>/dev/null",
        "    else",
        "        $zcli __complete -- $words 2>/dev/null",
        "    end",
        "end",
        "",
        "complete -c zcli -f",
        "complete -c zcli -n '__zcli_at dynamic' -a '(__zcli_dynamic)'",
        "complete -c zcli -n '__zcli_at option-value; and contains -- (commandline -opc)[-1]"
        " -o --output' -a " + _sq(" ".join(m.outputs)),
        "complete -c zcli -n '__zcli_at option-value; and contains -- (commandline -opc)[-1]"
        " -f --file' -F",
    ]
    for opt in m.options:
        flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
        req = " -r" if opt in m.valued else ""
        lines.append(f"complete -c zcli -n '__zcli_at command' {flag}{req}")
    for word, doc in m.commands.items():
        lines.append(f"complete -c zcli -n '__zcli_at command' -a {word} -d {_sq(doc)}")
    for name, doc in m.apis.items():
        lines.append(f"complete -c zcli -n '__zcli_at api' -a {name} -d {_sq(doc)}")
    for word in [*m.resources, "api"]:
        lines.append(f"complete -c zcli -n '__zcli_at help' -a {word}")
    for word, verbs in m.verbs.items():
        for verb, doc in verbs:
            for where in (f"verb:{word}", f"help-verb:{word}"):
                lines.append(f"complete -c zcli -n '__zcli_at {where}' -a {verb} -d {_sq(doc)}")
    return "\n".join(lines) + "\n"
