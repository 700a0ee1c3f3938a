"""VM invariants for ``CheckConsistency``: no VM rests in a transitional state, and every NIC
belongs to a VM."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from zmn.core.consistency import Violation
from zmn.core.models import JobVO
from zmn.services.vm.models import VmInstanceVO, VmNicVO
from zmn.services.vm.states import TRANSITIONAL

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


class VmConsistency:
    def __init__(self, node: Node) -> None:
        self.node = node

    def _busy(self, session: Session) -> set[str]:
        """VMs an operation is working on: a running task in their queue here, or a running
        job about them on any node."""
        busy = {
            q["signature"][3:]
            for q in self.node.queues.snapshot()
            if q["signature"].startswith("vm:") and q["running"]
        }
        busy.update(
            str(u)
            for u in session.scalars(
                select(JobVO.resourceUuid).where(
                    JobVO.state == "Running", JobVO.resourceUuid.is_not(None)
                )
            )
        )
        return busy

    def check_consistency(self, session: Session) -> list[Violation]:
        out: list[Violation] = []
        stuck = list(
            session.execute(
                select(VmInstanceVO.uuid, VmInstanceVO.name, VmInstanceVO.state).where(
                    VmInstanceVO.state.in_(TRANSITIONAL)
                )
            )
        )
        busy = self._busy(session) if stuck else set()
        for uuid, name, state in stuck:
            if uuid not in busy:
                out.append(
                    Violation(
                        check="transitional-state-without-job",
                        resourceType="VmInstance",
                        uuid=uuid,
                        message=f"VM {name} is {state} but no operation on it is running",
                        actual=state,
                    )
                )
        orphans = session.scalars(
            select(VmNicVO.uuid).where(VmNicVO.vmInstanceUuid.not_in(select(VmInstanceVO.uuid)))
        )
        for nic in orphans:
            out.append(
                Violation(
                    check="nic-owned-by-vm",
                    resourceType="VmNic",
                    uuid=nic,
                    message=f"NIC {nic} belongs to no VM",
                )
            )
        return out
