"""What a login costs a peer: a rate per address and a bounded share of the argon2 work.

Every ``LogInByAccount``/``LogInByUser`` passes :class:`LoginGate` (the node runs it around
the call, knowing the connection's peer):

1. a token bucket per peer address (``identity/login.peerBurst`` attempts at once, refilled
   at ``identity/login.peerRatePerMinute``): beyond it the attempt is refused at once with
   ``IDENTITY.LOGIN_RATE_LIMITED`` (retryable, ``retryAfter`` seconds), before any hashing;
2. at most ``identity/login.parallelism`` logins verify a password at a time (argon2 costs
   tens of milliseconds of CPU each), and a peer may have at most
   ``identity/login.peerQueue`` logins waiting for that: more are refused with
   ``IDENTITY.LOGIN_BUSY``. A flood from one address therefore waits in a short line of its
   own and cannot push a real login from elsewhere out.

The unix-socket owner needs no login (peer authentication), and calls without a peer (inside
the node) or relayed by another node (``api.portal``, limited where they came in) pass.
Refusals are not logged one by one (a flood must not fill the log), and only the first of each
minute are audited one by one: the rest become summary rows (:mod:`zmn.core.audit`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from zmn.api.errors import Unavailable
from zmn.core.globalconfig import GlobalConfigDef

if TYPE_CHECKING:
    from zmn.core.node import Node

LOGIN_APIS = ("LogInByAccount", "LogInByUser")
MAX_PEERS = 10_000  # buckets kept (least recently used dropped first)
EXEMPT = ("", "api.portal")

CONFIGS = [
    GlobalConfigDef(
        "identity",
        "login.peerBurst",
        10,
        "int",
        "login attempts a peer address may make at once before its rate applies",
        min=1,
    ),
    GlobalConfigDef(
        "identity",
        "login.peerRatePerMinute",
        30,
        "int",
        "login attempts per minute a peer address may make after its burst",
        min=1,
    ),
    GlobalConfigDef(
        "identity",
        "login.parallelism",
        2,
        "int",
        "logins that verify a password (argon2) at the same time",
        min=1,
    ),
    GlobalConfigDef(
        "identity",
        "login.peerQueue",
        4,
        "int",
        "logins of one peer address in progress at once (waiting for or holding a slot)",
        min=1,
    ),
]


def peer_key(peer: str) -> str | None:
    """The address a peer label names (``tcp:HOST:PORT`` -> ``tcp:HOST``, a unix peer by its
    uid); None for calls that are not limited."""
    if peer in EXEMPT:
        return None
    if peer.startswith("unix:"):
        return peer.split(",", 1)[0]
    scheme, _, rest = peer.partition(":")
    host, sep, port = rest.rpartition(":")
    return f"{scheme}:{host}" if sep and port.isdigit() else peer


class LoginGate:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self.waiting: dict[str, int] = {}
        self.refused = 0  # attempts refused since start (GetManagementNodeStats could say)
        self._slots: asyncio.Semaphore | None = None
        self._size = 0

    def _gc(self, name: str) -> int:
        return int(self.node.global_config.get("identity", name))

    def _take(self, key: str) -> None:
        burst = float(self._gc("login.peerBurst"))
        rate = self._gc("login.peerRatePerMinute") / 60.0
        now = time.monotonic()
        tokens, at = self.buckets.pop(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            self.refused += 1
            raise Unavailable(
                "too many login attempts from this address; wait and try again"
                " (identity/login.peerRatePerMinute)",
                code="IDENTITY.LOGIN_RATE_LIMITED",
                retryAfter=round((1 - tokens) / rate, 1),
            )
        self.buckets[key] = (tokens - 1, now)
        while len(self.buckets) > MAX_PEERS:
            self.buckets.popitem(last=False)

    def _semaphore(self) -> asyncio.Semaphore:
        size = self._gc("login.parallelism")
        if self._slots is None or size != self._size:
            self._slots, self._size = asyncio.Semaphore(size), size
        return self._slots

    @asynccontextmanager
    async def __call__(self, peer: str) -> AsyncIterator[None]:
        key = peer_key(peer)
        if key is None:
            yield
            return
        self._take(key)
        if self.waiting.get(key, 0) >= self._gc("login.peerQueue"):
            self.refused += 1
            raise Unavailable(
                "too many logins from this address are waiting; try again shortly"
                " (identity/login.peerQueue)",
                code="IDENTITY.LOGIN_BUSY",
                retryAfter=1,
            )
        self.waiting[key] = self.waiting.get(key, 0) + 1
        try:
            async with self._semaphore():
                yield
        finally:
            left = self.waiting[key] - 1
            if left:
                self.waiting[key] = left
            else:
                del self.waiting[key]
