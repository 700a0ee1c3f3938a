"""Errors that cross the wire.

Every error has a stable ``code`` (``ZONE.NOT_FOUND`` style), a message, ``details`` (always
naming the offending ``field`` when there is one) and ``retryable``. The class decides the
``kind``, which clients map to exit statuses without knowing every code::

    ZmnError                      kind             zcli exit status
    ├── InvalidArgument           InvalidArgument  2  (bad field, unknown parameter, bad value)
    ├── NotFound                  NotFound         3  (resource, API, job)
    ├── Conflict                  Conflict         4  (children present, duplicate, in use)
    │   └── InvalidState          InvalidState     4  (operation not allowed in current state)
    ├── PermissionDenied          PermissionDenied 1  (no session, expired, not allowed)
    ├── Unavailable               Unavailable      5  (node stopping, backend down; retryable)
    ├── Timeout                   Timeout          124 (a wait ran out; the job may still finish)
    ├── OperationFailed           OperationFailed  1  (a step failed and was rolled back)
    └── InternalError             InternalError    1  (a bug: reported, never a crash)

This module is part of the API contract: clients import it, so it imports nothing heavy.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing

if TYPE_CHECKING:  # annotations only: the CLI's cold start skips importing typing
    from typing import Any, ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


class ZmnError(Exception):
    """Base of every error the API returns."""

    kind: ClassVar[str] = "Error"
    exit_status: ClassVar[int] = EXIT_FAILED
    default_code: ClassVar[str] = "ERROR"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        retryable: bool | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.details: dict[str, Any] = dict(details)
        if field is not None:
            self.details["field"] = field

    @property
    def field(self) -> str | None:
        value = self.details.get("field")
        return value if isinstance(value, str) else None

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "retryable": self.retryable,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ZmnError:
        klass = KINDS.get(str(data.get("kind")), ZmnError)
        err = klass(
            str(data.get("message", "")),
            code=str(data.get("code") or klass.default_code),
            retryable=bool(data.get("retryable", False)),
        )
        err.details = dict(data.get("details") or {})
        return err

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(ZmnError):
    kind = "InvalidArgument"
    exit_status = EXIT_USAGE
    default_code = "ARG.INVALID"


class NotFound(ZmnError):
    kind = "NotFound"
    exit_status = EXIT_NOT_FOUND
    default_code = "RESOURCE.NOT_FOUND"


class Conflict(ZmnError):
    kind = "Conflict"
    exit_status = EXIT_CONFLICT
    default_code = "RESOURCE.CONFLICT"


class InvalidState(Conflict):
    kind = "InvalidState"
    default_code = "RESOURCE.INVALID_STATE"


class PermissionDenied(ZmnError):
    kind = "PermissionDenied"
    exit_status = EXIT_FAILED
    default_code = "IDENTITY.PERMISSION_DENIED"


class Unavailable(ZmnError):
    kind = "Unavailable"
    exit_status = EXIT_UNAVAILABLE
    default_code = "NODE.UNAVAILABLE"
    default_retryable = True


class Timeout(ZmnError):
    kind = "Timeout"
    exit_status = EXIT_TIMEOUT
    default_code = "JOB.WAIT_TIMEOUT"
    default_retryable = True


class OperationFailed(ZmnError):
    kind = "OperationFailed"
    exit_status = EXIT_FAILED
    default_code = "OPERATION.FAILED"


class InternalError(ZmnError):
    kind = "InternalError"
    exit_status = EXIT_FAILED
    default_code = "INTERNAL"


KINDS: dict[str, type[ZmnError]] = {
    k.kind: k
    for k in (
        ZmnError,
        InvalidArgument,
        NotFound,
        Conflict,
        InvalidState,
        PermissionDenied,
        Unavailable,
        Timeout,
        OperationFailed,
        InternalError,
    )
}


def not_found(resource_type: str, uuid: str, field: str | None = None) -> NotFound:
    """The error for a missing resource, with the code every service uses for it."""
    code = f"{upper_snake(resource_type)}.NOT_FOUND"
    return NotFound(
        f"{resource_type} {uuid!r} not found",
        code=code,
        field=field,
        resourceType=resource_type,
        uuid=uuid,
    )


def invalid_state(
    resource_type: str, uuid: str, state: str, operation: str, allowed: list[str] | None = None
) -> InvalidState:
    """The error for an operation the state table does not allow."""
    hint = f"; allowed in: {', '.join(allowed)}" if allowed else ""
    return InvalidState(
        f"cannot {operation} {resource_type} {uuid} in state {state}{hint}",
        code=f"{upper_snake(resource_type)}.INVALID_STATE",
        resourceType=resource_type,
        uuid=uuid,
        state=state,
        operation=operation,
        allowedStates=allowed or [],
    )


def upper_snake(camel: str) -> str:
    """``VmInstance`` -> ``VM_INSTANCE``, ``L3Network`` -> ``L3_NETWORK``."""
    out: list[str] = []
    for i, ch in enumerate(camel):
        if ch.isupper() and i and (camel[i - 1].islower() or camel[i - 1].isdigit()):
            out.append("_")
        out.append(ch.upper())
    return "".join(out)
