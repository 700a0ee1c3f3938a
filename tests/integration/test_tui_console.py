"""The dashboard's ``console`` action for real: ``ztui`` in a pseudo-terminal against a node
with an in-process KVM agent (fake driver). The dashboard steps aside, the serial console
takes the terminal, ``Ctrl-]`` brings the dashboard back."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pexpect

from tests.integration import test_vm_console
from tests.integration.test_vm_console import endpoint, make_vm
from tests.support.kvmagents import Env
from tui.catalogue import Catalogue

env = test_vm_console.env  # the fixture


async def test_console_action_suspends_the_dashboard_and_comes_back(
    env: Env,
    tmp_path: Path,
) -> None:
    vm = await make_vm(env, "dash-vm")
    assert vm["state"] == "Running"
    catalogue, _ = await env.node.execute("GetApiCatalogue", {}, peer_admin=True)
    cat = Catalogue(catalogue["catalogue"])
    # the menu lists what the VM's state permits, in the catalogue's order
    offered = [a for a in cat.actions("VmInstance") if cat.permits("VmInstance", a, vm)]
    index = [a.label for a in offered].index("console")
    ztui = str(Path(sys.executable).with_name("ztui"))
    envvars = {**os.environ, "TERM": "xterm-256color", "ZMN_HOME": str(tmp_path / "zh"),
               "XDG_CONFIG_HOME": str(tmp_path / "cfg")}  # fmt: skip

    def drive() -> int:
        child = pexpect.spawn(ztui, ["--endpoint", endpoint(env)], env=envvars, timeout=30,
                              dimensions=(40, 120), encoding="utf-8", codec_errors="replace")  # fmt: skip
        try:
            child.expect("Overview|overview")
            child.expect("Quit")  # the footer: the screen is mounted and takes keys
            child.send(":")
            child.send("vm\r")
            try:
                child.expect("dash-vm")
            except pexpect.TIMEOUT:
                raise AssertionError(f"no dash-vm on the screen: {child.before!r}") from None
            child.send("a")
            child.expect("console")
            child.send("\x1b[B" * index)  # down to "console"
            child.send("\r")
            child.expect("Escape character is")
            child.expect("login: ")
            child.send("echo from-the-dashboard\r")
            child.expect("from-the-dashboard\r\n# ")
            child.sendcontrol("]")
            child.expect("dash-vm")  # the dashboard is back, on the VM view
            child.send("q")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        return int(child.exitstatus if child.exitstatus is not None else -1)

    assert await asyncio.to_thread(drive) == 0
