"""A small HTTP/1.1 keep-alive client on asyncio streams, for scripts/bench.py.

Its per-request cost is a few tens of microseconds, so the benchmark measures the
server rather than the client. Plain http only; one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from server.testing import mutation, pull_body, push_body


def split_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected http://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port or 80


def is_loopback(host: str) -> bool:
    """True when every address the host name resolves to is on this machine."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class Connection:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send one request and read the whole answer. Errors close the connection."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(method, path, body, headers or {})
        except BaseException:
            self.close()
            raise

    async def post_json(self, path: str, value: Any) -> tuple[int, Any]:
        status, raw = await self.request("POST", path, json.dumps(value).encode())
        return status, json.loads(raw) if raw else None

    async def _exchange(
        self, method: str, path: str, body: bytes, extra: dict[str, str]
    ) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self._reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            + "\r\n"
        )
        self._writer.write(head.encode("latin-1") + body)
        raw_head = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = await self._read_chunked()
        else:
            data = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def push_bytes(group: str, client: str, mutation_id: int) -> bytes:
    """One push of one increment, encoded (server.testing.push_body)."""
    return json.dumps(push_body(group, [mutation(mutation_id, client)], profile="bench")).encode()


def pull_bytes(group: str, cookie: Any) -> bytes:
    return json.dumps(pull_body(group, cookie, profile="bench")).encode()
