"""Migrate: live-migration downtime as a guest's watcher sees it, against libvirt's own time.

    sudo .venv/bin/python -m bench.migrate [--migrations 4]

Two namespaced KVM hosts (sshd, libvirtd, zagent deployed by ``AddKvmHost``) with their VM
NICs joined into one L2 and a watcher namespace on it (:mod:`tests.support.migration`), a
SharedMountPoint primary storage both see, one VM of the project's guest image on it. The VM
moves back and forth with ``MigrateVm`` while the watcher pings it every 20 ms. Per move:

* **downtime**: pings lost between the first and the last reply, times the interval (the
  pause the guest's peers notice), and the longest silence between two replies;
* **libvirt**: the wall time of the agent's ``virDomainMigrateToURI3`` call (``elapsedMs``
  of ``/v1/vm/migrate``: the whole tunnelled pre-copy, memory included) - the baseline;
* **MigrateVm**: the API call's wall time (target preparation, trust sync, libvirt, switch,
  source clean-up, security-group hooks): what the node adds on top of libvirt.

It is the ``migrate`` family of ``python -m bench`` (root and libvirt only; left out of
``--ci``, like ``boot``: a guest must boot first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

INTERVAL = 0.02
SSH = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR")  # fmt: skip


async def measure(migrations: int, workdir: Path) -> dict[str, Any]:
    from tests.support.inproc import Api, running_node
    from tests.support.kvmcloud import (
        add_shared_storage,
        build_kvm_cloud,
        kvm_datacenter,
        kvm_hosts,
        kvm_node_conf,
    )
    from tests.support.migration import Pinger, join_l2

    key = workdir / "id_migrate"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with (
        kvm_datacenter(workdir / "dc", kvm=("kvm1", "kvm2")) as dc,
        join_l2(dc, kvm_hosts(dc), "10.79.0.250/24") as watcher,
    ):
        conf = kvm_node_conf(dc, workdir, **{"log.level": "WARNING"})
        async with running_node(workdir / "home", conf=conf) as (node, _server):
            api = Api(node)
            # guests on TCG whatever /dev/kvm does, so timings compare across machines
            await api("UpdateGlobalConfig", category="kvm", name="host.virtualization", value="tcg")
            cloud = await build_kvm_cloud(api, dc)
            await add_shared_storage(api, dc, workdir)
            hosts = [cloud["hosts"][n]["uuid"] for n in ("kvm1", "kvm2")]
            endpoint = node.services["kvm"].endpoint  # type: ignore[attr-defined]
            libvirt_ms: list[float] = []
            original = endpoint.run_task

            async def run_task(client: Any, host: str, path: str, *a: Any, **kw: Any) -> Any:
                result = await original(client, host, path, *a, **kw)
                if path == "/v1/vm/migrate" and "elapsedMs" in result:
                    libvirt_ms.append(float(result["elapsedMs"]))
                return result

            endpoint.run_task = run_task
            pub = key.with_suffix(".pub").read_text().strip()
            vm = (await api("CreateVmInstance", name="mover", imageUuid="zguest",
                            instanceOfferingUuid="small", l3NetworkUuids=["l3"],
                            hostUuid=hosts[0], sshKeys=[pub],
                            primaryStorageUuidForRootVolume="shared"))["inventory"]  # fmt: skip
            ip = vm["vmNics"][0]["ip"]
            await _wait_ssh(watcher, key, ip)
            rows = []
            try:
                for i in range(migrations):
                    target = hosts[(i + 1) % 2]
                    pinger = Pinger(watcher, ip, INTERVAL)
                    try:
                        await asyncio.sleep(2)
                        t0 = time.perf_counter()
                        await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=target)
                        wall = time.perf_counter() - t0
                        await asyncio.sleep(2)
                    finally:
                        report = pinger.stop()
                    rows.append({"lost_ms": report.lost_ms, "lost": report.lost,
                                 "gap_ms": report.longest_gap_ms, "wall_ms": wall * 1000,
                                 "libvirt_ms": libvirt_ms[-1]})  # fmt: skip
            finally:
                endpoint.run_task = original
            await api("DestroyVmInstance", uuid=vm["uuid"])
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {"migrations": len(rows), **med, "rows": rows}


async def _wait_ssh(netns: str, key: Path, ip: str) -> None:
    deadline = time.monotonic() + 900  # TCG on a loaded machine crawls
    while True:
        done = await asyncio.to_thread(
            subprocess.run,
            ["ip", "netns", "exec", netns, "ssh", *SSH, "-i", str(key), f"root@{ip}", "true"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no SSH login into {ip}: {done.stderr[-500:]}")
        await asyncio.sleep(1)


async def family(run: Any) -> None:
    """The ``migrate`` family: downtime (ms) against libvirt's migration time (baseline)."""
    from bench.harness import Result, Samples
    from tests.support.datacenter import missing_libvirt, missing_tools

    print("migrate", flush=True)
    missing = missing_tools() + missing_libvirt()
    if os.geteuid() != 0 or missing:
        why = "needs root" if os.geteuid() != 0 else f"missing {', '.join(missing)}"
        run.skip("migrate", "downtime", why)
        return
    out = await measure(run.sizes.migrations, run.workdir / "migrate")
    size = f"{out['migrations']} live migrations of a guest-image VM (256 MiB) between 2 hosts, TCG"
    libvirt = run.baseline(
        Result("migrate", "libvirt_migrate", out["libvirt_ms"], "ms", size=size,
               note="virDomainMigrateToURI3 wall time in the agent (tunnelled over SSH)")
    )  # fmt: skip
    run.add(
        Result(
            "migrate",
            "downtime",
            out["lost_ms"],
            "ms",
            samples=Samples(
                latencies=[r["lost_ms"] / 1000 for r in out["rows"]], tried=out["migrations"]
            ),
            size=size,
            note=note(out),
        ).compare(
            libvirt,
            goal="pings lost (20 ms apart) x 20 ms < 2000 ms: a pause of a second or two",
            check=lambda v, _r: v < 2000,
        )
    )
    run.add(
        Result(
            "migrate",
            "migrate_vm_wall",
            out["wall_ms"],
            "ms",
            samples=Samples(
                latencies=[r["wall_ms"] / 1000 for r in out["rows"]], tried=out["migrations"]
            ),
            size=size,
            note="MigrateVm wall time; the ratio is to libvirt's own migration time",
        ).compare(libvirt)
    )


def note(out: dict[str, Any]) -> str:
    return (
        f"median over {out['migrations']} moves: {out['lost']:.0f} pings lost"
        f" ({out['lost_ms']:.0f} ms), longest silence {out['gap_ms']:.0f} ms; libvirt migration"
        f" {out['libvirt_ms']:.0f} ms, MigrateVm {out['wall_ms']:.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.migrate", description=__doc__.split("\n")[0])
    p.add_argument("--migrations", type=int, default=4)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zmn-bench-migrate-") as tmp:
        out = asyncio.run(measure(args.migrations, Path(tmp)))
    print(f"migrate/downtime: {note(out)}")
    for r in out["rows"]:
        print(f"  lost {r['lost']} ({r['lost_ms']:.0f} ms), gap {r['gap_ms']:.0f} ms,"
              f" libvirt {r['libvirt_ms']:.0f} ms, MigrateVm {r['wall_ms']:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
