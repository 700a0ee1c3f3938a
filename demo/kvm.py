"""``make demo-kvm``: a real KVM cloud on this machine, in network namespaces (root only).

    python demo/kvm.py start    two KVM hosts (kvm1, kvm2: sshd, libvirtd, QEMU under TCG)
                                and an image store (store), each a network and mount
                                namespace on one bridge; a management node (./.demo-kvm/home)
                                that deploys zagent to the hosts over SSH; the guest image
                                built from Debian packages; two running VMs with an SSH key
    python demo/kvm.py stop     the node, the VMs, the daemons, the namespaces and the bridge

The hosts come from the test suite's namespaced datacenter (tests/support/datacenter.py) and
the image from its builder (tests/support/guestimage.py). What ``start`` made is written to
``.demo-kvm/state.json`` so that ``stop`` can take it all down from another process.
"""

# ruff: noqa: S603, S607 - argument lists of our own and Debian's tools, nothing from input
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import guestimage  # noqa: E402
from tests.support.datacenter import (  # noqa: E402
    Datacenter,
    NsHost,
    missing_libvirt,
    missing_tools,
)

STATE = ROOT / ".demo-kvm"
HOME = STATE / "home"
KEY = STATE / "id_ed25519"
BIN = Path(sys.executable).parent
MiB = 1 << 20


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_"))}
    out.update(ZMN_HOME=str(HOME), ZMN_ENDPOINT=f"unix:{HOME / 'zmn.sock'}",
               XDG_CONFIG_HOME=str(STATE / "config"), XDG_CACHE_HOME=str(STATE / "cache"))  # fmt: skip
    return out


def zcli(*args: str) -> str:
    done = subprocess.run([str(BIN / "zcli"), *args], env=env(), capture_output=True, text=True,
                          check=False, timeout=900)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"zcli {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def start() -> None:
    if (STATE / "state.json").exists():
        say("the KVM demo is running already (make demo-kvm-stop to take it down)")
        show(json.loads((STATE / "state.json").read_text()))
        return
    problems = ([] if os.geteuid() == 0 else ["root"]) + missing_tools() + missing_libvirt()
    if problems:
        raise SystemExit(f"make demo-kvm needs: {', '.join(problems)} (scripts/system-deps.sh)")
    shutil.rmtree(STATE, ignore_errors=True)  # a fresh node, datacenter and key each time
    STATE.mkdir()
    dc = Datacenter(STATE / "dc").start()
    try:
        say(f"bridge {dc.bridge} ({dc.gateway}/{dc.prefix}); hosts kvm1, kvm2, store")
        hosts = [dc.add_host("kvm1"), dc.add_host("kvm2"), dc.add_host("store")]
        save(dc)
        for h in hosts:
            h.start_sshd()
        hosts[0].add_nic("eth1")
        hosts[1].add_nic("eth1")
        say("starting libvirtd on the hosts and building the guest image (once, cached)")
        with ThreadPoolExecutor(3) as pool:
            image = pool.submit(guestimage.build)
            for f in [pool.submit(h.start_libvirtd) for h in hosts[:2]]:
                f.result()
            image_path = image.result()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "demo-kvm", "-f",
                        str(KEY)], check=True)  # fmt: skip
        node(dc)
        build_cloud(dc, hosts, image_path)
    except BaseException:
        subprocess.run([str(BIN / "zmn"), "stop"], env=env(), check=False, capture_output=True)
        dc.close()  # whatever was made, also before state.json was written
        (STATE / "state.json").unlink(missing_ok=True)
        raise
    state = save(dc)
    show(state)


def node(dc: Datacenter) -> None:
    subprocess.run([str(BIN / "zmn"), "init"], env=env(), check=True, capture_output=True)
    with (HOME / "zmn.conf").open("a") as conf:
        conf.write(f"agent.callback.listen={dc.gateway}:0\n")
        conf.write(f"image.file.allowedDirs={guestimage.CACHE}\n")  # AddImage url=file://
    subprocess.run([str(BIN / "zmn"), "start"], env=env(), check=True)


def build_cloud(dc: Datacenter, hosts: list[NsHost], image: Path) -> None:
    say("the cloud: zone, KVM cluster, hosts (zagent deployed over SSH), storage, network")
    zcli("zone", "create", "name=z1")
    zcli("cluster", "create", "name=kvm", "zoneUuid=z1", "hypervisorType=KVM")
    for h in hosts[:2]:
        zcli("api", "AddKvmHost", f"name={h.name}", f"managementIp={h.ip}", "clusterUuid=kvm",
             f"sshPrivateKey={dc.client_key}")  # fmt: skip
    zcli("api", "AddLocalPrimaryStorage", "name=local", "zoneUuid=z1", "url=/var/lib/zagent/local")
    zcli("api", "AttachPrimaryStorageToCluster", "primaryStorageUuid=local", "clusterUuid=kvm")
    zcli("api", "AddImageStoreBackupStorage", "name=store", "url=/var/lib/zagent/images",
         f"hostname={hosts[2].ip}", f"sshPrivateKey={dc.client_key}")  # fmt: skip
    zcli("api", "AttachBackupStorageToZone", "backupStorageUuid=store", "zoneUuid=z1")
    say(f"the guest image: {image}")
    zcli("api", "AddImage", "name=zguest", f"url=file://{image}", "format=qcow2",
         "backupStorageUuids=store")  # fmt: skip
    zcli("api", "CreateInstanceOffering", "name=small", "cpuNum=1", f"memorySize={256 * MiB}")
    zcli("api", "CreateL2NoVlanNetwork", "name=l2", "zoneUuid=z1", "physicalInterface=eth1")
    zcli("api", "AttachL2NetworkToCluster", "l2NetworkUuid=l2", "clusterUuid=kvm")
    zcli("api", "CreateL3Network", "name=l3", "l2NetworkUuid=l2")
    zcli("api", "AddIpRange", "name=r1", "l3NetworkUuid=l3", "startIp=10.77.0.10",
         "endIp=10.77.0.99", "netmask=255.255.255.0", "gateway=10.77.0.1")  # fmt: skip
    for name, host in (("web-1", "kvm1"), ("web-2", "kvm2")):
        say(f"VM {name} on {host}")
        zcli("vm", "create", name, "imageUuid=zguest", "instanceOfferingUuid=small",
             "l3NetworkUuids=l3", f"hostUuid={host}", "--ssh-key-file", f"{KEY}.pub",
             f"systemTags=hostname::{name}")  # fmt: skip


def save(dc: Datacenter) -> dict[str, object]:
    state: dict[str, object] = {
        "tag": dc.tag, "bridge": dc.bridge, "gateway": dc.gateway, "prefix": dc.prefix,
        "hosts": [{"name": h.name, "index": h.index, "ip": h.ip, "netns": h.netns,
                   "root": str(h.root)} for h in dc.hosts],
    }  # fmt: skip
    (STATE / "state.json").write_text(json.dumps(state, indent=2))
    return state


def show(state: dict[str, object]) -> None:
    hosts = {h["name"]: h for h in state["hosts"]}  # type: ignore[attr-defined]
    addr = json.loads(zcli("-o", "json", "vm", "get", "web-1"))["vmNics"][0]["ip"]
    print(f"""
The KVM demo runs: web-1 on kvm1 and web-2 on kvm2 (guest image: busybox, dropbear; on the
serial console root logs in without a password). Try:

  export ZMN_HOME={HOME} PATH={BIN}:$PATH
  zcli vm list
  # log into web-1 with the injected key (from its host's namespace, where its network is):
  ip netns exec {hosts["kvm1"]["netns"]} ssh -i {KEY} -o StrictHostKeyChecking=no root@{addr}
  # the serial console of web-2 (Ctrl-] leaves):
  zcli vm console web-2
  make demo-kvm-stop    # take it all down
""")


def stop() -> None:
    state_file = STATE / "state.json"
    if (HOME / "zmn.conf").exists():
        subprocess.run([str(BIN / "zmn"), "stop"], env=env(), check=False, capture_output=True)
    if not state_file.exists():
        say("no KVM demo state (.demo-kvm/state.json): nothing to stop")
        return
    state = json.loads(state_file.read_text())
    dc = Datacenter(STATE / "dc")
    dc.tag, dc.bridge, dc._started = state["tag"], state["bridge"], True
    for h in state["hosts"]:
        dc.hosts.append(NsHost(dc, h["name"], h["index"], h["ip"], h["netns"], Path(h["root"])))
    dc.close()  # every process in each namespace, the namespaces, the bridge
    state_file.unlink()
    say("the KVM demo is down (its files stay in .demo-kvm; rm -rf .demo-kvm to forget them)")


if __name__ == "__main__":
    {"start": start, "stop": stop}[sys.argv[1] if len(sys.argv) > 1 else "start"]()
