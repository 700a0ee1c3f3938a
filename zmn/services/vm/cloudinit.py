"""cloud-init data of a VM: user data and SSH keys, kept by the node for the NoCloud seed.

``CreateVmInstance`` takes ``userData`` (text or base64) and ``sshKeys`` (public key lines),
or ZStack's system tags ``userdata::{base64}`` and ``sshkey::{key}`` (those tags are taken
out of ``systemTags`` and kept here, not in the tag table). ``UpdateVmInstance`` changes them
on a stopped VM. Each change gives a new ``instanceId``, so cloud-init in the guest runs its
per-instance steps (keys, runcmd) again at the next boot. The row goes with the VM's
expunge. Hypervisors that attach a seed (KVM) read it with :func:`seed_source`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, Text, bindparam, delete, select
from sqlalchemy.dialects.mysql import MEDIUMTEXT
from sqlalchemy.orm import Mapped, mapped_column

from zmn.api.cloudinit import public_key, public_keys, user_data_b64
from zmn.api.errors import InvalidArgument
from zmn.core.db import Base
from zmn.core.flow import Flow, FlowContext
from zmn.core.tags import TagPattern

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.fastsql import AnyConnection
    from zmn.core.service import Call


# 64 KiB of user data is 87,384 characters of base64: more than MySQL's TEXT holds
_LONG_TEXT = Text().with_variant(MEDIUMTEXT(), "mysql").with_variant(MEDIUMTEXT(), "mariadb")


class VmCloudInitVO(Base):
    """A VM's cloud-init inputs: ``userData`` base64, ``sshKeys`` one key a line."""

    __tablename__ = "vm_cloud_init"
    vmInstanceUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    instanceId: Mapped[str] = mapped_column(String(64))
    userData: Mapped[str | None] = mapped_column(_LONG_TEXT, default=None)
    sshKeys: Mapped[str | None] = mapped_column(_LONG_TEXT, default=None)


MAX_TAG = 1000  # a tag row holds 1024 characters; larger user data goes as userData


def _userdata_tag(tokens: dict[str, str]) -> str | None:
    if len(tokens["userdata"]) > MAX_TAG:
        return f"a userdata:: tag holds at most {MAX_TAG} base64 characters; give userData"
    try:
        base64.b64decode(tokens["userdata"], validate=True)
    except (binascii.Error, ValueError):
        return "userdata must be base64 (or give userData, text or base64)"
    return None


def _sshkey_tag(tokens: dict[str, str]) -> str | None:
    try:
        public_key(tokens["sshkey"], "systemTags")
    except InvalidArgument as exc:
        return exc.message
    return None


USERDATA = TagPattern(
    "userdata::{userdata}", "VmInstance", "cloud-init user data, base64", _userdata_tag
)
SSHKEY = TagPattern(
    "sshkey::{sshkey}", "VmInstance", "an SSH public key for the guest", _sshkey_tag
)


def new_instance_id() -> str:
    return f"iid-{secrets.token_hex(8)}"


def plan(msg: Any) -> dict[str, Any] | None:
    """``{"userData", "sshKeys"}`` from the create message (tags taken out), or None."""
    user = msg.userData
    keys = list(msg.sshKeys or [])
    rest = []
    for tag in msg.systemTags:
        if (t := USERDATA.match(tag)) is not None:
            if user is not None:
                raise InvalidArgument(
                    "userData: give user data once, as userData or as a userdata:: tag",
                    field="userData",
                )
            _check(USERDATA, t)
            user = t["userdata"]
        elif (t := SSHKEY.match(tag)) is not None:
            _check(SSHKEY, t)
            keys.append(t["sshkey"])
        else:
            rest.append(tag)
    if user is None and not keys:
        return None
    msg.systemTags = rest
    return {
        "userData": None if user is None else user_data_b64(user),
        "sshKeys": public_keys(keys),
    }


def _check(pattern: TagPattern, tokens: dict[str, str]) -> None:
    problem = pattern.validator(tokens) if pattern.validator else None
    if problem:
        raise InvalidArgument(f"systemTags: {problem}", code="TAG.INVALID", field="systemTags")


def update(call: Call, vm_uuid: str, user_data: str | None, ssh_keys: list[str] | None) -> None:
    """New user data and/or keys (None: unchanged), with a new instance ID."""
    user = None if user_data is None else user_data_b64(user_data)
    keys = None if ssh_keys is None else public_keys(ssh_keys)
    with call.tx() as s:
        row = s.get(VmCloudInitVO, vm_uuid)
        if row is None:
            row = VmCloudInitVO(vmInstanceUuid=vm_uuid, instanceId=new_instance_id())
            s.add(row)
        if user is not None:
            row.userData = user
        if keys is not None:
            row.sshKeys = "\n".join(keys) or None
        row.instanceId = new_instance_id()


_SEED_SOURCE = select(
    VmCloudInitVO.instanceId, VmCloudInitVO.userData, VmCloudInitVO.sshKeys
).where(VmCloudInitVO.vmInstanceUuid == bindparam("vm"))


def seed_source(conn: AnyConnection | Session, vm_uuid: str) -> dict[str, Any] | None:
    """What a seed needs from the node's records: instance ID, user data (base64), keys."""
    row = conn.execute(_SEED_SOURCE, {"vm": vm_uuid}).first()
    if row is None:
        return None
    return {
        "instanceId": row.instanceId,
        "userData": row.userData or "",
        "sshKeys": (row.sshKeys or "").splitlines(),
    }


def remove(session: Session, vm_uuid: str) -> None:
    session.execute(delete(VmCloudInitVO).where(VmCloudInitVO.vmInstanceUuid == vm_uuid))


class RecordCloudInit(Flow):
    """Keep the create message's user data and keys (none: nothing to do). They come in
    ``ctx.scratch`` (up to 87 KB of base64 stays out of the persisted flow record)."""

    name = "vm-create-cloud-init"

    async def run(self, ctx: FlowContext) -> None:
        ci = ctx.scratch.get("cloudInit")
        if not ci:
            return
        with ctx.call.tx() as s:
            s.add(
                VmCloudInitVO(
                    vmInstanceUuid=ctx.data["vmUuid"],
                    instanceId=new_instance_id(),
                    userData=ci["userData"],
                    sshKeys="\n".join(ci["sshKeys"]) or None,
                )
            )

    async def rollback(self, ctx: FlowContext) -> None:
        with ctx.call.tx() as s:
            remove(s, ctx.data["vmUuid"])
