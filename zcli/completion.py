"""``zcli completion bash|zsh|fish``: print the completion script for a shell.

The script is generated from the catalogue of the node zcli talks to (or the newest cached
one when it does not answer), the same way ``make completions`` writes ``completions/``.
Install it with::

    zcli completion bash > ~/.local/share/bash-completion/completions/zcli
    zcli completion zsh > "${fpath[1]}/_zcli"
    zcli completion fish > ~/.config/fish/completions/zcli.fish
"""

from __future__ import annotations

from zcli.parser import UsageError, did_you_mean

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from zcli.runner import Runner

SHELLS = {
    "bash": "completions/zcli.bash",
    "zsh": "completions/_zcli",
    "fish": "completions/zcli.fish",
}


def completion(runner: Runner, args: list[str]) -> int:
    if len(args) != 1 or args[0] not in SHELLS:
        given = args[0] if args else ""
        raise UsageError(
            f"completion takes one shell: {', '.join(SHELLS)}"
            + (f" (got {given!r}{did_you_mean(given, list(SHELLS))})" if given else ""),
            field="shell",
            choices=list(SHELLS),
        )
    cat = runner.catalogue(optional=True)
    if cat is None:
        raise UsageError(
            "no catalogue: the node does not answer and none is cached (run zcli once"
            " against a node, or use the scripts in completions/)",
            code="CLI.NO_CATALOGUE",
            field="endpoint",
        )
    from zcli.gen.completions import generate

    runner.out.write(generate(cat.data)[SHELLS[args[0]]])
    return 0
