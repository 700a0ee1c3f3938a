"""The playbook runner and the shipped playbook, against a scripted remote (no SSH).

The remote is a tiny stand-in for a host: a dict of files and a rule for which commands
succeed, so the runner's guards, change tracking, quoting and uploads are checked exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from zmn.api.errors import InvalidArgument, OperationFailed
from zmn.services.kvm.playbook import Playbook, PlaybookRun, render_command
from zmn.services.kvm.service import DEFAULT_PLAYBOOK


@dataclass
class Res:
    exited: int
    stdout: str = ""
    stderr: str = ""


class FakeRemote:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.commands: list[str] = []
        self.ok: set[str] = set()  # commands (exact) that succeed as guards
        self.stdout: dict[str, str] = {}

    def run(self, command: str, *, check: bool = True) -> Res:
        self.commands.append(command)
        if command.startswith("sha256sum "):
            path = command.split()[1]
            if path in self.files:
                return Res(0, hashlib.sha256(self.files[path]).hexdigest() + "  " + path)
            return Res(1)
        if command.startswith("false"):
            if check:
                raise OperationFailed("exit 1", code="KVM.DEPLOY_FAILED")
            return Res(1)
        guard = command.startswith(("test ", "probe"))
        code = 0 if (not guard or command in self.ok) else 1
        return Res(code, self.stdout.get(command, ""))

    def upload(self, data: bytes, dest: str, mode: int) -> None:
        self.files[dest] = data


def book(tmp_path: Path, text: str) -> Playbook:
    path = tmp_path / "book.yaml"
    path.write_text(text)
    return Playbook.load(path)


def test_commands_get_shell_quoted_variables(tmp_path: Path) -> None:
    assert render_command("ls {{ d }}/x {{d}}", {"d": "/a b"}) == "ls '/a b'/x '/a b'"
    assert render_command("echo {{ v }}", {"v": "$(reboot)"}) == "echo '$(reboot)'"
    assert render_command("{ true; }", {}) == "{ true; }"  # shell braces are left alone
    with pytest.raises(InvalidArgument):
        render_command("echo {{ missing }}", {})


def test_guards_change_tracking_and_uploads(tmp_path: Path) -> None:
    b = book(
        tmp_path,
        """
vars: {dir: /opt/x}
plays:
  one:
    - name: check
      run: echo hi
      changed_when: false
    - name: mkdir
      unless: test -d {{ dir }}
      run: mkdir {{ dir }}
    - name: conf
      upload: {var: conf, dest: "{{ dir }}/conf", mode: "0600"}
    - name: restart
      when_changed: [conf]
      run: restart
    - name: probe
      run: probe-version
      register: version
      ignore_errors: true
""",
    )
    remote = FakeRemote()
    run = PlaybookRun(b, remote, {"conf": "a=1\n"})
    run.play("one")
    assert run.changed == {"mkdir", "conf", "restart"}
    assert remote.files["/opt/x/conf"] == b"a=1\n"
    assert "restart" in remote.commands
    # second run: the directory exists, the file is the same: nothing changes, no restart
    remote.ok.add("test -d /opt/x")
    remote.commands.clear()
    again = PlaybookRun(b, remote, {"conf": "a=1\n"})
    again.play("one")
    assert again.changed == set() and "restart" not in remote.commands
    assert "chmod 0600 /opt/x/conf" in remote.commands
    # a changed config is uploaded and restarts
    third = PlaybookRun(b, remote, {"conf": "a=2\n"})
    third.play("one")
    assert third.changed == {"conf", "restart"}


def test_a_failing_step_names_itself(tmp_path: Path) -> None:
    b = book(tmp_path, 'plays:\n  p:\n    - name: boom\n      run: "false"\n')
    with pytest.raises(OperationFailed) as caught:
        PlaybookRun(b, FakeRemote(), {}).play("p")
    assert caught.value.details["step"] == "p/boom" and "boom" in caught.value.message


def test_malformed_playbooks_are_refused(tmp_path: Path) -> None:
    for text in ("plays: 3", "plays:\n  p:\n    - run: x\n",
                 "plays:\n  p:\n    - name: a\n      run: x\n      upload: {}\n",
                 "plays:\n  p:\n    - name: a\n      rn: x\n"):  # fmt: skip
        with pytest.raises(InvalidArgument):
            book(tmp_path, text)


def test_sync_ships_missing_wheels_and_removes_stale_ones(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    (wh / "a-1.whl").write_bytes(b"aaaa")
    (wh / "b-1.whl").write_bytes(b"bb")
    b = book(tmp_path, "plays:\n  p:\n    - name: s\n      sync: {src: wh, dest: /w}\n")

    class Listing(FakeRemote):
        def run(self, command: str, *, check: bool = True) -> Res:
            if command.startswith("mkdir -p /w && find"):
                self.commands.append(command)
                return Res(0, "a-1.whl 4\nold-0.whl 9\n")
            return super().run(command, check=check)

    remote = Listing()
    run = PlaybookRun(b, remote, {"wh": str(wh)})
    run.play("p")
    assert set(remote.files) == {"/w/b-1.whl"}  # a-1 is there with the same size
    assert "rm -f /w/old-0.whl" in remote.commands and run.changed == {"s"}


def test_the_shipped_playbook_loads_and_renders() -> None:
    b = Playbook.load(DEFAULT_PLAYBOOK)
    assert set(b.plays) >= {"probe", "deploy", "configure", "stop"}
    variables = {**b.vars, "agent_version": "0.1.0+x"}
    for steps in b.plays.values():
        for step in steps:
            for template in (step.when, step.unless, step.arg if step.action == "run" else None):
                if template:
                    render_command(str(template), variables)
    # the secret is uploaded, never part of a command
    uploads = [s for s in b.play("configure") if s.action == "upload"]
    assert {s.arg.get("var") for s in uploads} == {"secret", "config"}
    assert all("secret" not in str(s.arg) for s in b.play("configure") if s.action == "run")
