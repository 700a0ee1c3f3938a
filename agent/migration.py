"""Trust between the hosts of a cluster for libvirt's peer-to-peer live migration.

The source host's libvirtd opens ``qemu+ssh://root@TARGET/system`` (tunnelled: the memory
stream goes through that SSH connection, so no libvirt or QEMU migration port listens on
the network). For that SSH login:

* each host has its own migration key, made here once (``state_dir/migration/id_ed25519``);
  the private key never leaves the host;
* the node collects the cluster's public keys and pinned SSH host keys and hands every host
  the set of its peers (``POST /v1/migration/peers``). This module writes them into a
  managed block of root's ``authorized_keys`` (each key ``restrict``-ed and allowed only
  ``from=`` that peer's management address) and of root's ``known_hosts`` (so the libvirtd
  side checks the target's host key; nothing is accepted on first use).

A block is replaced as a whole on every push: a host that left the cluster loses its access
at the next push. Lines outside the block are the operator's and stay untouched.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass

BEGIN = "# BEGIN zmn migration peers (managed by zagent; edits are lost)"
END = "# END zmn migration peers"
KEY_NAME = "id_ed25519"


@dataclass(frozen=True)
class Peer:
    ip: str
    public_key: str  # "ssh-ed25519 AAAA..." (the peer's migration key)
    host_key: str  # "ssh-ed25519 AAAA..." (the peer's sshd host key, as the node pinned it)


class MigrationTrust:
    def __init__(self, state_dir: str, ssh_dir: str) -> None:
        self.key_path = os.path.join(state_dir, "migration", KEY_NAME)
        self.ssh_dir = ssh_dir
        self._lock = threading.Lock()

    def public_key(self) -> str:
        """This host's migration public key (made on first use)."""
        with self._lock:
            if not os.path.exists(self.key_path):
                os.makedirs(os.path.dirname(self.key_path), mode=0o700, exist_ok=True)
                argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zmn-migration",
                        "-f", self.key_path]  # fmt: skip
                # fixed argv; ssh-keygen from PATH, as libvirtd finds ssh
                subprocess.run(argv, check=True, capture_output=True, timeout=30)  # noqa: S603
            with open(self.key_path + ".pub", encoding="utf-8") as f:
                return " ".join(f.read().split()[:2])

    def set_peers(self, peers: list[Peer]) -> None:
        auth = [f'from="{p.ip}",restrict {p.public_key} zmn-migration' for p in peers]
        known = [f"{p.ip} {p.host_key}" for p in peers]
        with self._lock:
            os.makedirs(self.ssh_dir, mode=0o700, exist_ok=True)
            _replace_block(os.path.join(self.ssh_dir, "authorized_keys"), auth)
            _replace_block(os.path.join(self.ssh_dir, "known_hosts"), known)


def _replace_block(path: str, lines: list[str]) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read().splitlines()
    except FileNotFoundError:
        old = []
    kept: list[str] = []
    inside = False
    for line in old:
        if line == BEGIN:
            inside = True
        elif line == END:
            inside = False
        elif not inside:
            kept.append(line)
    text = "\n".join([*kept, BEGIN, *lines, END]) + "\n"
    tmp = f"{path}.zagent-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def migrate_uri(target_ip: str, key_path: str) -> str:
    """The URI the source's libvirtd migrates to: SSH as root with this host's key."""
    host = f"[{target_ip}]" if ":" in target_ip else target_ip
    return f"qemu+ssh://root@{host}/system?keyfile={key_path}&no_tty=1"
