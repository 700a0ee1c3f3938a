"""Revision 0002_guest adds vm_cloud_init to a database made by 0001 (through the revisions
between), keeping its rows."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from zmn.migrations.schema import alembic_config, current_revision, head_revision, upgrade


def test_upgrade_from_0001_keeps_vms_and_adds_the_cloud_init_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO vm_instance (uuid, name, zoneUuid, type, platform, cpuNum, cpuSpeed,"
            " memorySize, state, createDate, lastOpDate) VALUES ('" + "a" * 32 + "', 'kept',"
            " 'z', 'UserVm', 'Linux', 1, 0, 1024, 'Stopped', '2026-01-01', '2026-01-01')"
        )
    assert "vm_cloud_init" not in inspect(engine).get_table_names()
    before, _after = upgrade(url)
    assert before == "0001" and current_revision(url) == head_revision()
    assert "vm_cloud_init" in inspect(engine).get_table_names()
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT name FROM vm_instance").scalars().all() == ["kept"]
        conn.exec_driver_sql(
            "INSERT INTO vm_cloud_init (vmInstanceUuid, instanceId, userData) VALUES"
            " ('" + "a" * 32 + "', 'iid-1', 'I2Nsb3VkLWNvbmZpZwo=')"
        )
    engine.dispose()
