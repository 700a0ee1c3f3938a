"""The node's file log (``zmn start`` in the background), rotated by size.

``zmn.conf``: ``log.rotate.bytes`` (default 10 MiB; 0 turns rotation off) and
``log.rotate.keep`` (rotated files kept: ``zmn.log.1`` .. ``zmn.log.N``, default 5).

The background node's stdout and stderr are the log file too (a traceback before logging is
set up, or from a C library, still lands there); after each rotation they are pointed at the
new file, so nothing keeps writing into ``zmn.log.1``.
"""

from __future__ import annotations

import os
from logging.handlers import RotatingFileHandler

from zmn.core.config import BootConfig

DEFAULT_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5


class RotatingLog(RotatingFileHandler):
    """A size-rotated log file that also carries the process's stdout and stderr."""

    def __init__(self, path: str, max_bytes: int, keep: int, *, own_std: bool) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8")
        self.own_std = own_std
        self._point_std()

    def _point_std(self) -> None:
        if self.own_std and self.stream is not None:
            self.stream.flush()
            for fd in (1, 2):
                os.dup2(self.stream.fileno(), fd)

    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is None:
            self.stream = self._open()
        self._point_std()


def file_handler(config: BootConfig, *, own_std: bool) -> RotatingLog:
    def number(key: str, default: int) -> int:
        try:
            return max(0, int(config.get(key, str(default))))
        except ValueError:
            return default

    config.home.mkdir(parents=True, exist_ok=True)
    return RotatingLog(
        str(config.log_file),
        number("log.rotate.bytes", DEFAULT_BYTES),
        number("log.rotate.keep", DEFAULT_KEEP),
        own_std=own_std,
    )
