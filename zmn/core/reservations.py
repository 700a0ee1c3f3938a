"""A ledger of the capacity that operations in flight took, so that it goes back exactly once.

A flow step that takes capacity (host CPUs and memory, primary-storage bytes) passes a key
(:meth:`zmn.core.flow.FlowContext.reservation_key`: its flow record and its name). The service
that takes the capacity writes a :class:`~zmn.core.models.ReservationVO` row under that key in
the same transaction as its capacity ``UPDATE``: the side effect describes itself. The undo
releases by the key: one transaction deletes the row and, only if that delete removed it, gives
the capacity back. So

* a node killed after the capacity was taken but before the step's record was durable leaks
  nothing: recovery undoes the step in progress, finds the row and gives the capacity back;
* an undo that runs twice (a node killed mid-rollback, after the release but before its
  progress was saved) gives back nothing the second time;
* a step that never took anything (the record names the step after the one that finished)
  finds no row and gives back nothing.

The rows of a chain run are deleted with its ``Done`` write (the capacity then belongs to
the rows it made: the VM placed on the host, its volumes on the storage).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update

from zmn.core.db import utcnow
from zmn.core.models import ReservationVO

if TYPE_CHECKING:
    from zmn.core.node import Node

_T = cast(Table, ReservationVO.__table__)
_INSERT = insert(_T)
_SELECT = select(_T).where(_T.c.uuid == bindparam("key"))
_DELETE = delete(_T).where(_T.c.uuid == bindparam("key"))
DELETE_OF_RECORD = delete(_T).where(_T.c.recordUuid == bindparam("_record"))


def record_of(key: str) -> str | None:
    """The flow record a key names (``<record>:<flow>``), if any."""
    record, sep, _ = key.partition(":")
    return record if sep and len(record) == 32 else None


def add(
    conn: Any,
    key: str,
    kind: str,
    target: str,
    *,
    cpuNum: int = 0,
    memorySize: int = 0,
    size: int = 0,
) -> None:
    """Record what was taken; call inside the transaction that takes it."""
    conn.execute(
        _INSERT,
        {
            "uuid": key,
            "recordUuid": record_of(key),
            "kind": kind,
            "targetUuid": target,
            "cpuNum": cpuNum,
            "memorySize": memorySize,
            "size": size,
            "createDate": utcnow(),
        },
    )


def take(conn: Any, key: str) -> Any | None:
    """The reservation under ``key``, removed by this call (None when there is none or another
    release removed it first); give its capacity back in the same transaction."""
    row = conn.execute(_SELECT, {"key": key}).first()
    if row is None:
        return None
    gone = conn.execute(_DELETE, {"key": key})
    return row if getattr(gone, "rowcount", 0) == 1 else None


def give_back(model: Any, target: str, amounts: Mapping[str, int]) -> Any:
    """``UPDATE model SET column = column + amount ... WHERE uuid = target`` (a negative amount
    takes capacity)."""
    return (
        update(model)
        .where(model.uuid == target)
        .values({column: getattr(model, column) + amount for column, amount in amounts.items()})
    )


def release(
    node: Node,
    key: str | None,
    model: Any,
    target: str,
    amounts: Mapping[str, int],
    ledger: Mapping[str, str],
) -> None:
    """Give capacity back to a ``model`` row, the one helper of every ``Release*Capacity``.

    With a reservation ``key``: exactly once, what the ledger row holds (``ledger`` maps each
    capacity column to the row's field), in the transaction that removes the row; nothing
    when another release took it first. Without: ``amounts`` to ``target``.
    """
    if key:
        with node.db.engine.begin() as conn:
            held = take(conn, key)
            if held is not None:
                conn.execute(
                    give_back(
                        model,
                        held.targetUuid,
                        {column: getattr(held, name) for column, name in ledger.items()},
                    )
                )
        return
    node.db_write(give_back(model, target, amounts))
