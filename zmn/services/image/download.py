"""Image sources for real backup storages: ``file://`` (a path on the node's machine) and
``http(s)://``, read as a stream of chunks, within what :mod:`zmn.services.image.urlpolicy`
allows.

:func:`probe` checks the URL before anything is recorded (a missing file, a 404, a refused
connection are refused naming the field ``url``) and tells the size when it is known. While
the bytes stream to the backup storage, :class:`Meter` counts and hashes them and reads the
virtual size from a qcow2 header (raw images and ISOs: the byte count).

Everything here blocks; callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import http
import http.client
import os
import socket
import ssl
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlparse

from zmn.api.errors import InvalidArgument, OperationFailed
from zmn.services.image.urlpolicy import UrlPolicy, allowed_path, check_source, open_file, opener

CHUNK = 1 << 20
TIMEOUT = 30.0
QCOW2_MAGIC = b"QFI\xfb"


def _bad(url: str, why: str, code: str = "IMAGE.INVALID_URL") -> InvalidArgument:
    return InvalidArgument(f"url: cannot read {url}: {why}", code=code, field="url")


def why(exc: BaseException) -> str:
    """Why a fetch failed, in the node's own words: never what the remote port answered
    (a reason phrase, a status line or a TLS alert text could carry another service's data)."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            return f"HTTP {exc.code} {http.HTTPStatus(exc.code).phrase}"
        except ValueError:
            return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return why(exc.reason)
    if isinstance(exc, urllib.error.URLError):
        return "the URL cannot be fetched"
    if isinstance(exc, http.client.HTTPException):
        return "the server did not answer with HTTP"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "its TLS certificate is not trusted"
    if isinstance(exc, ssl.SSLError):
        return "the TLS handshake failed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionError):
        return "the connection was lost"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return "the URL cannot be fetched"


def probe(url: str, policy: UrlPolicy, *, admin: bool = True) -> int | None:
    """The source's size in bytes (None when the server does not say); raise when unusable."""
    check_source(url, policy, admin=admin)
    if urlparse(url).scheme == "file":
        path = allowed_path(url, policy)
        if not os.path.isfile(path):
            raise _bad(url, "no such file on the management node")
        if not os.access(path, os.R_OK):
            raise _bad(url, "the management node may not read it")
        return os.path.getsize(path)
    req = urllib.request.Request(url, method="HEAD")  # noqa: S310 - http(s) checked above
    try:
        with opener(policy, url).open(req, timeout=TIMEOUT) as resp:
            length = resp.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None
    except urllib.error.HTTPError as err:
        err.close()  # the error holds the response's connection
        if err.code in (405, 501):  # HEAD not allowed: the GET will tell
            return None
        raise _bad(url, why(err)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise _bad(url, why(exc)) from None


def chunks(url: str, policy: UrlPolicy) -> Iterator[bytes]:
    """The source's bytes (the URL was checked by :func:`probe`; connections are again)."""
    if urlparse(url).scheme == "file":
        with open_file(url, policy) as f:
            while block := f.read(CHUNK):
                yield block
        return
    try:
        resp = opener(policy, url).open(url, timeout=TIMEOUT)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()
        raise _bad(url, why(exc)) from None
    with resp:
        expected = resp.headers.get("Content-Length")
        got = 0
        try:
            while block := resp.read(CHUNK):
                got += len(block)
                yield block
        except (http.client.HTTPException, OSError) as exc:
            raise OperationFailed(
                f"url: {url} broke off after {got} bytes: {why(exc)}",
                code="IMAGE.DOWNLOAD_FAILED",
                field="url",
            ) from None
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
