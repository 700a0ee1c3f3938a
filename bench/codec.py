"""The wire codec: msgspec (what :mod:`zmn.api.wire` uses) against orjson, on the node's frames.

    python -m bench.codec [--rounds N]

Frames are what the node sends and reads most: a ``Query`` reply of 100 VM inventories
(nested NICs, tags, datetimes as text), a small request, and an event. For each library it
times encode and decode (best of 5 runs of N rounds) and prints microseconds per frame. The
result decides whether orjson is used (docs/benchmarks.md, "Wire codec").
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import msgspec

FRAMES: dict[str, Any] = {
    "query-reply-100": {
        "type": "reply",
        "id": "r-1",
        "ok": True,
        "result": {
            "inventories": [
                {
                    "uuid": f"{i:032x}",
                    "name": f"vm-{i}",
                    "description": None,
                    "state": "Running",
                    "hostUuid": f"{i + 1:032x}",
                    "cpuNum": 2,
                    "memorySize": 2147483648,
                    "createDate": "2026-12-06 04:57:43.980408",
                    "lastOpDate": "2026-12-06 04:57:43.980414",
                    "vmNics": [
                        {
                            "uuid": f"{i + 2:032x}",
                            "ip": f"10.0.{i // 250}.{i % 250}",
                            "mac": "fa:16:3e:00:00:01",
                            "l3NetworkUuid": "a" * 32,
                        }
                    ],
                    "systemTags": [f"hostname::vm{i}"],
                }
                for i in range(100)
            ],
            "total": 100,
        },
    },
    "request": {
        "type": "request",
        "id": "r-2",
        "api": "StartVmInstance",
        "args": {"uuid": "b" * 32},
        "session": "c" * 32,
    },
    "event": {
        "type": "event",
        "path": "/vm/state",
        "time": 1733460000.5,
        "data": {"uuid": "d" * 32, "state": "Running", "oldState": "Starting"},
    },
}


def _best(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def measure(rounds: int) -> list[tuple[str, str, float, float]]:
    """(frame, library, encode µs, decode µs) for msgspec and orjson."""
    import orjson

    enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder()
    out = []
    for name, frame in FRAMES.items():
        body = enc.encode(frame)
        assert orjson.loads(body) == dec.decode(body) == frame
        out.append((name, "msgspec", _best(lambda f=frame: enc.encode(f), rounds),
                    _best(lambda b=body: dec.decode(b), rounds)))  # fmt: skip
        out.append((name, "orjson", _best(lambda f=frame: orjson.dumps(f), rounds),
                    _best(lambda b=body: orjson.loads(b), rounds)))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'frame':<16} {'library':<8} {'encode µs':>10} {'decode µs':>10}")
    for name, lib, e, d in measure(args.rounds):
        print(f"{name:<16} {lib:<8} {e:>10.2f} {d:>10.2f}")


if __name__ == "__main__":
    main()
