from __future__ import annotations

from typing import Annotated

from zmn.api.message import ApiMessage, Doc, api


@api(resource="VmInstance", verb="metrics", mutating=False)
class GetVmMetrics(ApiMessage, kw_only=True):
    """A VM's recent usage as rates: CPU %, disk and network bytes/s and ops/s, memory."""

    uuid: Annotated[str | None, Doc("VM UUID")] = None
    uuids: Annotated[
        list[str] | None, Doc("several VMs in one call (a dashboard page); answers in results")
    ] = None


@api(resource="Host", verb="metrics", mutating=False, admin=True)
class GetHostMetrics(ApiMessage, kw_only=True):
    """A host's recent usage: CPU %, memory, load average."""

    uuid: Annotated[str | None, Doc("host UUID")] = None
    uuids: Annotated[
        list[str] | None, Doc("several hosts in one call (a dashboard page); answers in results")
    ] = None
