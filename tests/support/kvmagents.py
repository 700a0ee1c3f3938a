"""A node driving real in-process zagents (fake hypervisor driver, no root, no SSH).

A fake deployer stands in for the SSH playbook: "deploying" starts a real zagent
(``AgentServer`` with the fake driver, real storage commands) on the host's loopback address
with the secret and callback URL the node chose. The ``env`` fixture is that node with zone
``z1`` and KVM cluster ``kvm``; a test module takes it with ``env = kvmagents.env``.
``qemu_img`` skips (fails under CI) a module whose agents make real volume files without
qemu-img: ``pytestmark = pytest.mark.usefixtures("qemu_img")``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paramiko
import pytest
from sqlalchemy import text

from agent.config import AgentConfig
from agent.drivers.fake import FakeDriver
from agent.network.executor import RecordingExecutor
from agent.server import AgentServer
from tests.conftest import need
from tests.support.inproc import Api, running_node
from zmn.api.errors import ZmnError
from zmn.core.service import Call
from zmn.services.kvm.deploy import DeployOutcome, DeployRequest
from zmn.services.kvm.models import KvmHostVO
from zmn.services.kvm.ssh import SshTarget, key_to_text
from zmn.services.kvm.wheelhouse import agent_version

HOST_KEY = key_to_text(paramiko.RSAKey.generate(1024))


class LocalDeployer:
    """Starts an in-process agent per host on its management IP (127.0.0.x)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.agents: dict[str, AgentServer] = {}
        self.requests: list[DeployRequest] = []
        self.key_contacts = 0
        self.fail: ZmnError | None = None

    async def host_key(self, target: SshTarget) -> str:
        self.key_contacts += 1
        return HOST_KEY

    async def deploy(self, req: DeployRequest) -> DeployOutcome:
        self.requests.append(req)
        if self.fail is not None:
            raise self.fail
        assert req.host_key == HOST_KEY
        running = self.agents.get(req.host_uuid)
        if running is None:
            cfg = AgentConfig.from_mapping(
                {
                    "listen": req.target.host,
                    "port": 0,
                    "state_dir": str(self.state / req.host_uuid),
                    "driver": "fake",
                    "callback_url": req.agent_config["callback_url"],
                    "host_uuid": req.host_uuid,
                    "metrics_interval": req.agent_config.get("metrics_interval", 10),
                }
            )
            links = '[{"ifname": "lo"}, {"ifname": "eth0"}]'  # the host's NIC, for bridges
            executor = RecordingExecutor(outputs={("ip", "-j", "-d", "link", "show"): links})
            driver = self.driver(req)
            running = AgentServer(cfg, req.secret.encode(), driver, executor, req.host_uuid)
            running.start()
            self.agents[req.host_uuid] = running
        return DeployOutcome(running.address[1], agent_version(), True, ["fake: deployed"])

    def driver(self, req: DeployRequest) -> FakeDriver:
        """The hypervisor driver of the agent deployed for ``req`` (a subclass's to change)."""
        return FakeDriver()

    async def stop(self, req: DeployRequest) -> None:
        self.kill(req.host_uuid)

    def kill(self, host_uuid: str) -> None:
        agent = self.agents.pop(host_uuid, None)
        if agent is not None:
            agent.stop()

    def close(self) -> None:
        for uuid in list(self.agents):
            self.kill(uuid)


class Env:
    """The node (``api``, ``node``, its API ``server``) and the deployer of its agents."""

    def __init__(self, api: Api, deployer: LocalDeployer, server: Any = None) -> None:
        self.api = api
        self.node = api.node
        self.deployer = deployer
        self.server = server
        self.kvm: Any = api.node.services["kvm"]

    async def internal(self, api: str, **args: Any) -> Any:
        """A service-to-service message (refused from clients), sent as the node itself does."""
        call = Call(self.node, self.node.admin_principal(), api)
        return await call.call(self.node.apis.get(api)(**args))

    async def add(self, name: str, ip: str, **extra: Any) -> dict[str, Any]:
        args = {"name": name, "managementIp": ip, "clusterUuid": "kvm", "password": "pw-" + name}
        return (await self.api("AddKvmHost", **{**args, **extra}))["inventory"]

    def row(self, uuid: str) -> KvmHostVO | None:
        with self.node.db.tx() as s:
            row = s.get(KvmHostVO, uuid)
            if row is not None:
                s.expunge(row)
            return row

    def snapshot(self) -> list[Any]:
        with self.node.db.tx() as s:
            return [
                list(s.execute(text(f"SELECT * FROM {t} ORDER BY 1")))
                for t in ("host", "kvm_host", "tag", "job", "vm_instance")
            ]


@asynccontextmanager
async def kvm_node(tmp_path: Path, deployer: LocalDeployer | None = None) -> AsyncIterator[Env]:
    """A node in ``tmp_path/home`` whose KVM hosts are deployed by ``deployer`` (a
    :class:`LocalDeployer` by default), with zone ``z1`` and KVM cluster ``kvm``."""
    deployer = deployer or LocalDeployer(tmp_path / "agents")
    try:
        async with running_node(
            tmp_path / "home", conf={"agent.callback.listen": "127.0.0.1:0"}
        ) as (node, server):
            node.services["kvm"].host_type.deployer = deployer  # type: ignore[attr-defined]
            api = Api(node)
            await api("CreateZone", name="z1")
            await api("CreateCluster", name="kvm", zoneUuid="z1", hypervisorType="KVM")
            yield Env(api, deployer, server)
    finally:
        deployer.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with kvm_node(tmp_path) as made:
        yield made


@pytest.fixture
def qemu_img() -> None:
    need(shutil.which("qemu-img") is not None, "needs qemu-img (qemu-utils)")


async def build_kvm_cloud(env: Env) -> dict[str, str]:
    """Host ``kvm1`` (127.0.0.2), simulator storage, an image, an offering and L3 ``l3``: the
    agent makes the VMs' volume files (empty qcow2, with qemu-img) under the test's directory."""
    need(shutil.which("qemu-img") is not None, "needs qemu-img (qemu-utils)")
    api, u = env.api, {}
    u["host"] = (await env.add("kvm1", "127.0.0.2"))["uuid"]
    ps = await api("AddSimulatorPrimaryStorage", name="ps", zoneUuid="z1",
                   url=str(env.deployer.state / "ps"), totalCapacity=1 << 40)  # fmt: skip
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid=ps["inventory"]["uuid"],
              clusterUuid="kvm")  # fmt: skip
    bs = await api("AddSimulatorBackupStorage", name="bs", url="/bs", totalCapacity=1 << 40,
                   availableCapacity=1 << 40)  # fmt: skip
    await api("AttachBackupStorageToZone", backupStorageUuid=bs["inventory"]["uuid"], zoneUuid="z1")
    img = await api("AddImage", name="img", url="http://images.example/x.qcow2", format="qcow2",
                    backupStorageUuids=[bs["inventory"]["uuid"]])  # fmt: skip
    u["image"] = img["inventory"]["uuid"]
    off = await api("CreateInstanceOffering", name="small", cpuNum=1, memorySize=256 << 20)
    u["offering"] = off["inventory"]["uuid"]
    l2 = await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth0")
    await api("AttachL2NetworkToCluster", l2NetworkUuid=l2["inventory"]["uuid"], clusterUuid="kvm")
    l3 = await api("CreateL3Network", name="l3", l2NetworkUuid=l2["inventory"]["uuid"])
    u["l3"] = l3["inventory"]["uuid"]
    await api("AddIpRange", name="r", l3NetworkUuid=u["l3"], startIp="10.9.0.10",
              endIp="10.9.0.20", netmask="255.255.255.0", gateway="10.9.0.1")  # fmt: skip
    return u
