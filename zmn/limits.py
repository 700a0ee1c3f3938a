"""Limits of the API endpoints (``api.limit.*`` and ``api.timeout.*`` in zmn.conf).

Every limit bounds what one client can make the node hold or do, so that neither a flood of
unauthenticated traffic nor a stalled client reaches the operator on the unix socket:

``api.limit.connections``       connections per endpoint (unix socket, TCP) at a time
``api.limit.admin.reserve``     unix-socket connections of the node's own user (or root)
                                accepted beyond that, so the local admin always gets in
``api.limit.inflight``          requests running per connection; at the limit the node stops
                                reading that socket (backpressure) instead of queueing
``api.limit.buffer``            bytes of replies and events queued per connection (before
                                it authenticated: 256 KiB)
``api.limit.events``            events queued per subscribed connection; beyond it they are
                                dropped and the client is told how many it lost
``api.limit.frame``             largest frame either way (checked on the header, before the
                                body is read; a larger reply becomes ``WIRE.REPLY_TOO_LARGE``)
``api.limit.anonymous.frame``   largest frame a connection may send before it authenticated
``api.limit.anonymous.total``   bytes all such connections may be reading at once in frames
                                over 64 KiB (smaller ones are always read)
``api.timeout.auth``            seconds a TCP connection may stay unauthenticated
``api.timeout.idle``            seconds a connection may stay without a frame, a running
                                request or a subscription

What the node refuses because of them is counted in a :class:`RefusalLog` and written to the
node log as one summary line a minute at most, never a line per refusal.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zmn.api.errors import InvalidArgument
from zmn.api.wire import MAX_FRAME, FrameError

if TYPE_CHECKING:
    from zmn.core.config import BootConfig

log = logging.getLogger("zmn.limits")

# key -> (default, lowest, highest); 0 turns a timeout off
SPEC: dict[str, tuple[int, int, int]] = {
    "api.limit.connections": (1000, 1, 1_000_000),
    "api.limit.admin.reserve": (16, 1, 10_000),
    "api.limit.inflight": (32, 1, 100_000),
    "api.limit.buffer": (8 * 1024 * 1024, 64 * 1024, 1024**3),
    "api.limit.events": (1000, 10, 1_000_000),
    "api.limit.frame": (MAX_FRAME, 64 * 1024, MAX_FRAME),
    "api.limit.anonymous.frame": (4 * 1024 * 1024, 1024, MAX_FRAME),
    "api.limit.anonymous.total": (16 * 1024 * 1024, 0, 1024**3),
    "api.timeout.auth": (10, 0, 86_400),
    "api.timeout.idle": (900, 0, 86_400 * 7),
}
# file descriptors the node needs besides API connections (database, bus, logs, agents)
FD_SLACK = 256
MAX_PEERS = 1000  # distinct peers a summary line counts
# a frame up to this size is read from any connection; a larger one from a connection that
# has not logged in only within the shared api.limit.anonymous.total
SMALL_FRAME = 64 * 1024


@dataclass(frozen=True)
class ApiLimits:
    connections: int = SPEC["api.limit.connections"][0]
    admin_reserve: int = SPEC["api.limit.admin.reserve"][0]
    inflight: int = SPEC["api.limit.inflight"][0]
    buffer: int = SPEC["api.limit.buffer"][0]
    events: int = SPEC["api.limit.events"][0]
    frame: int = SPEC["api.limit.frame"][0]
    anonymous_frame: int = SPEC["api.limit.anonymous.frame"][0]
    auth_timeout: float = SPEC["api.timeout.auth"][0]
    idle_timeout: float = SPEC["api.timeout.idle"][0]

    anonymous_total: int = SPEC["api.limit.anonymous.total"][0]

    @property
    def anonymous_buffer(self) -> int:
        """Bytes queued for a connection that has not authenticated yet."""
        return min(self.buffer, 4 * SMALL_FRAME)

    @classmethod
    def from_config(cls, config: BootConfig) -> ApiLimits:
        v = {key: _int(config.get(key), key) for key in SPEC}
        return cls(
            connections=v["api.limit.connections"],
            admin_reserve=v["api.limit.admin.reserve"],
            inflight=v["api.limit.inflight"],
            buffer=v["api.limit.buffer"],
            events=v["api.limit.events"],
            frame=v["api.limit.frame"],
            anonymous_frame=min(v["api.limit.anonymous.frame"], v["api.limit.frame"]),
            auth_timeout=v["api.timeout.auth"],
            idle_timeout=v["api.timeout.idle"],
            anonymous_total=v["api.limit.anonymous.total"],
        )


def _int(text: str, key: str) -> int:
    default, lo, hi = SPEC[key]
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise InvalidArgument(
            f"{key} must be an integer from {lo} to {hi} (default {default}), got {text!r}",
            field=key,
        )
    return value


def fit_descriptors(limits: ApiLimits, endpoints: int) -> ApiLimits:
    """Raise the soft RLIMIT_NOFILE as far as the connection limits need (up to the hard
    limit) and, when even that is too low, lower ``connections`` so that a full endpoint can
    never take the descriptor the unix socket's admin needs."""
    need = endpoints * limits.connections + limits.admin_reserve + FD_SLACK
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limits
    room = (soft - limits.admin_reserve - FD_SLACK) // max(1, endpoints)
    fitted = max(1, room)
    log.warning(
        "api.limit.connections lowered from %d to %d per endpoint: RLIMIT_NOFILE is %d;"
        " raise it (ulimit -n, LimitNOFILE=) to allow more",
        limits.connections,
        fitted,
        soft,
    )
    return ApiLimits(**{**limits.__dict__, "connections": fitted})


class FrameBudget:
    """Bytes of frames over :data:`SMALL_FRAME` that connections which have not logged in
    may hold at once, from the first byte read until their request ends: a large first
    request (a big user-data, say) still works, and a flood of large anonymous frames holds
    at most ``total`` bytes (a few times that while decoded), not so much per connection."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def reserve(self, length: int) -> Callable[[], None]:
        """Take ``length`` bytes (raises FrameError when they do not fit); returns the
        function that gives them back (once, however often it is called)."""
        if length <= SMALL_FRAME:
            return _nothing
        if self.used + length > self.total:
            raise FrameError(
                f"frame of {length} bytes refused: the node holds as much as it may from"
                " connections that have not logged in (api.limit.anonymous.total);"
                " log in first (LogInByAccount) or retry"
            )
        self.used += length
        held = [length]

        def release() -> None:
            if held:
                self.used -= held.pop()

        return release

    @contextmanager
    def admit(self, length: int) -> Iterator[None]:
        """Hold ``length`` bytes for the duration of the block."""
        release = self.reserve(length)
        try:
            yield
        finally:
            release()


def _nothing() -> None:
    pass


class ConnectionGate:
    """Counts open connections per endpoint; the unix socket's admin has a reserve."""

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self.open: Counter[str] = Counter()

    def admit(self, kind: str, peer_admin: bool) -> bool:
        cap = self.limits.connections
        if kind == "unix" and peer_admin:
            cap += self.limits.admin_reserve
        if self.open[kind] >= cap:
            return False
        self.open[kind] += 1
        return True

    def release(self, kind: str) -> None:
        self.open[kind] -= 1


class RefusalLog:
    """Counts refusals by reason and peer; logs one summary line per ``interval`` at most."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self.counts: Counter[str] = Counter()  # since the last summary line
        self.peers: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # since the start
        self._since = time.monotonic()
        self._timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None

    def note(self, reason: str, peer: str = "") -> None:
        self.totals[reason] += 1
        self.counts[reason] += 1
        if peer:
            host = host_of(peer)
            if host in self.peers or len(self.peers) < MAX_PEERS:  # bounded under any flood
                self.peers[host] += 1
        if time.monotonic() - self._since >= self.interval:
            self.flush()
            return
        try:  # the line is written when the interval ends, also when the flood stopped
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is None or self._timer[0] is not loop:
            due = max(0.0, self._since + self.interval - time.monotonic())
            self._timer = (loop, loop.call_later(due, self.flush))

    def flush(self) -> None:
        if self._timer is not None:
            self._timer[1].cancel()
            self._timer = None
        if self.counts:
            reasons = ", ".join(f"{n} {why}" for why, n in self.counts.most_common())
            top = ", ".join(f"{p} ({n})" for p, n in self.peers.most_common(3))
            self.logger.warning(
                "refused in the last %.0f s: %s%s",
                time.monotonic() - self._since,
                reasons,
                f"; most from {top}" if top else "",
            )
        self.counts.clear()
        self.peers.clear()
        self._since = time.monotonic()


def host_of(peer: str) -> str:
    """``tcp:10.0.0.5:53122`` -> ``tcp:10.0.0.5`` (a flood uses many ports)."""
    if peer.startswith(("tcp:", "tls:")):
        return peer.rpartition(":")[0]
    return peer.split(",", 1)[0]


refusals = RefusalLog(log)
