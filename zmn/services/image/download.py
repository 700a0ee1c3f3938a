"""Image sources for real backup storages: ``file://`` (a path on the node's machine) and
``http(s)://``, read as a stream of chunks.

:func:`probe` checks the URL before anything is recorded (a missing file, a 404, a refused
connection are refused naming the field ``url``) and tells the size when it is known. While
the bytes stream to the backup storage, :class:`Meter` counts and hashes them and reads the
virtual size from a qcow2 header (raw images and ISOs: the byte count).

Everything here blocks; callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

from zmn.api.errors import InvalidArgument, OperationFailed

CHUNK = 1 << 20
TIMEOUT = 30.0
SCHEMES = ("file", "http", "https")
QCOW2_MAGIC = b"QFI\xfb"


def _bad(url: str, why: str, code: str = "IMAGE.INVALID_URL") -> InvalidArgument:
    return InvalidArgument(f"url: cannot read {url}: {why}", code=code, field="url")


def local_path(url: str) -> str:
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise _bad(url, "a file:// URL names a path on the management node (file:///path)")
    return unquote(parsed.path)


def probe(url: str) -> int | None:
    """The source's size in bytes (None when the server does not say); raise when unusable."""
    scheme = urlparse(url).scheme
    if scheme not in SCHEMES:
        raise _bad(url, f"this backup storage takes {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "file":
        path = local_path(url)
        if not os.path.isfile(path):
            raise _bad(url, "no such file on the management node")
        if not os.access(path, os.R_OK):
            raise _bad(url, "the management node may not read it")
        return os.path.getsize(path)
    req = urllib.request.Request(url, method="HEAD")  # noqa: S310 - http(s) checked above
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
            length = resp.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None
    except urllib.error.HTTPError as err:
        if err.code in (405, 501):  # HEAD not allowed: the GET will tell
            return None
        raise _bad(url, f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _bad(url, str(reason)) from None


def chunks(url: str) -> Iterator[bytes]:
    """The source's bytes."""
    if urlparse(url).scheme == "file":
        with open(local_path(url), "rb") as f:
            while block := f.read(CHUNK):
                yield block
        return
    try:
        resp = urllib.request.urlopen(url, timeout=TIMEOUT)  # noqa: S310 - scheme checked
    except urllib.error.HTTPError as err:
        raise _bad(url, f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _bad(url, str(getattr(exc, "reason", exc))) from None
    with resp:
        expected = resp.headers.get("Content-Length")
        got = 0
        while block := resp.read(CHUNK):
            got += len(block)
            yield block
        if expected and expected.isdigit() and got != int(expected):
            raise OperationFailed(
                f"url: {url} ended after {got} of {expected} bytes",
                code="IMAGE.DOWNLOAD_FAILED",
                field="url",
            )


class Meter:
    """Counts, hashes and sniffs the bytes going by."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._head = b""

    def __iter__(self) -> Iterator[bytes]:
        for block in self._source:
            if len(self._head) < 32:
                self._head += block[: 32 - len(self._head)]
            self.size += len(block)
            self.sha256.update(block)
            yield block

    def virtual_size(self, fmt: str) -> int:
        if fmt == "qcow2":
            if self._head[:4] != QCOW2_MAGIC or len(self._head) < 32:
                raise InvalidArgument(
                    "format: the image is not qcow2 (no qcow2 header)",
                    code="IMAGE.FORMAT_MISMATCH",
                    field="format",
                )
            return int(struct.unpack(">Q", self._head[24:32])[0])
        return self.size
