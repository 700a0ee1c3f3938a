"""``zmn backup`` of a running node and ``zmn restore`` into a fresh home, as commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import ZmnProcess
from zmn.migrations.schema import head_revision


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ZmnProcess, ZmnProcess]]:
    old, new = ZmnProcess(tmp_path / "old"), ZmnProcess(tmp_path / "new")
    yield old, new
    old.stop_quietly()
    new.stop_quietly()


def test_backup_a_running_node_and_restore_it_elsewhere(
    nodes: tuple[ZmnProcess, ZmnProcess], tmp_path: Path
) -> None:
    old, new = nodes
    assert old.zmn("init").code == 0
    assert old.zmn("start").code == 0
    for name in ("z1", "z2"):
        assert old.zcli("api", "CreateZone", f"name={name}").code == 0
    zones = old.zcli("-o", "json", "api", "QueryZone").json()
    archive = tmp_path / "zmn-backup.tar.gz"
    made = old.zmn("backup", str(archive))
    assert made.code == 0 and f"schema {head_revision()}" in made.out, made.err
    refused = old.zmn("restore", str(archive))
    assert refused.code == 1 and "zmn stop" in refused.err
    restored = new.zmn("restore", str(archive))
    assert restored.code == 0 and f"into {new.home}" in restored.out, restored.err
    assert (new.home / "zmn.conf").read_text() == (old.home / "zmn.conf").read_text()
    again = new.zmn("restore", str(archive))
    assert again.code == 4 and "--force" in again.err
    assert new.zmn("start").code == 0
    assert new.zcli("-o", "json", "api", "QueryZone").json() == zones
