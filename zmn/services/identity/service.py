"""Identity: accounts, users, login sessions, and the node's authenticator.

Who may do what is decided in one place: the node refuses admin-only APIs to normal
accounts, the registry's ownership rules hide other accounts' rows, and the few
self-service rules (an account manages its own password and users) live in
:func:`may_manage`. A user acts as its account but cannot manage the account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.api.errors import Conflict, InvalidArgument, PermissionDenied
from zmn.core import crud
from zmn.core.bus import Event, Principal, Subscription
from zmn.core.db import new_uuid, utcnow
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.models import AccountResourceRefVO
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.services.identity import gate, passwords
from zmn.services.identity.api import (
    ChangeAccountState,
    CreateAccount,
    CreateUser,
    DeleteAccount,
    DeleteUser,
    UpdateAccount,
    UpdateUser,
)
from zmn.services.identity.bootstrap import ADMIN_NAME, ensure_admin_row
from zmn.services.identity.login import LoginHandlers
from zmn.services.identity.models import AccountVO, SessionVO, UserVO
from zmn.services.identity.sessions import SessionManager

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

log = logging.getLogger("zmn.identity")

ACCOUNT_STATE = StateMachine(
    "Account",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
)
PURGE_INTERVAL = 300.0


def may_manage(principal: Principal, account_uuid: str) -> bool:
    """Admins manage everything; an account (not its users) manages itself and its users."""
    return principal.is_admin or (
        principal.accountUuid == account_uuid and principal.userUuid is None
    )


def _itself(principal: Principal, account_uuid: str, user_uuid: str | None) -> bool:
    """The caller is that login, in a session (the unix-socket owner has no session: it can
    always reset a password, a locked admin's too)."""
    return (
        principal.sessionUuid is not None
        and principal.accountUuid == account_uuid
        and principal.userUuid == user_uuid
    )


def _denied(what: str) -> PermissionDenied:
    return PermissionDenied(f"only an admin or the account itself can {what}")


class IdentityService(LoginHandlers, Service):
    name = "identity"
    summary = "accounts, users, sessions"
    state_machines = [ACCOUNT_STATE]
    global_configs = [
        GlobalConfigDef(
            "identity",
            "session.timeout",
            7200,
            "int",
            "idle seconds before a session expires; every call refreshes it",
            min=1,
        ),
        GlobalConfigDef(
            "identity",
            "session.maxConcurrent",
            0,
            "int",
            "open sessions an account (or a user) may hold; 0: no limit",
            min=0,
        ),
        GlobalConfigDef(
            "identity",
            "login.maxFailures",
            10,
            "int",
            "wrong passwords in a row that lock a login; 0: never lock",
            min=0,
        ),
        GlobalConfigDef(
            "identity",
            "login.lockoutSeconds",
            300,
            "int",
            "seconds a login stays locked after too many wrong passwords",
            min=1,
        ),
        GlobalConfigDef(
            "identity",
            "password.minLength",
            8,
            "int",
            "shortest password accepted for new passwords",
            min=1,
        ),
        *gate.CONFIGS,
    ]
    error_codes = {
        "IDENTITY.LOGIN_FAILED": "wrong name or password, or the login is locked for a while",
        "IDENTITY.LOGIN_RATE_LIMITED": "too many login attempts from this address (retryAfter)",
        "IDENTITY.LOGIN_BUSY": "too many logins from this address are in progress; retry",
        "IDENTITY.CURRENT_PASSWORD_REQUIRED": "changing one's own password needs the current one",
        "IDENTITY.SESSION_INVALID": "the session does not exist (logged out, account gone)",
        "IDENTITY.SESSION_EXPIRED": "the session was idle longer than identity/session.timeout",
        "IDENTITY.SESSION_REQUIRED": "this endpoint needs a session: log in first",
        "IDENTITY.ADMIN_ONLY": "the API or resource type needs an admin account",
        "IDENTITY.ADMIN_PROTECTED": "the admin account cannot be deleted, disabled or renamed",
        "IDENTITY.ACCOUNT_DISABLED": "the account is disabled",
        "IDENTITY.TOO_MANY_SESSIONS": "identity/session.maxConcurrent sessions are open",
        "IDENTITY.WEAK_PASSWORD": "the password is shorter than identity/password.minLength",
        "IDENTITY.PERMISSION_DENIED": "the caller may not change this account or user",
        "ACCOUNT.NOT_FOUND": "no account with that UUID or name",
        "ACCOUNT.DUPLICATE_NAME": "an account with that name exists",
        "ACCOUNT.HAS_DEPENDENTS": "the account still has users",
        "ACCOUNT.HAS_RESOURCES": "the account still owns resources",
        "ACCOUNT.INVALID_STATE": "the state event is not allowed",
        "USER.NOT_FOUND": "no user with that UUID or name",
        "USER.DUPLICATE_NAME": "the account has a user with that name",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.sessions = SessionManager(node)
        self.gate = gate.LoginGate(node)
        for api_name in gate.LOGIN_APIS:
            node.gates[api_name] = self.gate
        self._admin: Principal | None = None
        self._subscription: Subscription | None = None
        self._purge_task: asyncio.Task[None] | None = None

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Account",
                AccountVO,
                self.name,
                "account",
                columns=["uuid", "name", "type", "state"],
                enums={"type": ["SystemAdmin", "Normal"], "state": ["Enabled", "Disabled"]},
                docs={
                    "failedLogins": "wrong passwords in a row since the last good login",
                    "lockedUntil": "logins are refused until then (too many wrong passwords)",
                },
                hidden_fields=("passwordHash",),
                owned=True,  # every account owns its own row
                state_field="state",
                summary="a tenant or an administrator",
            )
        )
        registry.add(
            ResourceType(
                "User",
                UserVO,
                self.name,
                "user",
                columns=["uuid", "name", "accountUuid"],
                refs={"accountUuid": RefSpec("Account", on_delete="cascade")},
                hidden_fields=("passwordHash",),
                owned=True,
                summary="another login of an account",
            )
        )
        registry.add(
            ResourceType(
                "Session",
                SessionVO,
                self.name,
                "session",
                columns=["uuid", "accountUuid", "userUuid", "expiredDate"],
                # Sessions go with their account or user (see the delete handlers).
                refs={
                    "accountUuid": RefSpec("Account", on_delete="keep"),
                    "userUuid": RefSpec("User", on_delete="keep"),
                },
                admin_only=True,
                summary="a login session",
            )
        )

    # ----------------------------------------------------------------- life cycle

    async def start(self) -> None:
        self.admin_principal()
        self.node.authenticator = self
        # Another node's logout or account change must not leave a session cached here.
        self._subscription = self.node.bus.subscribe("/session/deleted", self._on_session_deleted)
        self._purge_task = asyncio.get_running_loop().create_task(self._purge_loop())

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
        if self.node.authenticator is self:
            self.node.authenticator = None

    def _on_session_deleted(self, event: Event) -> None:
        self.sessions.forget(event.data.get("uuids") or [])

    async def _purge_loop(self) -> None:
        while True:
            try:
                self.sessions.purge()
            except Exception:
                log.exception("purging expired sessions failed")
            await asyncio.sleep(PURGE_INTERVAL)

    # ----------------------------------------------------------------- Authenticator

    def principal_for_session(self, session_uuid: str) -> Principal:
        return self.sessions.principal(session_uuid)

    def admin_principal(self) -> Principal:
        if self._admin is None:
            uuid = ensure_admin_row(self.node.db)
            self._admin = Principal(uuid, ADMIN_NAME, "SystemAdmin")
        return self._admin

    @property
    def admin_uuid(self) -> str:
        return self.admin_principal().accountUuid

    # ----------------------------------------------------------------- accounts

    @handler(CreateAccount)
    async def create_account(self, msg: CreateAccount, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Account", msg)
        if existing is not None:
            return {"inventory": existing}
        passwords.check_policy(msg.password, self._gc("password.minLength"))
        hashed = await passwords.hash_async(msg.password)
        rt = self.node.resources.get("Account")
        row = AccountVO(
            uuid=msg.resourceUuid or new_uuid(),
            name=msg.name,
            type=msg.type,
            state="Enabled",
            passwordHash=hashed,
            failedLogins=0,
        )
        with call.tx() as s:
            crud.unique_name(s, rt, msg.name)
            crud.insert(call, s, "Account", row, msg, owner=row.uuid)
            s.flush()
            inv = rt.inventories(s, [row])[0]
        await call.publish("/account/created", {"resourceType": "Account", "inventory": inv})
        return {"inventory": inv}

    @handler(UpdateAccount)
    async def update_account(self, msg: UpdateAccount, call: Call) -> dict[str, Any]:
        if not may_manage(call.principal, msg.uuid):
            raise _denied("change an account")
        if msg.name is not None and msg.uuid == self.admin_uuid and msg.name != ADMIN_NAME:
            raise PermissionDenied(
                "the admin account cannot be renamed", code="IDENTITY.ADMIN_PROTECTED"
            )
        if msg.password is not None and _itself(call.principal, msg.uuid, None):
            await self._current_password(AccountVO, msg.uuid, msg.currentPassword)
        return await self._update_login(
            call, "Account", msg.uuid, msg.name, msg.description, msg.password
        )

    async def _current_password(
        self, model: type[AccountVO] | type[UserVO], uuid: str, current: str | None
    ) -> None:
        """Changing one's own password in a session needs the current one, checked like a
        login (it counts toward the lockout): a stolen session cannot take the login over."""
        if current is None:
            raise InvalidArgument(
                "currentPassword: changing your own password needs the current one",
                code="IDENTITY.CURRENT_PASSWORD_REQUIRED",
                field="currentPassword",
            )
        try:
            await self._check_password(model, lambda s: s.get(model, uuid), current)
        except PermissionDenied:
            raise PermissionDenied(
                "currentPassword: wrong password, or the login is locked after too many"
                " failures (identity/login.maxFailures)",
                code="IDENTITY.LOGIN_FAILED",
                field="currentPassword",
            ) from None

    async def _update_login(
        self,
        call: Call,
        type_name: str,
        uuid: str,
        name: str | None,
        description: str | None,
        password: str | None,
    ) -> dict[str, Any]:
        """Update an account or a user; a new password ends the other sessions of that login."""
        hashed = None
        if password is not None:
            passwords.check_policy(password, self._gc("password.minLength"))
            hashed = await passwords.hash_async(password)
        rt = self.node.resources.get(type_name)
        ended: list[str] = []
        with call.tx() as s:
            row = crud.get_row(s, rt, uuid)
            if name is not None and name != row.name:
                scope = {"accountUuid": row.accountUuid} if type_name == "User" else None
                crud.unique_name(s, rt, name, scope)
                row.name = name
            if description is not None:
                row.description = description
            if hashed is not None:
                row.passwordHash = hashed
                row.failedLogins = 0
                row.lockedUntil = None
                mine = (
                    SessionVO.userUuid == uuid
                    if type_name == "User"
                    else ((SessionVO.accountUuid == uuid) & SessionVO.userUuid.is_(None))
                )
                ended = self.sessions.end(
                    s, mine, SessionVO.uuid != (call.principal.sessionUuid or "")
                )
            row.lastOpDate = utcnow()
            s.flush()
            inv = rt.inventories(s, [row])[0]
        await self._ended(ended)
        await call.publish(f"/{rt.cli}/updated", {"resourceType": type_name, "inventory": inv})
        return {"inventory": inv}

    @handler(ChangeAccountState)
    async def change_account_state(self, msg: ChangeAccountState, call: Call) -> dict[str, Any]:
        if msg.uuid == self.admin_uuid and msg.stateEvent == "disable":
            raise PermissionDenied(
                "the admin account cannot be disabled", code="IDENTITY.ADMIN_PROTECTED"
            )
        result = await crud.change_state(call, "Account", msg.uuid, msg.stateEvent, ACCOUNT_STATE)
        if msg.stateEvent == "disable":
            with call.tx() as s:
                ended = self.sessions.end(s, SessionVO.accountUuid == msg.uuid)
            await self._ended(ended)
        return result

    @handler(DeleteAccount)
    async def delete_account(self, msg: DeleteAccount, call: Call) -> dict[str, Any]:
        if msg.uuid == self.admin_uuid:
            raise PermissionDenied(
                "the admin account cannot be deleted", code="IDENTITY.ADMIN_PROTECTED"
            )
        owned = self._owned_resources(msg.uuid)
        if owned and not msg.cascade:
            listing = ", ".join(f"{len(u)} {t}" for t, u in owned.items())
            raise Conflict(
                f"the account still owns {listing}; delete them first or pass cascade=true",
                code="ACCOUNT.HAS_RESOURCES",
                field="uuid",
                resources=owned,
            )
        for type_name, uuids in owned.items():
            rt = self.node.resources.types.get(type_name)
            if rt is None:
                continue  # its plugin is disabled: the rows go to the admin below
            for uuid in uuids:
                await crud.delete_via_api(call, rt, uuid)
        ended: list[str] = []
        admin = self.admin_uuid

        def cleanup(s: Session, _row: Any) -> None:
            ended.extend(self.sessions.end(s, SessionVO.accountUuid == msg.uuid))
            # Whatever is still owned (types whose plugin is not loaded) is not orphaned.
            s.execute(
                update(AccountResourceRefVO)
                .where(AccountResourceRefVO.accountUuid == msg.uuid)
                .values(accountUuid=admin)
            )

        result = await crud.delete(call, "Account", msg.uuid, cascade=msg.cascade, cleanup=cleanup)
        await self._ended(ended)
        return result

    def _owned_resources(self, account_uuid: str) -> dict[str, list[str]]:
        """Resources the account owns besides itself and its users (those go with it)."""
        with self.node.db.tx() as s:
            rows = s.execute(
                select(AccountResourceRefVO.resourceType, AccountResourceRefVO.resourceUuid).where(
                    AccountResourceRefVO.accountUuid == account_uuid,
                    AccountResourceRefVO.resourceType.not_in(["Account", "User"]),
                )
            ).all()
        out: dict[str, list[str]] = {}
        for type_name, uuid in rows:
            out.setdefault(type_name, []).append(uuid)
        return out

    # ----------------------------------------------------------------- users

    @handler(CreateUser)
    async def create_user(self, msg: CreateUser, call: Call) -> dict[str, Any]:
        account_uuid = msg.accountUuid or call.principal.accountUuid
        if not may_manage(call.principal, account_uuid):
            raise _denied("create users")
        existing = crud.existing_inventory(call, "User", msg)
        if existing is not None:
            return {"inventory": existing}
        passwords.check_policy(msg.password, self._gc("password.minLength"))
        hashed = await passwords.hash_async(msg.password)
        rt = self.node.resources.get("User")
        row = UserVO(name=msg.name, accountUuid=account_uuid, passwordHash=hashed, failedLogins=0)
        with call.tx() as s:
            crud.get_row(s, self.node.resources.get("Account"), account_uuid, "accountUuid")
            crud.unique_name(s, rt, msg.name, {"accountUuid": account_uuid})
            crud.insert(call, s, "User", row, msg, owner=account_uuid)
            s.flush()
            inv = rt.inventories(s, [row])[0]
        await call.publish("/user/created", {"resourceType": "User", "inventory": inv})
        return {"inventory": inv}

    def _user_account(self, uuid: str) -> str:
        with self.node.db.tx() as s:
            row = crud.get_row(s, self.node.resources.get("User"), uuid)
            return str(row.accountUuid)

    @handler(UpdateUser)
    async def update_user(self, msg: UpdateUser, call: Call) -> dict[str, Any]:
        account_uuid = self._user_account(msg.uuid)
        itself = call.principal.userUuid == msg.uuid
        if not may_manage(call.principal, account_uuid) and not (itself and msg.name is None):
            raise _denied("change a user")
        if msg.password is not None and _itself(call.principal, account_uuid, msg.uuid):
            await self._current_password(UserVO, msg.uuid, msg.currentPassword)
        return await self._update_login(
            call, "User", msg.uuid, msg.name, msg.description, msg.password
        )

    @handler(DeleteUser)
    async def delete_user(self, msg: DeleteUser, call: Call) -> dict[str, Any]:
        if not may_manage(call.principal, self._user_account(msg.uuid)):
            raise _denied("delete users")
        ended: list[str] = []

        def cleanup(s: Session, _row: Any) -> None:
            ended.extend(self.sessions.end(s, SessionVO.userUuid == msg.uuid))

        result = await crud.delete(call, "User", msg.uuid, cascade=msg.cascade, cleanup=cleanup)
        await self._ended(ended)
        return result
