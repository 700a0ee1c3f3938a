"""cloud-init NoCloud seed: the three files and the ISO 9660 image labelled ``cidata``.

The node sends a ``seed`` object with the VM description (``/v1/vm/start``)::

    {"instanceId": "iid-...", "hostname": "web-1", "userData": "<base64>",
     "sshKeys": ["ssh-ed25519 AAAA... me@laptop"],
     "nics": [{"mac": "52:54:00:..", "address": "10.0.0.5", "prefix": 24,
               "gateway": "10.0.0.1", "dns": ["10.0.0.1"]}, {"mac": "52:54:00:..", "dhcp": true}]}

and the agent writes, as cloud-init's NoCloud datasource reads them from a volume labelled
``cidata`` (https://cloudinit.readthedocs.io/en/latest/reference/datasources/nocloud.html):

- ``meta-data``: ``instance-id``, ``local-hostname`` and ``public-keys`` (the SSH keys, which
  cloud-init installs for the default user);
- ``user-data``: the user's data (sent base64) byte for byte, empty when none was given;
- ``network-config``: version 2, one ``ethernets`` entry per NIC matched by MAC, a static
  address when the node allocated one on a static L3, ``dhcp4: true`` otherwise.

The YAML is written by hand with every scalar as a JSON string (a valid YAML double-quoted
scalar), so no user value can change the document's structure. The ISO is written with
pycdlib (pure Python), with Joliet and Rock Ridge names so ``meta-data`` keeps its hyphen.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import io
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent import validate as v
from zmn.api.cloudinit import MAX_SSH_KEYS, MAX_USER_DATA, public_key

if TYPE_CHECKING:
    from agent.spec import VmSpec

LABEL = "cidata"


@dataclass(frozen=True)
class SeedNic:
    mac: str
    address: str | None = None
    prefix: int | None = None
    gateway: str | None = None
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Seed:
    instance_id: str
    hostname: str
    user_data: bytes = b""
    ssh_keys: tuple[str, ...] = ()
    nics: tuple[SeedNic, ...] = ()


def _nic(raw: Any, f: str) -> SeedNic:
    d = v.obj(raw, f)
    mac = v.mac(d.get("mac"), f"{f}.mac")
    if d.get("address") is None:
        return SeedNic(mac=mac)
    addr = v.ipv4(d.get("address"), f"{f}.address")
    gw = d.get("gateway")
    return SeedNic(
        mac=mac,
        address=str(addr),
        prefix=v.integer(d.get("prefix"), f"{f}.prefix", lo=1, hi=32),
        gateway=None if gw is None else str(v.ipv4(gw, f"{f}.gateway")),
        dns=tuple(
            str(v.ip_any(x, f"{f}.dns[{i}]"))
            for i, x in enumerate(v.items(d.get("dns", []), f"{f}.dns", max_items=8))
        ),
    )


def parse_seed(raw: Any, f: str = "seed") -> Seed:
    """Validate the node's ``seed`` object; raise InvalidArgument naming the bad field."""
    d = v.obj(raw, f)
    user = v.string(d.get("userData", ""), f"{f}.userData", max_len=MAX_USER_DATA * 2,
                    allow_empty=True)  # fmt: skip
    try:
        data = base64.b64decode(user, validate=True)
    except (binascii.Error, ValueError):
        raise v.bad(f"{f}.userData", "must be base64") from None
    if len(data) > MAX_USER_DATA:
        raise v.bad(f"{f}.userData", f"larger than {MAX_USER_DATA} bytes")
    keys = v.items(d.get("sshKeys", []), f"{f}.sshKeys", max_items=MAX_SSH_KEYS)
    nics = v.items(d.get("nics", []), f"{f}.nics", max_items=32)
    return Seed(
        instance_id=v.token(d.get("instanceId"), f"{f}.instanceId"),
        hostname=v.hostname(d.get("hostname"), f"{f}.hostname"),
        user_data=data,
        ssh_keys=tuple(public_key(k, f"{f}.sshKeys[{i}]") for i, k in enumerate(keys)),
        nics=tuple(_nic(n, f"{f}.nics[{i}]") for i, n in enumerate(nics)),
    )


def _q(value: str) -> str:
    return json.dumps(value)


def meta_data(seed: Seed) -> bytes:
    lines = [f"instance-id: {_q(seed.instance_id)}", f"local-hostname: {_q(seed.hostname)}"]
    if seed.ssh_keys:
        lines.append("public-keys:")
        lines += [f"  - {_q(k)}" for k in seed.ssh_keys]
    return ("\n".join(lines) + "\n").encode()


def network_config(seed: Seed) -> bytes:
    lines = ["version: 2", "ethernets:"]
    for i, nic in enumerate(seed.nics):
        lines += [f"  nic{i}:", "    match:", f"      macaddress: {_q(nic.mac)}"]
        if nic.address is None:
            lines.append("    dhcp4: true")
            continue
        iface = ipaddress.IPv4Interface(f"{nic.address}/{nic.prefix}")
        lines += ["    dhcp4: false", "    addresses:", f"      - {_q(str(iface))}"]
        if nic.gateway:
            lines.append(f"    gateway4: {_q(nic.gateway)}")
        if nic.dns:
            lines += ["    nameservers:", "      addresses:"]
            lines += [f"        - {_q(d)}" for d in nic.dns]
    return ("\n".join(lines) + "\n").encode()


def seed_files(seed: Seed) -> dict[str, bytes]:
    """File name -> content of the seed, in the layout cloud-init's NoCloud reader expects."""
    files = {"meta-data": meta_data(seed), "user-data": seed.user_data}
    if seed.nics:
        files["network-config"] = network_config(seed)
    return files


def write_iso(path: str, seed: Seed) -> None:
    """Write the seed ISO to ``path`` atomically (a temporary file, then rename)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
    for i, (name, data) in enumerate(sorted(seed_files(seed).items())):
        iso.add_fp(io.BytesIO(data), len(data), f"/F{i}.;1", rr_name=name, joliet_path=f"/{name}")
    tmp = f"{path}.tmp"
    iso.write(tmp)
    iso.close()
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_iso(path: str) -> dict[str, bytes]:
    """The files of a seed ISO by their Rock Ridge names (for tests and ``zagent`` checks)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(path)
    try:
        out: dict[str, bytes] = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
            out[name] = buf.getvalue()
        return out
    finally:
        iso.close()


SEED_DEVICE_ID = 3  # hdd: the second IDE channel's slave; an ISO the VM boots from is hdc


def seed_path(uuid: str, state_dir: str) -> str:
    return os.path.join(state_dir, "seeds", f"{uuid}.iso")


def attach_seed(spec: VmSpec, state_dir: str) -> VmSpec:
    """Write the spec's seed ISO and add it as a read-only IDE CD-ROM (no seed: unchanged)."""
    if spec.seed is None:
        return spec
    path = seed_path(spec.uuid, state_dir)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_iso(path, spec.seed)
    from agent.spec import DiskSpec  # spec imports this module for Seed

    cdrom = DiskSpec(path=path, device_id=SEED_DEVICE_ID, format="raw", bus="ide",
                     device="cdrom", read_only=True)  # fmt: skip
    disks = (*(d for d in spec.disks if d.target != cdrom.target), cdrom)
    return dataclasses.replace(spec, disks=disks)


def remove_seed(uuid: str, state_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(seed_path(uuid, state_dir))
