"""Services: plain classes with a ``name`` and handlers marked by :func:`handler`.

A service owns its tables, API messages, handlers, error codes, global-config declarations,
system-tag patterns and extension points. It reaches other services only through
:meth:`Call.call` (the bus) and through extension points, never by importing them.

The decorator leaves the function as it is, so a unit test can call a handler directly::

    svc = ZoneService(node)
    inv = await svc.create_zone(CreateZone(name="z1"), call)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from zmn.api.message import ApiMessage
from zmn.core.bus import Envelope, Principal

if TYPE_CHECKING:
    from zmn.core.globalconfig import GlobalConfigDef
    from zmn.core.jobs import JobHandle
    from zmn.core.node import Node
    from zmn.core.resource import ResourceRegistry
    from zmn.core.tags import TagPattern

F = TypeVar("F", bound=Callable[..., Any])


def handler(api_cls: type[ApiMessage]) -> Callable[[F], F]:
    """Mark a coroutine method as the handler of an API or internal message."""

    def mark(fn: F) -> F:
        fn.__handles__ = api_cls  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class Call:
    """What a handler knows about the request it serves."""

    node: Node
    principal: Principal
    api: str
    job: JobHandle | None = None
    request_id: str = ""

    @property
    def db(self) -> Any:
        return self.node.db

    def tx(self) -> Any:
        """A transaction (``with call.tx() as s:``); keep it free of awaits."""
        return self.node.db.tx()

    async def call(self, message: ApiMessage, *, timeout: float | None = None) -> Any:
        """Send an API or internal message to the service that handles it, as this principal."""
        name = type(message).__api__.name
        service = self.node.route(name)
        env = Envelope(name, message, self.principal, id=self.request_id, job_uuid=self.job_uuid)
        return await self.node.bus.call(service, env, timeout)

    @property
    def job_uuid(self) -> str | None:
        return self.job.uuid if self.job else None

    async def publish(self, path: str, data: dict[str, Any]) -> None:
        await self.node.bus.publish(path, data)

    async def progress(self, percent: int, text: str = "") -> None:
        if self.job is not None:
            await self.job.progress(percent, text)


async def send(call: Call, api_name: str, **args: Any) -> Any:
    """Send another service's API or internal message by name, never importing that service.

    The message is built from ``args`` as they are, unchecked, because this is on every VM
    create: pass values of the fields' types (fields of the caller's own decoded message, rows,
    constants). Raw wire or shell strings go through :func:`zmn.api.message.decode_args` first.
    """
    cls: Any = call.node.apis.get(api_name)
    return await call.call(cls(**args))


class Service:
    """Base of every service."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    global_configs: ClassVar[list[GlobalConfigDef]] = []
    tag_patterns: ClassVar[list[TagPattern]] = []
    error_codes: ClassVar[dict[str, str]] = {}
    # Services this one needs loaded (by name); the node refuses to start a service whose
    # requirement is disabled, and says which.
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, node: Node) -> None:
        self.node = node

    def declare(self, registry: ResourceRegistry) -> None:
        """Add this service's resource types, links and injected joins."""

    async def start(self) -> None:
        """Called once the database, bus and every service's declarations are ready."""

    async def stop(self) -> None:
        """Called at shutdown, in reverse start order."""

    def dynamic_handlers(self) -> dict[str, tuple[type[ApiMessage], Callable[..., Any]]]:
        """APIs made at load time (e.g. one ``Query<Type>`` per resource type).

        Called after every service has declared its resource types.
        """
        return {}

    @classmethod
    def handlers(cls) -> dict[str, tuple[type[ApiMessage], str]]:
        """API name -> (message class, method name), found by the :func:`handler` marks."""
        found: dict[str, tuple[type[ApiMessage], str]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                api_cls = getattr(value, "__handles__", None)
                if api_cls is not None:
                    found[api_cls.__api__.name] = (api_cls, attr)
        return found
