"""``zagent``: run the host agent, or prepare its secret.

    zagent run [-c /etc/zagent/zagent.yaml]     serve until SIGTERM/SIGINT
    zagent check [-c CONFIG]                    validate config, secret and libvirt, then exit
    zagent gen-secret PATH                      create a fresh secret file (mode 0600)
    zagent version                              (also zagent --version)

Exit statuses: 0 ok, 1 failure at run time, 2 bad configuration or usage.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer

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


# --------------------------------------------------------------------------- the command tree
# typer builds the static tree (help, shell completion, --version); the work is above.

app = typer.Typer(
    name="zagent",
    help="The zstack-terminal host agent (with no command: run).",
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
ConfigOption = Annotated[str, typer.Option("-c", "--config", help="the agent's YAML config")]


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    if ctx.invoked_subcommand is None:
        raise typer.Exit(_configured("run", DEFAULT_CONFIG))


@app.command("run", help="serve the agent API until SIGTERM/SIGINT")
def _run_cmd(config: ConfigOption = DEFAULT_CONFIG) -> None:
    raise typer.Exit(_configured("run", config))


@app.command("check", help="validate config, secret and libvirt, then exit")
def _check_cmd(config: ConfigOption = DEFAULT_CONFIG) -> None:
    raise typer.Exit(_configured("check", config))


@app.command("gen-secret", help="create a secret file (mode 0600)")
def _gen_secret(
    path: Annotated[str, typer.Argument(metavar="PATH", help="the file to create")],
) -> None:
    try:
        write_secret(path, agentauth.new_secret())
    except FileExistsError:
        print(f"zagent: {path} exists; not overwritten", file=sys.stderr)
        raise typer.Exit(2) from None
    print(path)


@app.command("version", help="print the version")
def _version_cmd() -> None:
    print(__version__)


def _configured(cmd: str, config_path: str) -> int:
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


def main(argv: list[str] | None = None) -> int:
    """The exit status of one ``zagent`` command (usage errors: 2)."""
    try:
        app(args=argv, prog_name="zagent")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
