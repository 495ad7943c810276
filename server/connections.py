"""The HTTP server, hardened for a hostile network (issue 18).

- Timeouts: a new connection has HEADER_TIMEOUT seconds to send its first request's
  headers, a kept-alive one IDLE_TIMEOUT for its next request, and a body BODY_TIMEOUT
  to arrive in full. An SSE poke stream is a response, so none of these apply to it.
- A cap on the connections one client address holds (IPv6: per /64). Trusted proxies
  are exempt: they carry many clients.
- Accepting backs off when the process is out of file descriptors (EMFILE) instead of
  spinning on the readable socket, and says so at most once a second.
- X-Forwarded-For / X-Real-Ip / X-Forwarded-Proto are believed only from TRUSTED_PROXIES.
- Bodies of handlers that do not stream them (admin forms, pages) are capped small;
  the API handlers set their own cap (server/limits.py).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from copy import copy
from typing import TYPE_CHECKING, Any

import tornado.httpserver
from tornado import httputil, netutil
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

from server import metrics

if TYPE_CHECKING:  # config imports auth, which imports limits, which imports this module
    from server.config import Settings

log = logging.getLogger(__name__)

# Bodies of handlers that do not stream them: admin forms and JSON, nothing big.
SMALL_BODY_BYTES = 64 * 1024
# Out of file descriptors (or kernel memory): accepting again at once would fail again.
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_PAUSE_SECONDS = 0.1
_REFUSAL = b'{"error": "TooManyConnections", "message": "this address holds too many connections"}\n'
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
)


def address_key(ip: str) -> str:
    """Whom a per-address limit counts: the IPv4 address, or the IPv6 /64 (one host
    usually holds a whole /64, so single IPv6 addresses would be free to rotate)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


class TrustedProxies:
    """TRUSTED_PROXIES: addresses and networks whose forwarding headers are believed."""

    def __init__(self, spec: str) -> None:
        parts = [part.strip() for part in spec.split(",") if part.strip()]
        self.networks = [ipaddress.ip_network(part, strict=False) for part in parts]

    def trusts(self, ip: str) -> bool:
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def client_ip(self, peer: str, headers: httputil.HTTPHeaders) -> str:
        """The client behind a trusted peer. X-Forwarded-For is read from the right, past
        every trusted hop (a client can prepend anything, never append); X-Real-Ip only
        when there is no X-Forwarded-For (a proxy that does not overwrite it passes the
        client's own through)."""
        forwarded = [part.strip() for part in ",".join(headers.get_list("X-Forwarded-For")).split(",")]
        forwarded = [ip for ip in forwarded if netutil.is_valid_ip(ip)]
        for ip in reversed(forwarded):
            if not self.trusts(ip):
                return ip
        if forwarded:
            return forwarded[0]
        real = headers.get("X-Real-Ip", "").strip()
        return real if netutil.is_valid_ip(real) else peer


class Server(tornado.httpserver.HTTPServer):
    """HTTPServer with the guards above. Build it with Server(app, settings)."""

    def initialize(self, request_callback: Any, settings: Settings) -> None:  # type: ignore[override]
        super().initialize(
            request_callback,
            xheaders=False,  # forwarding headers: only from trusted proxies, see start_request
            max_body_size=SMALL_BODY_BYTES,
            idle_connection_timeout=_seconds(settings.header_timeout),  # the first request's headers
            body_timeout=_seconds(settings.body_timeout),
        )
        # Later requests on a kept-alive connection: up to IDLE_TIMEOUT for their headers.
        self._later = copy(self.conn_params)
        self._later.header_timeout = _seconds(settings.idle_timeout)
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.per_address_cap = settings.max_connections_per_address
        self.per_address: Counter[str] = Counter()
        self._last_warning = 0.0
        self._paused_accepts = 0

    # ---- connections

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        peer = address[0] if isinstance(address, tuple) else ""
        if self.per_address_cap and not self.proxies.trusts(peer):
            key = address_key(peer)
            if self.per_address[key] >= self.per_address_cap:
                metrics.request_refused("TooManyConnections")
                stream.write(TOO_MANY_CONNECTIONS).add_done_callback(lambda done: _close(stream, done))
                return
            self.per_address[key] += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: Any) -> None:
        super().on_close(server_conn)
        address = server_conn.context.address
        peer = address[0] if isinstance(address, tuple) else ""
        if self.per_address_cap and not self.proxies.trusts(peer):
            key = address_key(peer)
            self.per_address[key] -= 1
            if self.per_address[key] <= 0:
                del self.per_address[key]

    def start_request(self, server_conn: Any, request_conn: Any) -> httputil.HTTPMessageDelegate:
        if server_conn.params is not self._later:  # the first request: from now on, idle timeout
            server_conn.params = self._later
        delegate = super().start_request(server_conn, request_conn)
        context = request_conn.context
        peer = context.address[0] if isinstance(context.address, tuple) else ""
        if self.proxies.trusts(peer):
            return Forwarded(delegate, context, self.proxies, peer)
        return delegate

    # ---- accepting

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_handler(sock)

    def _accept_handler(self, sock: socket.socket) -> Callable[[], None]:
        """tornado.netutil.add_accept_handler, but out of file descriptors it stops
        listening for ACCEPT_PAUSE_SECONDS: the socket stays readable, so retrying at
        once spun the loop and logged 262,038 tracebacks in 80 s (issue 18)."""
        loop = IOLoop.current()
        state: dict[str, Any] = {"removed": False, "timer": None}

        def accept(fd: Any, events: int) -> None:
            for _ in range(128):  # then let other callbacks run
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as e:
                    if e.errno not in _OUT_OF_RESOURCES:
                        raise
                    self._out_of_resources(e)
                    loop.remove_handler(sock)
                    state["timer"] = loop.call_later(ACCEPT_PAUSE_SECONDS, resume)
                    return
                self._handle_connection(connection, address)

        def resume() -> None:
            state["timer"] = None
            if not state["removed"]:
                loop.add_handler(sock, accept, IOLoop.READ)

        def remove() -> None:
            state["removed"] = True
            if state["timer"] is not None:
                loop.remove_timeout(state["timer"])
            else:
                loop.remove_handler(sock)

        loop.add_handler(sock, accept, IOLoop.READ)
        return remove

    def _out_of_resources(self, error: OSError) -> None:
        metrics.connection_refused("out_of_files")
        self._paused_accepts += 1
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            log.warning(
                "cannot accept connections: %s; pausing accepts %gs at a time (%d pauses since last said)",
                error.strerror,
                ACCEPT_PAUSE_SECONDS,
                self._paused_accepts,
            )
            self._last_warning = now
            self._paused_accepts = 0


class Forwarded(httputil.HTTPMessageDelegate):
    """One request from a trusted proxy: the client address and scheme from its headers,
    for this request only (the next one on the connection may be another client's)."""

    __slots__ = ("delegate", "context", "proxies", "peer", "protocol")

    def __init__(
        self, delegate: httputil.HTTPMessageDelegate, context: Any, proxies: TrustedProxies, peer: str
    ) -> None:
        self.delegate, self.context, self.proxies, self.peer = delegate, context, proxies, peer
        self.protocol = context.protocol

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self.context.remote_ip = self.proxies.client_ip(self.peer, headers)
        scheme = (headers.get("X-Forwarded-Proto") or headers.get("X-Scheme") or "").strip().lower()
        if scheme in ("http", "https"):
            self.context.protocol = scheme
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self._restore()
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self._restore()
        self.delegate.on_connection_close()

    def _restore(self) -> None:
        self.context.remote_ip, self.context.protocol = self.peer, self.protocol


def _close(stream: IOStream, written: Any) -> None:
    written.exception()  # a client gone before its refusal: nothing to report
    stream.close()


def _seconds(value: float) -> float | None:
    return value if value > 0 else None
