"""A model of a power loss for files written by the code under test.

A process crash keeps every byte the kernel took; a power loss keeps only what was synced.
:class:`PowerLoss` wraps ``os.fsync``/``os.fdatasync`` to note, per file (device and inode,
so a file synced under a temporary name and renamed counts), its size at its last sync;
:meth:`PowerLoss.cut` then truncates a file to that size, which is what the disk holds after
the machine lost power (appends that were never synced are gone).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


class PowerLoss:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: dict[tuple[int, int], int] = {}
        real_fsync, real_fdatasync = os.fsync, os.fdatasync

        def fsync(fd: int) -> None:
            real_fsync(fd)
            self._note(fd)

        def fdatasync(fd: int) -> None:
            real_fdatasync(fd)
            self._note(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def _note(self, fd: int) -> None:
        st = os.fstat(fd)
        self.synced[(st.st_dev, st.st_ino)] = st.st_size

    def cut(self, path: Path) -> int:
        """Truncate ``path`` to what its last sync made durable; returns the bytes lost."""
        st = path.stat()
        keep = self.synced.get((st.st_dev, st.st_ino), 0)
        os.truncate(path, keep)
        return st.st_size - keep
