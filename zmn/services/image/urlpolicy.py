"""Which image URLs the management node fetches (``AddImage``).

* ``http://`` and ``https://``: any host except the node itself. An address that is loopback,
  link-local (169.254.0.0/16 holds cloud metadata services), unspecified, multicast or one of
  the node's own addresses is refused unless ``image.url.allowedHosts`` in ``zmn.conf`` lists
  the host name, the address or a network containing it (comma-separated, e.g.
  ``127.0.0.1,images.lab,10.0.0.0/8``). The check runs on the address each connection
  actually reaches, redirects included, so a DNS name that changes its answer (rebinding) or a
  redirect to ``http://127.0.0.1/`` is refused as well. Proxies from the environment are not
  used: the node would only see the proxy's address.
* ``file://``: for admins only, and only under a directory listed in ``image.file.allowedDirs``
  (comma-separated; empty by default, so ``file://`` is refused). The path is resolved
  (``..`` and symlinks) before it is compared, and the opened file is checked again.
* Anything else (``ftp://``, ``gopher://``...) is refused.

Refusals are :class:`PermissionDenied` with code ``IMAGE.URL_NOT_ALLOWED`` naming ``url`` and
the ``zmn.conf`` key that would allow it.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from zmn.api.errors import InvalidArgument, PermissionDenied

SCHEMES = ("http", "https", "file")
HOSTS_KEY = "image.url.allowedHosts"
DIRS_KEY = "image.file.allowedDirs"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigLike(Protocol):
    def get(self, key: str, default: str = "") -> str: ...


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class UrlPolicy:
    """What ``zmn.conf`` allows beyond the safe default."""

    file_dirs: tuple[str, ...] = ()
    hosts: frozenset[str] = frozenset()
    networks: tuple[IpNetwork, ...] = field(default=())

    @classmethod
    def from_config(cls, config: ConfigLike) -> UrlPolicy:
        dirs = tuple(os.path.realpath(d) for d in _split(config.get(DIRS_KEY)))
        hosts, nets = set(), []
        for entry in _split(config.get(HOSTS_KEY)):
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(dirs, frozenset(hosts), tuple(nets))

    def allows_host(self, host: str, ip: IpAddress) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(ip in n for n in self.networks)


def refused(url: str, why: str, key: str) -> PermissionDenied:
    return PermissionDenied(
        f"url: the management node does not fetch {url}: {why} (an operator can allow it with"
        f" {key} in zmn.conf)",
        code="IMAGE.URL_NOT_ALLOWED",
        field="url",
    )


def check_source(url: str, policy: UrlPolicy, *, admin: bool) -> None:
    """Refuse a URL by its form alone: scheme, and for ``file://`` who asks and where it points."""
    parsed = urlparse(url)
    if parsed.scheme not in SCHEMES or not (parsed.netloc or parsed.path):
        raise InvalidArgument(
            f"url: {url!r} is not an http://, https:// or file:// URL",
            code="IMAGE.INVALID_URL",
            field="url",
        )
    if parsed.scheme == "file":
        if not admin:
            raise PermissionDenied(
                "url: file:// URLs read the management node's disk: admins only",
                code="IMAGE.URL_NOT_ALLOWED",
                field="url",
            )
        allowed_path(url, policy)
    elif not parsed.hostname:
        raise InvalidArgument(f"url: {url!r} names no host", code="IMAGE.INVALID_URL", field="url")


def allowed_path(url: str, policy: UrlPolicy) -> str:
    """The resolved path of a ``file://`` URL, if it lies under an allowed directory."""
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise InvalidArgument(
            f"url: {url}: a file:// URL names a path on the management node (file:///path)",
            code="IMAGE.INVALID_URL",
            field="url",
        )
    path = unquote(parsed.path)
    if not os.path.isabs(path) or "\x00" in path:
        raise InvalidArgument(
            f"url: {url}: give an absolute path", code="IMAGE.INVALID_URL", field="url"
        )
    real = os.path.realpath(path)
    if not inside(real, policy.file_dirs):
        where = ", ".join(policy.file_dirs) or "none is configured"
        raise refused(url, f"the file is not under an allowed directory ({where})", DIRS_KEY)
    return real


def inside(path: str, dirs: Iterable[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip(os.sep) + os.sep) for d in dirs)


def open_file(url: str, policy: UrlPolicy) -> Any:
    """Open a ``file://`` source, checking the opened file (not just the name) is allowed."""
    real = allowed_path(url, policy)
    f = open(real, "rb")
    opened = os.path.realpath(f"/proc/self/fd/{f.fileno()}")
    if os.path.exists("/proc/self/fd") and not inside(opened, policy.file_dirs):
        f.close()  # a component was swapped for a symlink after the check
        raise refused(url, "the file moved out of the allowed directories", DIRS_KEY)
    return f


def local_kind(ip: IpAddress) -> str | None:
    """Why connecting to ``ip`` reaches the node itself or its link, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(ip), 0))  # binding works only to an address of this machine
        except OSError:
            return None
    return "an address of the management node"


def check_peer(url: str, host: str, peer: str, policy: UrlPolicy) -> None:
    ip = ipaddress.ip_address(peer.split("%", 1)[0])
    if policy.allows_host(host, ip):
        return
    kind = local_kind(ip)
    if kind is not None:
        raise refused(url, f"{host} is {kind} ({ip})", HOSTS_KEY)


class _GuardedHTTP(http.client.HTTPConnection):
    """Checks the address a connection reached before anything is sent on it."""

    def __init__(self, *args: Any, policy: UrlPolicy, url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._policy, self._url = policy, url

    def connect(self) -> None:
        try:  # an address given as such is refused before any packet is sent
            check_peer(self._url, self.host, str(ipaddress.ip_address(self.host)), self._policy)
        except ValueError:
            pass  # a host name: checked on the address it resolved to, once connected
        super().connect()
        try:
            check_peer(self._url, self.host, self.sock.getpeername()[0], self._policy)
        except BaseException:
            self.close()
            raise


class _GuardedHTTPS(http.client.HTTPSConnection, _GuardedHTTP):
    """TLS on top of the checked connection (``HTTPSConnection.connect`` calls ours first)."""


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: UrlPolicy, url: str) -> None:
        super().__init__()
        self._conn = partial(_GuardedHTTP, policy=policy, url=url)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._conn, req)  # type: ignore[arg-type]


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: UrlPolicy, url: str) -> None:
        super().__init__()
        self._conn = partial(_GuardedHTTPS, policy=policy, url=url)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._conn, req)  # type: ignore[arg-type]


def opener(policy: UrlPolicy, url: str) -> urllib.request.OpenerDirector:
    """http(s) only, no proxies, every connection (redirects too) checked."""
    out = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler({}),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
        _HTTPHandler(policy, url),
        _HTTPSHandler(policy, url),
    ):
        out.add_handler(handler)
    return out
