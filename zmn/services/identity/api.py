"""Identity APIs: accounts, users, login sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, Secret, api

# UpdateAccount and UpdateUser: changing one's own password in a session needs the current one
CurrentPassword = Annotated[
    str | None,
    Doc(
        "the current password: needed to change one's own password in a session (not over"
        " the unix socket as its owner, nor by an admin changing another login's)"
    ),
    Secret(),
]


@api(resource="Account", verb="create", admin=True)
class CreateAccount(CreateMessage, kw_only=True):
    """Create an account: a tenant (Normal) or another administrator (SystemAdmin)."""

    name: Annotated[str, Doc("account name, used to log in; unique")]
    password: Annotated[str, Doc("login password"), Secret()]
    type: Annotated[Literal["SystemAdmin", "Normal"], Doc("SystemAdmin or Normal")] = "Normal"


@api(resource="Account", verb="update")
class UpdateAccount(ApiMessage, kw_only=True):
    """Change an account's password, name or description (an admin, or the account itself)."""

    uuid: Annotated[str, Doc("account UUID or name")]
    password: Annotated[str | None, Doc("new password; also lifts a login lockout"), Secret()] = (
        None
    )
    currentPassword: CurrentPassword = None
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="Account", verb="change-state", admin=True)
class ChangeAccountState(ApiMessage, kw_only=True):
    """Enable or disable an account; disabling ends its sessions and refuses its logins."""

    uuid: Annotated[str, Doc("account UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]


@api(resource="Account", verb="delete", admin=True)
class DeleteAccount(DeleteMessage, kw_only=True):
    """Delete an account; refused while it has users or resources unless cascade=true."""


@api(resource="User", verb="create")
class CreateUser(CreateMessage, kw_only=True):
    """Create a user: another login of an account, with its own password."""

    name: Annotated[str, Doc("user name, unique within the account")]
    password: Annotated[str, Doc("login password"), Secret()]
    accountUuid: Annotated[
        str | None, Doc("account of the user (admins only; default: the caller's)"), Ref("Account")
    ] = None


@api(resource="User", verb="update")
class UpdateUser(ApiMessage, kw_only=True):
    """Change a user's password, name or description (its account, an admin, or the user)."""

    uuid: Annotated[str, Doc("user UUID or name")]
    password: Annotated[str | None, Doc("new password; also lifts a login lockout"), Secret()] = (
        None
    )
    currentPassword: CurrentPassword = None
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="User", verb="delete")
class DeleteUser(DeleteMessage, kw_only=True):
    """Delete a user and end its sessions."""


@api(public=True)
class LogInByAccount(ApiMessage, kw_only=True):
    """Log in with an account name and password; the reply's inventory.uuid is the session."""

    accountName: Annotated[str, Doc("account name")]
    password: Annotated[str, Doc("account password"), Secret()]


@api(public=True)
class LogInByUser(ApiMessage, kw_only=True):
    """Log in as a user of an account; the reply's inventory.uuid is the session."""

    accountName: Annotated[str, Doc("name of the user's account")]
    userName: Annotated[str, Doc("user name")]
    password: Annotated[str, Doc("user password"), Secret()]


@api(public=True)
class LogOut(ApiMessage, kw_only=True):
    """End a session (succeeds as well when it has already ended)."""

    sessionUuid: Annotated[str, Doc("the session to end"), Secret()]


@api(public=True, mutating=False)
class ValidateSession(ApiMessage, kw_only=True):
    """Whether a session is still valid, and until when (does not refresh it)."""

    sessionUuid: Annotated[str, Doc("the session to check"), Secret()]
