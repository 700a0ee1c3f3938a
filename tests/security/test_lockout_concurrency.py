"""300 concurrent guesses never exceed the lockout limit, on SQLite, MariaDB and PostgreSQL.

``identity/login.maxFailures`` wrong passwords lock a login. The count used to be read, the
hash verified, and the count written afterwards: 300 guesses sent at once all read an
unlocked login and all had their password checked (300 guesses where 5 were allowed). Now an
attempt is reserved in the database before its hash is verified, so at most ``maxFailures``
guesses are ever checked against the real hash; the others are refused unchecked (at the same
cost: a dummy hash is verified instead).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from tests.support.inproc import Api, running_node
from zmn.api.errors import ZmnError
from zmn.services.identity import passwords

LIMIT = 5
GUESSES = 300
RIGHT = "the-right-password-1"


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its lowest cost: what is counted here is how many guesses are checked, and
    300 production-cost verifications take minutes on a loaded CI machine."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    monkeypatch.setattr(passwords, "_dummy", [])


@pytest.mark.usefixtures("cheap_hashes")
async def test_300_concurrent_guesses_check_at_most_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_engine: str
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        for name, value in (("login.maxFailures", LIMIT), ("login.lockoutSeconds", 300)):
            await api("UpdateGlobalConfig", category="identity", name=name, value=str(value))
        await api("CreateAccount", name="victim", password=RIGHT)
        rows = await api("QueryAccount", conditions=["name=victim"])
        assert rows["inventories"][0]["failedLogins"] == 0

        checked: list[str] = []  # guesses verified against the account's real hash
        real_verify = passwords.verify_password

        def counting(stored: str, password: str) -> bool:
            if stored != passwords.dummy_hash():
                checked.append(password)
            return real_verify(stored, password)

        monkeypatch.setattr(passwords, "verify_password", counting)

        async def guess(i: int) -> str:
            try:
                await api("LogInByAccount", accountName="victim", password=f"guess-{i:04d}")
            except ZmnError as exc:
                return exc.code
            return "OK"

        codes = await asyncio.gather(*(guess(i) for i in range(GUESSES)))

        assert set(codes) == {"IDENTITY.LOGIN_FAILED"}
        assert len(checked) <= LIMIT, f"{len(checked)} guesses checked, the limit is {LIMIT}"
        assert RIGHT not in checked
        # the login is locked now: even the right password is refused, unchecked
        with pytest.raises(ZmnError) as locked:
            await api("LogInByAccount", accountName="victim", password=RIGHT)
        assert locked.value.code == "IDENTITY.LOGIN_FAILED"
        assert len(checked) <= LIMIT
        row: Any = (await api("QueryAccount", conditions=["name=victim"]))["inventories"][0]
        assert row["lockedUntil"] is not None


@pytest.mark.usefixtures("cheap_hashes")
async def test_guesses_below_the_limit_leave_the_right_password_working(
    tmp_path: Path, db_engine: str
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="20")
        await api("CreateAccount", name="owner", password=RIGHT)

        async def guess(i: int) -> None:
            with pytest.raises(ZmnError):
                await api("LogInByAccount", accountName="owner", password=f"wrong-{i}")

        await asyncio.gather(*(guess(i) for i in range(10)))
        rows = await api("QueryAccount", conditions=["name=owner"])
        assert rows["inventories"][0]["failedLogins"] == 10
        session = await api("LogInByAccount", accountName="owner", password=RIGHT)
        assert session["inventory"]["uuid"]
        rows = await api("QueryAccount", conditions=["name=owner"])
        assert rows["inventories"][0]["failedLogins"] == 0  # a right password clears the count


@pytest.mark.usefixtures("cheap_hashes")
async def test_a_locked_admin_recovers_over_the_unix_socket(tmp_path: Path, db_engine: str) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)  # the unix socket's owner: no session, no current password
        await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="2")
        await api("UpdateAccount", uuid="admin", password="admin-password-1")
        for i in range(2):
            with pytest.raises(ZmnError):
                await api("LogInByAccount", accountName="admin", password=f"guess-{i}")
        with pytest.raises(ZmnError) as locked:
            await api("LogInByAccount", accountName="admin", password="admin-password-1")
        assert locked.value.code == "IDENTITY.LOGIN_FAILED"

        await api("UpdateAccount", uuid="admin", password="admin-password-2")  # lifts the lock
        session = await api("LogInByAccount", accountName="admin", password="admin-password-2")
        assert session["account"]["name"] == "admin"
