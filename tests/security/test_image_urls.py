"""Image URLs are safe (issue 16, item 6).

``AddImage`` takes http, https, and ``file://`` only under ``image.file.allowedDirs`` (after
resolving ``..`` and symlinks) and only from admins; the node does not fetch from loopback,
link-local or its own addresses unless ``image.url.allowedHosts`` allows the host, checked on
the address each connection reaches (redirects too); errors never repeat what a remote port
answered; an image's URL is shown to admins only.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from zmn.api.errors import InvalidArgument, PermissionDenied, ZmnError
from zmn.services.image import download
from zmn.services.image.urlpolicy import UrlPolicy, check_source

DEFAULT = UrlPolicy()
LOOPBACK_OK = UrlPolicy(hosts=frozenset({"127.0.0.1"}))


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "http://" + self.path.removeprefix("/redirect/"))
            self.end_headers()
        elif self.path == "/teapot":
            self.send_response(404, "secret-reason-phrase")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(b"hello")


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def banner() -> Iterator[int]:
    """Not HTTP: a port that answers with a banner holding a secret."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-secret-banner-1234\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def own_address() -> str:
    """A non-loopback address of this machine (the route to any outside address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by connect() on UDP
        return str(s.getsockname()[0])


def refused(url: str, policy: UrlPolicy = DEFAULT, *, admin: bool = True) -> ZmnError:
    with pytest.raises(ZmnError) as info:
        download.probe(url, policy, admin=admin)
    assert info.value.field == "url"
    return info.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "127.1.2.3"])
def test_loopback_is_refused_by_default(web: int, host: str) -> None:
    err = refused(f"http://{host}:{web}/img.qcow2")
    assert isinstance(err, PermissionDenied) and err.code == "IMAGE.URL_NOT_ALLOWED"
    assert "image.url.allowedHosts" in err.message


def test_link_local_and_own_addresses_are_refused(web: int) -> None:
    err = refused("http://169.254.169.254/latest/meta-data/")  # refused before connecting
    assert err.code == "IMAGE.URL_NOT_ALLOWED" and "link-local" in err.message
    err = refused(f"http://{own_address()}:{web}/img.qcow2")
    assert err.code == "IMAGE.URL_NOT_ALLOWED" and "management node" in err.message


def test_allowed_hosts_let_a_local_server_through(web: int) -> None:
    assert download.probe(f"http://127.0.0.1:{web}/img", LOOPBACK_OK) == 5
    assert b"".join(download.chunks(f"http://127.0.0.1:{web}/img", LOOPBACK_OK)) == b"hello"
    by_net = UrlPolicy(networks=(__import__("ipaddress").ip_network("127.0.0.0/8"),))
    assert download.probe(f"http://127.0.0.1:{web}/img", by_net) == 5


def test_a_redirect_to_a_refused_address_is_refused(web: int) -> None:
    url = f"http://127.0.0.1:{web}/redirect/127.0.0.2:{web}/img"
    err = refused(url, LOOPBACK_OK)
    assert err.code == "IMAGE.URL_NOT_ALLOWED" and "127.0.0.2" in err.message
    with pytest.raises(PermissionDenied):
        b"".join(download.chunks(url, LOOPBACK_OK))
    assert download.probe(f"http://127.0.0.1:{web}/redirect/127.0.0.1:{web}/i", LOOPBACK_OK) == 5


def test_errors_do_not_repeat_what_a_remote_port_answered(web: int, banner: int) -> None:
    err = refused(f"http://127.0.0.1:{banner}/x", LOOPBACK_OK)
    assert "secret" not in err.message and "SSH" not in err.message, err.message
    assert "did not answer with HTTP" in err.message
    err = refused(f"http://127.0.0.1:{web}/teapot", LOOPBACK_OK)
    assert "404 Not Found" in err.message and "secret" not in err.message, err.message
    with pytest.raises(ZmnError) as info:
        b"".join(download.chunks(f"http://127.0.0.1:{banner}/x", LOOPBACK_OK))
    assert "secret" not in info.value.message


def test_schemes_other_than_http_https_file_are_refused() -> None:
    for url in ("ftp://example.com/x.qcow2", "gopher://example.com/", "data:,x", "/etc/shadow"):
        with pytest.raises(InvalidArgument) as info:
            check_source(url, DEFAULT, admin=True)
        assert (info.value.code, info.value.field) == ("IMAGE.INVALID_URL", "url")


def test_file_urls_only_under_allowed_dirs_and_only_for_admins(tmp_path: Path) -> None:
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "ok.qcow2").write_bytes(b"QFI\xfb" + bytes(28))
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", allowed / "link.qcow2")
    policy = UrlPolicy(file_dirs=(os.path.realpath(allowed),))
    assert download.probe(f"file://{allowed}/ok.qcow2", policy) == 32
    assert len(b"".join(download.chunks(f"file://{allowed}/ok.qcow2", policy))) == 32
    for url in (
        "file:///etc/shadow",
        f"file://{allowed}/../secret",
        f"file://{allowed}/%2E%2E/secret",
        f"file://{allowed}/link.qcow2",
        f"file://{allowed}",  # the directory itself is no image either
    ):
        with pytest.raises(ZmnError) as info:
            download.probe(url, policy)
        assert info.value.field == "url"
        assert info.value.code in ("IMAGE.URL_NOT_ALLOWED", "IMAGE.INVALID_URL"), url
    err = refused("file:///etc/shadow")  # nothing configured: no file:// at all
    assert err.code == "IMAGE.URL_NOT_ALLOWED" and "image.file.allowedDirs" in err.message
    err = refused(f"file://{allowed}/ok.qcow2", policy, admin=False)
    assert isinstance(err, PermissionDenied) and "admins only" in err.message


async def test_add_image_refuses_etc_shadow_and_hides_urls_from_tenants(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        await api("AddSimulatorBackupStorage", name="bs", url="/sim/bs", totalCapacity=2**40)
        for url in ("file:///etc/shadow", "file:///etc/../etc/shadow", "ftp://h/x.qcow2"):
            with pytest.raises(ZmnError) as info:
                await api("AddImage", name="x", url=url, format="qcow2", backupStorageUuids=["bs"])
            assert info.value.field == "url"
            assert info.value.code in ("IMAGE.URL_NOT_ALLOWED", "IMAGE.INVALID_URL")
        assert (await api("QueryImage", count=True))["total"] == 0

        secret_url = "http://user:pw@images.internal/img.qcow2"
        await api("AddImage", name="img", url=secret_url, format="qcow2", backupStorageUuids=["bs"])
        assert (await api("QueryImage"))["inventories"][0]["url"] == secret_url
        await api("CreateAccount", name="t", password="t-password")
        login = await api("LogInByAccount", accountName="t", password="t-password")
        tenant = login["inventory"]["uuid"]
        rows, _ = await node.execute("QueryImage", {}, session=tenant)
        assert rows["inventories"][0]["name"] == "img" and "url" not in rows["inventories"][0]
        for args in (
            {"conditions": ["url~=%internal%"]},
            {"sortBy": "url"},
            {"fields": ["name", "url"]},
            {"groupBy": "url"},
        ):
            with pytest.raises(PermissionDenied) as denied:
                await node.execute("QueryImage", args, session=tenant)
            assert denied.value.code == "IDENTITY.ADMIN_ONLY"
        assert "internal" not in str(await node.execute("QueryImage", {}, session=tenant))


async def test_the_conf_keys_reach_the_node(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    conf = {"image.file.allowedDirs": str(images), "image.url.allowedHosts": "127.0.0.1"}
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        policy = UrlPolicy.from_config(node.config)
        assert policy.file_dirs == (os.path.realpath(images),)
        assert policy.hosts == frozenset({"127.0.0.1"}) or policy.networks
        api = Api(node)
        await api("AddSimulatorBackupStorage", name="bs", url="/sim/bs", totalCapacity=2**40)
        ok = await api("AddImage", name="ok", url=f"file://{images}/a.qcow2", format="qcow2",
                       backupStorageUuids=["bs"])  # fmt: skip
        assert ok["inventory"]["status"] == "Ready"
        with pytest.raises(PermissionDenied):
            await api("AddImage", name="no", url="file:///etc/shadow", format="qcow2",
                      backupStorageUuids=["bs"])  # fmt: skip
