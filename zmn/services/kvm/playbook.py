"""The playbook runner: named plays of idempotent steps, run on one host over SSH.

A playbook (``playbooks/kvm-agent.yaml``) is YAML: ``vars`` (defaults) and ``plays`` (name ->
steps). A step has a ``name`` and one action:

``run: CMD``            a shell command; ``register: VAR`` keeps its stdout as a variable
``upload: {...}``       ``src`` (a file beside the playbook, ``template: true`` to fill in
                        ``{{ var }}``) or ``var`` (a variable's content) to ``dest`` with ``mode``;
                        skipped when the host's file already has that content
``sync: {src, dest}``   make the remote directory hold exactly the ``*.whl`` files of the local
                        directory named by variable ``src`` (by name and size)

and optional guards: ``when: CMD`` (only if CMD succeeds), ``unless: CMD`` (skip if CMD
succeeds), ``when_changed: [step names]`` (only if one of those steps changed something in this
run), ``ignore_errors: true``; and ``changed_when: false`` (a check: never a change) or
``changed_when: TEXT`` (a change only when the command printed TEXT).

Variables holding secrets are only ever uploaded (through SFTP), never put on a command line,
and the runner's log names steps, not contents.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from zmn.api.errors import InvalidArgument, OperationFailed

_ACTIONS = ("run", "upload", "sync")
_STEP_KEYS = {
    "name", "when", "unless", "when_changed", "changed_when", "register", "ignore_errors",
    *_ACTIONS,
}  # fmt: skip


class RemoteLike(Protocol):
    def run(self, command: str, *, check: bool = True) -> Any: ...

    def upload(self, data: bytes, dest: str, mode: int) -> None: ...


@dataclass(frozen=True)
class Step:
    name: str
    action: str
    arg: Any
    when: str | None = None
    unless: str | None = None
    when_changed: tuple[str, ...] = ()
    register: str | None = None
    ignore_errors: bool = False
    changed_when: str | bool = True  # False: a check; text: changed if stdout has it


@dataclass
class Playbook:
    path: Path
    vars: dict[str, str]
    plays: dict[str, list[Step]]

    @classmethod
    def load(cls, path: Path) -> Playbook:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidArgument(f"playbook {path}: {exc}", code="KVM.BAD_PLAYBOOK") from exc
        if not isinstance(data, dict) or not isinstance(data.get("plays"), dict):
            raise InvalidArgument(
                f"playbook {path}: needs a 'plays' mapping", code="KVM.BAD_PLAYBOOK"
            )
        plays = {
            str(name): [_step(path, str(name), i, raw) for i, raw in enumerate(steps or [])]
            for name, steps in data["plays"].items()
        }
        return cls(path, {str(k): str(v) for k, v in (data.get("vars") or {}).items()}, plays)

    def play(self, name: str) -> list[Step]:
        steps = self.plays.get(name)
        if steps is None:
            raise InvalidArgument(
                f"playbook {self.path} has no play {name!r}", code="KVM.BAD_PLAYBOOK"
            )
        return steps


def _step(path: Path, play: str, index: int, raw: Any) -> Step:
    where = f"playbook {path}: play {play} step {index + 1}"
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: must be a mapping", code="KVM.BAD_PLAYBOOK")
    unknown = sorted(set(raw) - _STEP_KEYS)
    actions = [a for a in _ACTIONS if a in raw]
    if unknown or len(actions) != 1 or not raw.get("name"):
        raise InvalidArgument(
            f"{where}: needs a name and exactly one of {', '.join(_ACTIONS)}"
            + (f" (unknown keys: {', '.join(unknown)})" if unknown else ""),
            code="KVM.BAD_PLAYBOOK",
        )
    changed = raw.get("when_changed") or []
    return Step(
        name=str(raw["name"]),
        action=actions[0],
        arg=raw[actions[0]],
        when=raw.get("when"),
        unless=raw.get("unless"),
        when_changed=tuple(str(c) for c in changed),
        register=raw.get("register"),
        ignore_errors=bool(raw.get("ignore_errors", False)),
        changed_when=raw.get("changed_when", True),
    )


_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _fill(text: str, variables: dict[str, Any], quote: bool) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in variables:
            raise InvalidArgument(
                f"playbook uses unknown variable {name!r}", code="KVM.BAD_PLAYBOOK"
            )
        value = str(variables[name])
        return shlex.quote(value) if quote else value

    return _VAR.sub(one, text)


def render_command(template: str, variables: dict[str, Any]) -> str:
    """``{{ var }}`` replaced by the shell-quoted value (newlines folded to spaces)."""
    return _fill(" ".join(template.split("\n")), variables, quote=True)


def render_template(text: str, variables: dict[str, Any]) -> str:
    """``{{ var }}`` replaced by the value as it is (uploaded files)."""
    return _fill(text, variables, quote=False)


@dataclass
class PlaybookRun:
    """One run of plays against one host; ``changed`` and ``log`` span every play run."""

    book: Playbook
    remote: RemoteLike
    variables: dict[str, Any]
    changed: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.variables = {**self.book.vars, **self.variables}

    def play(self, name: str) -> None:
        for step in self.book.play(name):
            self._step(name, step)

    def _ok(self, template: str) -> bool:
        return (
            int(self.remote.run(render_command(template, self.variables), check=False).exited) == 0
        )

    def _step(self, play: str, step: Step) -> None:
        label = f"{play}/{step.name}"
        if step.when_changed and not self.changed.intersection(step.when_changed):
            self.log.append(f"{label}: skipped (nothing it depends on changed)")
            return
        if step.when is not None and not self._ok(step.when):
            self.log.append(f"{label}: skipped (condition false)")
            return
        if step.unless is not None and self._ok(step.unless):
            self.log.append(f"{label}: ok (already done)")
            return
        started = time.monotonic()
        try:
            changed = getattr(self, f"_do_{step.action}")(step)
        except OperationFailed as exc:
            if step.ignore_errors:
                self.log.append(f"{label}: failed, ignored")
                if step.register:
                    self.variables[step.register] = ""
                return
            raise OperationFailed(
                f"deployment step {label!r} failed: {exc.message}",
                code=exc.code,
                step=label,
                **{k: v for k, v in exc.details.items() if k != "step"},
            ) from exc
        if changed:
            self.changed.add(step.name)
        took = time.monotonic() - started
        self.log.append(f"{label}: {'changed' if changed else 'ok'} ({took:.1f} s)")

    def _do_run(self, step: Step) -> bool:
        result = self.remote.run(render_command(str(step.arg), self.variables))
        if step.register:
            self.variables[step.register] = str(result.stdout).strip()
            return False
        if isinstance(step.changed_when, str):
            return step.changed_when in str(result.stdout)
        return bool(step.changed_when)

    def _do_upload(self, step: Step) -> bool:
        spec = step.arg
        if not isinstance(spec, dict) or "dest" not in spec:
            raise InvalidArgument(f"step {step.name}: upload needs dest", code="KVM.BAD_PLAYBOOK")
        if "var" in spec:
            content = self.variables[str(spec["var"])]
            data = content if isinstance(content, bytes) else str(content).encode()
        else:
            text = (self.book.path.parent / str(spec["src"])).read_text(encoding="utf-8")
            if spec.get("template"):
                text = render_template(text, self.variables)
            data = text.encode()
        dest = render_command(str(spec["dest"]), self.variables)
        mode = int(str(spec.get("mode", "0644")), 8)
        digest = hashlib.sha256(data).hexdigest()
        have = self.remote.run(f"sha256sum {dest} 2>/dev/null", check=False)
        if int(have.exited) == 0 and str(have.stdout).split(" ", 1)[0] == digest:
            self.remote.run(f"chmod {mode:04o} {dest}")
            return False
        self.remote.upload(data, shlex.split(dest)[0], mode)
        return True

    def _do_sync(self, step: Step) -> bool:
        spec = step.arg
        local = Path(str(self.variables[str(spec["src"])]))
        dest = render_command(str(spec["dest"]), self.variables)
        listing = self.remote.run(
            f"mkdir -p {dest} && find {dest} -maxdepth 1 -name '*.whl' -type f -printf '%f %s\\n'"
        )
        remote: dict[str, int] = {}
        for line in str(listing.stdout).splitlines():
            fname, _, size = line.rpartition(" ")
            if fname and size.isdigit():
                remote[fname] = int(size)
        wanted = {p.name: p for p in sorted(local.glob("*.whl"))}
        changed = False
        root = shlex.split(dest)[0]
        for fname, path in wanted.items():
            if remote.get(fname) != path.stat().st_size:
                self.remote.upload(path.read_bytes(), posixpath.join(root, fname), 0o644)
                changed = True
        stale = sorted(set(remote) - set(wanted))
        if stale:
            self.remote.run(
                "rm -f " + " ".join(shlex.quote(posixpath.join(root, f)) for f in stale)
            )
            changed = True
        return changed
