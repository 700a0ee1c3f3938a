"""A tiny ``ping -D -i`` in Python (the machine has no iputils): ICMP echo requests to one
address at a fixed interval, one line per reply ``[epoch] 64 bytes from IP: icmp_seq=N ``,
until SIGINT or SIGTERM. Root only (raw socket). Run inside a namespace with
``ip netns exec NS python -m tests.support.icmpping IP INTERVAL``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def packet(ident: int, seq: int) -> bytes:
    payload = b"zmn-ping" * 7  # 56 bytes, as ping sends
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def main(argv: list[str]) -> int:
    ip, interval = argv[0], float(argv[1])
    stop = [False]

    def done(*_: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGINT, done)
    signal.signal(signal.SIGTERM, done)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    seq = 0
    next_send = time.monotonic()
    sent = received = 0
    while not stop[0]:
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            try:
                sock.sendto(packet(ident, seq), (ip, 0))
                sent += 1
            except OSError:
                pass  # no route/neighbour yet: counted as lost
            next_send += interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if ready:
            data, addr = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if kind == 0 and rid == ident and addr[0] == ip:
                received += 1
                print(f"[{time.time():.6f}] 64 bytes from {ip}: icmp_seq={rseq} ", flush=True)
    print(f"{sent} packets transmitted, {received} received", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
