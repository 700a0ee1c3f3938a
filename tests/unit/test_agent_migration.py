"""The agent's migration trust (agent/migration.py) and its command's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.commands import _ssh_key
from agent.migration import BEGIN, END, MigrationTrust, Peer, migrate_uri
from zmn.api.errors import InvalidArgument

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEKbGmq7OmCxIxNV4Li9/iZq9PzsFL+YpHwzhm8PJsFx"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKppGRwgWyzu1W/CcU4Bit1FtWpB7Vg+IpDvcNKN0reM"


def test_the_key_is_made_once_and_kept(tmp_path: Path) -> None:
    trust = MigrationTrust(str(tmp_path / "state"), str(tmp_path / "ssh"))
    first = trust.public_key()
    assert first.startswith("ssh-ed25519 ") and len(first.split()) == 2
    assert trust.public_key() == first
    assert (tmp_path / "state" / "migration" / "id_ed25519").stat().st_mode & 0o077 == 0


def test_peers_replace_the_managed_block_and_keep_the_operators_lines(tmp_path: Path) -> None:
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    (ssh / "authorized_keys").write_text("ssh-ed25519 OPERATOR admin@desk\n")
    trust = MigrationTrust(str(tmp_path / "state"), str(ssh))
    trust.set_peers([Peer("10.0.0.2", KEY_A, KEY_B), Peer("10.0.0.3", KEY_B, KEY_A)])
    trust.set_peers([Peer("10.0.0.3", KEY_B, KEY_A)])  # 10.0.0.2 left the cluster
    auth = (ssh / "authorized_keys").read_text().splitlines()
    assert auth == [
        "ssh-ed25519 OPERATOR admin@desk",
        BEGIN,
        f'from="10.0.0.3",restrict {KEY_B} zmn-migration',
        END,
    ]
    assert (ssh / "known_hosts").read_text().splitlines() == [BEGIN, f"10.0.0.3 {KEY_A}", END]
    assert (ssh / "authorized_keys").stat().st_mode & 0o077 == 0


def test_only_a_plain_public_key_is_accepted() -> None:
    assert _ssh_key(f"{KEY_A} comment", "peers[0].publicKey") == KEY_A
    for bad in (
        f'command="sh" {KEY_A}',  # options would go into authorized_keys
        f"{KEY_A}\nssh-ed25519 AAAA",
        "ssh-ed25519 AAAA$(reboot)",
        "",
    ):
        with pytest.raises(InvalidArgument) as err:
            _ssh_key(bad, "peers[0].publicKey")
        assert err.value.field == "peers[0].publicKey"


def test_the_uri_is_ssh_as_root_with_the_hosts_key() -> None:
    assert migrate_uri("10.0.0.2", "/k") == "qemu+ssh://root@10.0.0.2/system?keyfile=/k&no_tty=1"
    assert migrate_uri("fd00::2", "/k").startswith("qemu+ssh://root@[fd00::2]/system?")
