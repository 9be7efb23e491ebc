"""A Redshift stand-in for the tests: stock PostgreSQL behind a small wire-protocol proxy, so that the real
``redshift_connector`` can talk to it. Tests only -- nothing here is used in production.

What fails without it (redshift_connector 2.x against PostgreSQL 15 from Debian), and what the proxy does:

* The startup message carries Redshift-only parameters (``client_protocol_version``, ``driver_version``,
  ``os_version``, ``driver_discovery_version``, and for IdP plugins ``plugin_name``, ``idp_type``...);
  PostgreSQL rejects the connection with ``FATAL 42704 unrecognized configuration parameter
  "client_protocol_version"``. The proxy forwards only the parameters PostgreSQL knows (``user``,
  ``database``, ``application_name``, ``options`` and a few GUCs). Without ``client_protocol_version`` echoed
  back as ``server_protocol_version``, the driver falls back to its ``BASE_SERVER`` protocol (plain
  PostgreSQL row descriptions), which is what PostgreSQL speaks.
* The driver parses the ``server_version`` ParameterStatus with ``packaging.version.parse``, which raises
  ``InvalidVersion`` on Debian's ``15.20 (Debian 15.20-0+deb12u1)``. The proxy rewrites that value to its
  leading ``major.minor`` (``15.20``); every other message goes through byte for byte.
* The driver's default ``ssl=True`` gets "Server refuses SSL" from a local server: connect with ``ssl=False``
  (the proxy also answers an SSLRequest with ``N``).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
import redshift_connector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_PROTOCOL_3 = 196608
#: Startup parameters forwarded to PostgreSQL; the driver's Redshift-only ones are dropped.
_KEPT_PARAMETERS = frozenset({"user", "database", "application_name", "options", "client_encoding", "DateStyle",
                              "TimeZone", "replication"})


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks += chunk
    return bytes(chunks)


def filter_startup(body: bytes) -> bytes:
    """A StartupMessage body (protocol version + name/value pairs) with only the parameters PostgreSQL knows."""
    parts = body[4:].split(b"\0")
    pairs = [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2) if parts[i]]
    kept = b"".join(k + b"\0" + v + b"\0" for k, v in pairs if k.decode() in _KEPT_PARAMETERS)
    return body[:4] + kept + b"\0"


def rewrite_parameter_status(body: bytes) -> bytes:
    """A ParameterStatus body, with ``server_version`` cut to a version ``packaging`` can parse."""
    name, _, rest = body.partition(b"\0")
    if name != b"server_version":
        return body
    value = rest.rstrip(b"\0")
    match = re.match(rb"\d+(\.\d+)*", value)
    return name + b"\0" + (match.group(0) if match else b"15.0") + b"\0"


@dataclass
class RedshiftStandin:
    """A TCP proxy on 127.0.0.1:<free port> in front of a PostgreSQL server (see the module docstring)."""

    upstream_host: str
    upstream_port: int
    host: str = "127.0.0.1"
    port: int = 0
    _listener: socket.socket | None = None
    _sockets: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def in_front_of(cls, admin_url: str) -> RedshiftStandin:
        """A stand-in (not started) for the server of ``admin_url`` (host and port only)."""
        params = conninfo_to_dict(admin_url)
        host = str(params.get("host") or "127.0.0.1")
        if host.startswith("/"):
            raise ValueError("the stand-in proxies TCP servers only, not a Unix socket directory")
        return cls(host, int(params.get("port") or 5432))

    def start(self) -> RedshiftStandin:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="redshift-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (a dead server, as the driver sees it)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the blocked accept(); close alone leaves the port open
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.update(socks)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            while True:  # the first message has no type byte: SSLRequest, GSSENCRequest, CancelRequest, startup
                length, code = struct.unpack("!ii", _recv_exact(client, 8))
                body = struct.pack("!i", code) + _recv_exact(client, length - 8)
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    client.sendall(b"N")
                    continue
                break
            if code == _PROTOCOL_3:
                body = filter_startup(body)
            server = socket.create_connection((self.upstream_host, self.upstream_port))
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(server)
            server.sendall(struct.pack("!i", len(body) + 4) + body)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump_raw, args=(client, server), daemon=True).start()
        self._pump_messages(server, client)

    def _pump_raw(self, source: socket.socket, sink: socket.socket) -> None:
        """Client to server, unchanged."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, sink)

    def _pump_messages(self, source: socket.socket, sink: socket.socket) -> None:
        """Server to client, rewriting ``server_version``: whatever arrived is parsed into whole messages and
        sent on in one write (a write per message would stall on Nagle + delayed ACK, 40 ms a round trip)."""
        pending = bytearray()
        try:
            while data := source.recv(65536):
                pending += data
                out, offset = bytearray(), 0
                while len(pending) - offset >= 5:
                    end = offset + 1 + struct.unpack_from("!i", pending, offset + 1)[0]
                    if end > len(pending):
                        break
                    if pending[offset:offset + 1] == b"S":
                        body = rewrite_parameter_status(bytes(pending[offset + 5:end]))
                        out += b"S" + struct.pack("!i", len(body) + 4) + body
                    else:
                        out += pending[offset:end]
                    offset = end
                del pending[:offset]
                if out:
                    sink.sendall(out)
        except OSError:
            pass
        finally:
            self._close(source, sink)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            self._sockets.difference_update(socks)


def standin_connect(standin: RedshiftStandin, database: str, admin_url: str) -> redshift_connector.Connection:
    """A real redshift_connector connection through the stand-in as ``admin_url``'s user (``ssl=False``: a
    local server)."""
    params = conninfo_to_dict(admin_url)
    return redshift_connector.connect(host=standin.host, port=standin.port, database=database,
                                      user=str(params.get("user") or "postgres"),
                                      password=str(params.get("password") or ""), ssl=False, timeout=10)


@pytest.fixture(scope="session")
def redshift_standin(admin_url: str) -> Iterator[RedshiftStandin]:
    """The stand-in proxy in front of the tests' PostgreSQL server, for the whole session."""
    standin = RedshiftStandin.in_front_of(admin_url).start()
    yield standin
    standin.stop()


@pytest.fixture
def redshift_database(admin_url: str, redshift_standin: RedshiftStandin) -> Iterator[
        Callable[[], redshift_connector.Connection]]:
    """A throw-away database ``wd_test_rs_<hex>``; yields a ``connect`` callable (redshift_connector through
    the stand-in)."""
    name = f"wd_test_rs_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield lambda: standin_connect(redshift_standin, name, admin_url)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
