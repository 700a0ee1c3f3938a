"""TLS on the TCP endpoint: verified clients get in, plain TCP gets nothing, and the set-up in
docs/security.md works as written (openssl commands, zmn.conf keys, zcli with ZMN_TLS_CA)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import re
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import need
from tests.support.inproc import running_node
from zmn.api.errors import Unavailable
from zmn.api.wire import encode
from zmn.client import AsyncClient, Client
from zmn.core.node import Node
from zmn.services.identity.bootstrap import ensure_admin

pytestmark = pytest.mark.usefixtures("cheap_hashes")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOC = ROOT / "docs" / "security.md"
ADMIN_PASSWORD = "tls-admin-password"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(where: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost: (ca.crt, server.crt, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    where.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = where / "ca.crt", where / "server.crt", where / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


@pytest_asyncio.fixture
async def tls_node(tmp_path: Path) -> AsyncIterator[tuple[Node, str, Path]]:
    ca, cert, key = make_pki(tmp_path / "pki")
    conf = {"api.tcp.listen": "127.0.0.1:0", "api.tls.cert": str(cert), "api.tls.key": str(key)}
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        ensure_admin(node.db, ADMIN_PASSWORD)
        endpoint = next(e for e in node.endpoints if not e.startswith("unix:"))
        yield node, endpoint, ca


async def test_a_client_with_the_ca_logs_in_and_works(
    tls_node: tuple[Node, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _node, endpoint, ca = tls_node
    assert endpoint.startswith("tls://127.0.0.1:")
    monkeypatch.setenv("ZMN_TLS_CA", str(ca))
    async with AsyncClient(endpoint) as c:
        assert c.hello["auth"] == "session"
        reply = await c.call("LogInByAccount", {"accountName": "admin", "password": ADMIN_PASSWORD})
    async with AsyncClient(endpoint, reply["inventory"]["uuid"]) as c:
        zone = (await c.call("CreateZone", {"name": "z1"}))["inventory"]
        assert (await c.call("QueryZone"))["inventories"][0]["uuid"] == zone["uuid"]
        rows = await c.call("QueryAuditLog", {"conditions": ["apiName=CreateZone"]})
        assert rows["inventories"][0]["peer"].startswith("tls:127.0.0.1:")
    # the blocking client too (zcli uses it), by name this time; in a thread, off the loop
    port = int(endpoint.rsplit(":", 1)[1])

    def ping() -> object:
        with Client(f"tls://localhost:{port}", timeout=10) as sync:
            return sync.call("Ping")["pong"]

    assert await asyncio.to_thread(ping) is True


async def test_a_client_without_the_ca_is_refused(
    tls_node: tuple[Node, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _node, endpoint, _ca = tls_node
    monkeypatch.delenv("ZMN_TLS_CA", raising=False)
    monkeypatch.delenv("ZMN_TLS_INSECURE", raising=False)
    with pytest.raises(Unavailable) as err:
        await AsyncClient(endpoint).connect()
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


async def test_another_ca_is_refused(
    tls_node: tuple[Node, str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _node, endpoint, _ca = tls_node
    other_ca, _cert, _key = make_pki(tmp_path / "other")
    monkeypatch.setenv("ZMN_TLS_CA", str(other_ca))
    with pytest.raises(Unavailable):
        await AsyncClient(endpoint).connect()


def _plain_exchange(port: int) -> bytes:
    """Connect without TLS, send a request frame in the clear, return all that comes back."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(encode({"type": "request", "id": 1, "api": "Ping", "args": {}}))
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


async def test_plain_tcp_gets_nothing_from_the_tls_port(
    tls_node: tuple[Node, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _node, endpoint, ca = tls_node
    port = int(endpoint.rsplit(":", 1)[1])
    received = await asyncio.to_thread(_plain_exchange, port)
    assert b"hello" not in received and b"pong" not in received
    assert received == b"" or received[0] == 0x15  # nothing, or a TLS alert record
    monkeypatch.setenv("ZMN_TLS_CA", str(ca))
    async with AsyncClient(endpoint) as c:  # and the node keeps serving TLS clients
        assert (await c.call("Ping"))["pong"] is True


# --------------------------------------------------------------------------- the documentation


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def doc_block(starting: str) -> str:
    found = [b for b in fenced_blocks(DOC.read_text()) if b.startswith(starting)]
    assert len(found) == 1, f"docs/security.md: one block starting {starting!r}"
    return found[0]


async def bash(script: str, env: dict[str, str], cwd: Path, stdin: str = "") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-ec", script, env=env, cwd=cwd,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_documented_set_up_works(tmp_path: Path) -> None:
    need(shutil.which("openssl") is not None, "openssl is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    pki = tmp_path / "pki"
    pki.mkdir()
    rc, out = await bash(doc_block("# Make a private CA"), env, pki)
    assert rc == 0, out
    assert "server.crt: OK" in out
    assert oct((pki / "server.key").stat().st_mode & 0o777) == "0o600"
    conf_block = doc_block("api.tcp.listen=")
    keys = dict(line.split("=", 1) for line in conf_block.splitlines() if line)
    assert set(keys) == {"api.tcp.listen", "api.tls.cert", "api.tls.key"}
    conf = {
        "api.tcp.listen": "127.0.0.1:0",  # the doc's port may be taken here
        "api.tls.cert": str(pki / Path(keys["api.tls.cert"]).name),
        "api.tls.key": str(pki / Path(keys["api.tls.key"]).name),
    }
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        ensure_admin(node.db, ADMIN_PASSWORD)
        endpoint = next(e for e in node.endpoints if e.startswith("tls://"))
        client = doc_block("export ZMN_ENDPOINT=").replace("tls://127.0.0.1:8443", endpoint)
        more = [
            line
            for block in fenced_blocks(DOC.read_text())
            for line in block.splitlines()
            if line.startswith("zcli ") and line not in client
        ]
        assert len(more) >= 5  # the global-config and audit examples
        rc, out = await bash(client + "\n".join(more) + "\n", env, pki, ADMIN_PASSWORD + "\n")
        assert rc == 0, out
        assert "logged in as admin" in out and "Traceback" not in out
        async with AsyncClient(f"unix:{node.config.unix_path}") as admin:
            audit = await admin.call("QueryAuditLog", {"conditions": ["apiName=LogInByAccount"]})
        assert [r["peer"][:4] for r in audit["inventories"]] == ["tls:"]
