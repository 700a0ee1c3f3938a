"""Global configuration as a resource: ``QueryGlobalConfig``, update, reset, options.

Services declare their settings (:class:`~zmn.core.globalconfig.GlobalConfigDef`); the node
writes missing rows at start. An update is validated by the declaration, written, applied to
the node's cache and published on ``/globalconfig/change``. Every node applies the events it
hears, so with a shared bus all nodes' caches follow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zmn.core.bus import Event, Subscription
from zmn.core.models import GlobalConfigVO
from zmn.core.resource import ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.services.config.api import GetGlobalConfigOptions, ResetGlobalConfig, UpdateGlobalConfig

if TYPE_CHECKING:
    from zmn.core.node import Node

CHANGE_PATH = "/globalconfig/change"


def as_text(value: str | int | float | bool) -> str:
    """JSON clients send typed values; shells send text. Declarations parse text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ConfigService(Service):
    name = "config"
    summary = "global configuration"
    error_codes = {
        "GLOBAL_CONFIG.NOT_FOUND": "no global config with that category and name",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._subscription: Subscription | None = None

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "GlobalConfig",
                GlobalConfigVO,
                self.name,
                "global-config",
                columns=["category", "name", "value", "defaultValue", "type"],
                docs={
                    "category": "the area a setting belongs to (identity, managementNode, ...)",
                    "value": "current value, as text",
                    "defaultValue": "value of a fresh installation",
                    "type": "string, int, float or bool",
                },
                summary="a typed setting stored in the database",
            )
        )

    async def start(self) -> None:
        self._subscription = self.node.bus.subscribe(CHANGE_PATH, self._on_change)

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()

    def _on_change(self, event: Event) -> None:
        data = event.data
        try:
            self.node.global_config.set_cached(
                str(data["category"]), str(data["name"]), str(data["newValue"])
            )
        except Exception:  # noqa: S110 - a stale or foreign event must not break the bus
            pass

    async def _set(self, call: Call, category: str, name: str, text: str) -> dict[str, Any]:
        store = self.node.global_config
        d = store.definition(category, name)
        new = d.render(d.parse(text))
        rt = self.node.resources.get("GlobalConfig")
        with call.tx() as s:
            row = s.get(GlobalConfigVO, (category, name))
            if row is None:  # declared after this node's start wrote the rows
                row = GlobalConfigVO(
                    category=category,
                    name=name,
                    value=new,
                    defaultValue=d.render(d.default),
                    type=d.type,
                    description=d.description,
                )
                s.add(row)
                old = row.defaultValue
            else:
                old = row.value
                row.value = new
            s.flush()
            inv = rt.inventories(s, [row])[0]
        store.set_cached(category, name, new)
        await call.publish(
            CHANGE_PATH, {"category": category, "name": name, "oldValue": old, "newValue": new}
        )
        return {"inventory": inv}

    @handler(UpdateGlobalConfig)
    async def update_global_config(self, msg: UpdateGlobalConfig, call: Call) -> dict[str, Any]:
        return await self._set(call, msg.category, msg.name, as_text(msg.value))

    @handler(ResetGlobalConfig)
    async def reset_global_config(self, msg: ResetGlobalConfig, call: Call) -> dict[str, Any]:
        d = self.node.global_config.definition(msg.category, msg.name)
        return await self._set(call, msg.category, msg.name, d.render(d.default))

    @handler(GetGlobalConfigOptions)
    async def get_options(self, msg: GetGlobalConfigOptions, call: Call) -> dict[str, Any]:
        d = self.node.global_config.definition(msg.category, msg.name)
        options: dict[str, Any] = {
            "category": d.category,
            "name": d.name,
            "type": d.type,
            "defaultValue": d.render(d.default),
            "value": d.render(self.node.global_config.get(d.category, d.name)),
            "description": d.description,
        }
        if d.min is not None:
            options["min"] = d.min
        if d.max is not None:
            options["max"] = d.max
        if d.choices is not None:
            options["choices"] = list(d.choices)
        return {"options": options}
