"""Regression: flow-chain listeners are documented to receive ``run|done|fail|rollback``
events, but ``done`` was never sent, so a listener could not tell a finished step from one
still running. FlowChain.run now notifies ``done`` after each step's record is saved.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.querymodel import build_node
from zmn.core.flow import Flow, FlowContext
from zmn.core.resource import ResourceRegistry
from zmn.core.service import Call, Service


class One(Flow):
    name = "one"

    async def run(self, ctx: FlowContext) -> None:
        pass


class ChainService(Service):
    name = "chaintest"

    def declare(self, registry: ResourceRegistry) -> None:
        self.node.flows.add_chain("single", [One])


async def test_listener_sees_done(tmp_path: Path) -> None:
    node = build_node(tmp_path, [ChainService])
    events: list[str] = []
    node.flows.listeners.append(lambda chain, flow, event: events.append(f"{flow}:{event}"))
    await node.flows.chain("single").run(FlowContext(Call(node, node.admin_principal(), "X")))
    assert events == ["one:run", "one:done"]
    node.db.dispose()
