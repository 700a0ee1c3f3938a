"""``zagent``: run the host agent, or prepare its secret.

    zagent run [-c /etc/zagent/zagent.yaml]     serve until SIGTERM/SIGINT
    zagent check [-c CONFIG]                    validate config, secret and libvirt, then exit
    zagent gen-secret PATH                      create a fresh secret file (mode 0600)
    zagent version

Exit statuses: 0 ok, 1 failure at run time, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from agent import __version__
from agent.config import AgentConfig, host_uuid, read_secret, write_secret
from agent.drivers.base import Driver
from agent.network.executor import Executor, RecordingExecutor, SystemExecutor
from agent.server import AgentServer
from zmn.api import agentauth
from zmn.api.errors import ZmnError

DEFAULT_CONFIG = "/etc/zagent/zagent.yaml"
log = logging.getLogger("zagent")


def make_driver(cfg: AgentConfig) -> Driver:
    if cfg.driver == "fake":
        from agent.drivers.fake import FakeDriver

        return FakeDriver()
    from agent.drivers.libvirt_driver import LibvirtDriver  # needs libvirt-python

    return LibvirtDriver(cfg.libvirt_uri, kvm=cfg.kvm_override)


def make_executor(cfg: AgentConfig) -> Executor:
    return RecordingExecutor() if cfg.network == "dry-run" else SystemExecutor()


def build_server(cfg: AgentConfig) -> AgentServer:
    secret = read_secret(cfg.secret_file)
    return AgentServer(cfg, secret, make_driver(cfg), make_executor(cfg), host_uuid(cfg))


def _run(cfg: AgentConfig) -> int:
    server = build_server(cfg)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    stop.wait()
    server.stop()
    return 0


def _check(cfg: AgentConfig) -> int:
    read_secret(cfg.secret_file)
    driver = make_driver(cfg)
    try:
        facts = driver.facts()
    finally:
        driver.close()
    print(f"ok: {facts['hypervisor']} {facts['libvirtVersion']}, domain type {facts['domainType']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zagent", description="zstack-terminal host agent")
    sub = p.add_subparsers(dest="cmd")
    for name, help_ in (("run", "serve the agent API"), ("check", "validate and exit")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    gs = sub.add_parser("gen-secret", help="create a secret file (mode 0600)")
    gs.add_argument("path")
    sub.add_parser("version", help="print the version")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cmd = args.cmd or "run"
    if cmd == "version":
        print(__version__)
        return 0
    if cmd == "gen-secret":
        try:
            write_secret(args.path, agentauth.new_secret())
        except FileExistsError:
            print(f"zagent: {args.path} exists; not overwritten", file=sys.stderr)
            return 2
        print(args.path)
        return 0
    config_path = getattr(args, "config", DEFAULT_CONFIG)
    try:
        cfg = AgentConfig.load(config_path)
    except (OSError, ZmnError, ValueError) as exc:
        print(f"zagent: {config_path}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _check(cfg) if cmd == "check" else _run(cfg)
    except ZmnError as exc:
        print(f"zagent: {exc}", file=sys.stderr)
        return 2 if exc.kind == "InvalidArgument" else 1


if __name__ == "__main__":
    sys.exit(main())
