"""Logging in and out: password checks with lockout, session creation, validation.

A mixin of :class:`~zmn.services.identity.service.IdentityService`, kept apart because the
password path is the security-sensitive one: every failure looks the same from outside
(:func:`login_failed`) and costs the same time, known account or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.api.errors import PermissionDenied
from zmn.core import crud
from zmn.core.db import utcnow
from zmn.core.service import Call, handler
from zmn.services.identity import lockout, passwords
from zmn.services.identity.api import LogInByAccount, LogInByUser, LogOut, ValidateSession
from zmn.services.identity.lockout import LockoutPolicy
from zmn.services.identity.models import AccountVO, SessionVO, UserVO
from zmn.services.identity.sessions import digest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node
    from zmn.services.identity.sessions import SessionManager

log = logging.getLogger("zmn.identity")


def login_failed() -> PermissionDenied:
    # One answer for an unknown name, a wrong password and a locked account: a caller
    # cannot learn which accounts exist.
    return PermissionDenied(
        "login failed: wrong name or password, or the account is locked after too many"
        " failures (identity/login.maxFailures); try again later",
        code="IDENTITY.LOGIN_FAILED",
    )


class LoginHandlers:
    """LogInByAccount, LogInByUser, LogOut, ValidateSession."""

    node: Node
    sessions: SessionManager

    def _gc(self, name: str) -> int:
        return int(self.node.global_config.get("identity", name))

    async def _ended(self, uuids: list[str]) -> None:
        if uuids:
            await self.node.bus.publish("/session/deleted", {"uuids": uuids})

    @handler(LogInByAccount)
    async def log_in_by_account(self, msg: LogInByAccount, call: Call) -> dict[str, Any]:
        def find(s: Session) -> AccountVO | None:
            return s.scalar(select(AccountVO).where(AccountVO.name == msg.accountName))

        account_uuid = await self._check_password(AccountVO, find, msg.password)
        return await self._open_session(call, account_uuid, None)

    @handler(LogInByUser)
    async def log_in_by_user(self, msg: LogInByUser, call: Call) -> dict[str, Any]:
        def find(s: Session) -> UserVO | None:
            return s.scalar(
                select(UserVO)
                .join(AccountVO, AccountVO.uuid == UserVO.accountUuid)
                .where(AccountVO.name == msg.accountName, UserVO.name == msg.userName)
            )

        user_uuid = await self._check_password(UserVO, find, msg.password)
        with self.node.db.tx() as s:
            account_uuid = str(
                crud.get_row(s, self.node.resources.get("User"), user_uuid).accountUuid
            )
        return await self._open_session(call, account_uuid, user_uuid)

    async def _check_password(
        self, model: type[AccountVO] | type[UserVO], find: Callable[[Session], Any], password: str
    ) -> str:
        """The UUID of the login ``find`` returns if ``password`` is right and it is not locked.

        The attempt is reserved before the hash is verified (:mod:`lockout`), so concurrent
        guesses cannot exceed ``login.maxFailures``; a refused attempt costs the same time."""
        policy = LockoutPolicy(self._gc("login.maxFailures"), self._gc("login.lockoutSeconds"))
        with self.node.db.tx() as s:
            row = find(s)
            uuid = str(row.uuid) if row is not None else None
            stored = row.passwordHash if row is not None else passwords.dummy_hash()
        reserved = False
        if uuid is not None:
            with self.node.db.engine.begin() as conn:
                reserved = lockout.reserve(conn, model, uuid, policy, utcnow())
        ok = await passwords.verify_async(stored if reserved else passwords.dummy_hash(), password)
        if uuid is None or not reserved or not ok:
            if reserved and uuid is not None:  # a wrong password: its attempt stays counted
                with self.node.db.engine.begin() as conn:
                    until = lockout.lock_if_full(conn, model, uuid, policy, utcnow())
                if until is not None:
                    log.warning(
                        "%s %s locked until %s after failed logins", model.__name__, uuid, until
                    )
            raise login_failed()
        rehashed = await passwords.hash_async(password) if passwords.needs_rehash(stored) else None
        with self.node.db.engine.begin() as conn:
            extra = {"passwordHash": rehashed} if rehashed is not None else {}
            lockout.clear(conn, model, uuid, **extra)
        return uuid

    async def _open_session(
        self, call: Call, account_uuid: str, user_uuid: str | None
    ) -> dict[str, Any]:
        with call.tx() as s:
            account = s.get(AccountVO, account_uuid)
            if account is None:
                raise login_failed()
            if account.state != "Enabled":
                raise PermissionDenied(
                    f"account {account.name} is disabled", code="IDENTITY.ACCOUNT_DISABLED"
                )
            row, token = self.sessions.open(
                s, account_uuid, user_uuid, self._gc("session.maxConcurrent")
            )
            s.flush()
            inv = self.node.resources.get("Session").inventory(row)
            inv["uuid"] = token  # the bearer secret: the client keeps it, the table has its digest
            account_inv = self.node.resources.get("Account").inventory(account)
        inv.update(accountName=account_inv["name"], accountType=account_inv["type"])
        # Not the session UUID: it is the bearer secret, and events reach subscribers.
        await call.publish("/session/created", {"accountUuid": account_uuid, "userUuid": user_uuid})
        return {"inventory": inv, "account": account_inv}

    @handler(LogOut)
    async def log_out(self, msg: LogOut, call: Call) -> dict[str, Any]:
        key = digest(msg.sessionUuid)
        with call.tx() as s:
            ended = self.sessions.end(s, SessionVO.uuid == key)
        self.sessions.forget([key])
        await self._ended(ended)
        return {}

    @handler(ValidateSession)
    async def validate_session(self, msg: ValidateSession, call: Call) -> dict[str, Any]:
        return self.sessions.validate(msg.sessionUuid)
