"""Test helpers: a real server on 127.0.0.1:0 in a thread, and raw-socket HTTP helpers.

Every socket has a timeout so that a hang fails the test quickly instead of blocking CI.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import sys
import threading
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import main  # noqa: E402

TIMEOUT = 10.0


class FixedIds:
    """An id factory giving ``00000000-0000-4000-8000-000000000001``, ``…002`` and so on."""

    def __init__(self) -> None:
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return "00000000-0000-4000-8000-%012d" % next(self._count)


class RunningServer:
    """Context manager: a ``main.Server`` serving in a background thread.

    ``settings`` override fields of ``main.Settings`` (``port`` is always 0, ``delay``
    defaults to 0). With ``fixed=True`` ids and the clock are deterministic
    (``FixedIds`` and ``created`` = 1700000000), for byte-exact assertions.
    """

    def __init__(self, fixed: bool = False, **settings) -> None:
        settings.setdefault("delay", 0.0)
        settings.setdefault("log_level", "warning")
        self.settings = dataclasses.replace(main.Settings(), port=0, **settings)
        kwargs = {"clock": lambda: 1700000000.0, "new_id": FixedIds()} if fixed else {}
        self.server = main.make_server(self.settings, **kwargs)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> "RunningServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop(drain_seconds=1.0)
        self._thread.join(TIMEOUT)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def request_bytes(
    method: str,
    path: str,
    body: Optional[bytes] = None,
    headers: Optional[Dict[str, str]] = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """Build a raw HTTP request; ``Content-Length`` is added when a body is given."""
    lines = ["%s %s %s" % (method, path, version), "Host: 127.0.0.1"]
    hdrs = dict(headers or {})
    if body is not None and not any(k.lower() == "content-length" for k in hdrs):
        hdrs["Content-Length"] = str(len(body))
    lines.extend("%s: %s" % kv for kv in hdrs.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def read_all(sock: socket.socket) -> bytes:
    """Read until the server closes the connection."""
    parts = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


class Response:
    """A parsed HTTP response: ``status`` (int), ``headers`` (list of (name, value) pairs with
    the server's spelling), ``body`` (bytes, de-chunked), ``raw_body`` (bytes as sent)."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes, raw_body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_body = raw_body

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self):
        return json.loads(self.body)


class ResponseReader:
    """Reads consecutive responses from one keep-alive connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _take_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError("connection closed before %r" % marker)
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed mid-body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self, head_only: bool = False) -> Response:
        head = self._take_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in header_lines]
        resp = Response(status, headers, b"", b"")
        if head_only or status in (204, 304) or 100 <= status < 200:
            return resp  # RFC 9112 6.3: these never have a body
        if (resp.header("Transfer-Encoding") or "").lower() == "chunked":
            raw, body = [], []
            while True:
                size_line = self._take_until(b"\r\n")
                size = int(size_line, 16)
                data = self._take(size + 2)
                raw.append(size_line + b"\r\n" + data)
                if size == 0:
                    break
                body.append(data[:-2])
            resp.body, resp.raw_body = b"".join(body), b"".join(raw)
        elif resp.header("Content-Length") is not None:
            resp.body = resp.raw_body = self._take(int(resp.header("Content-Length")))
        else:
            while self._fill():
                pass
            resp.body = resp.raw_body = self.buf
            self.buf = b""
        return resp


def call(
    port: int,
    method: str,
    path: str,
    body=None,
    headers: Optional[Dict[str, str]] = None,
) -> Response:
    """One request on a new connection; ``body`` may be bytes or a JSON-serialisable value."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode("utf-8")
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
    with connect(port) as sock:
        sock.sendall(request_bytes(method, path, body, headers))
        return ResponseReader(sock).read()


def sse_data(body: bytes) -> List[str]:
    """The ``data`` values of an LF-framed SSE body, in order."""
    events = body.decode("utf-8").split("\n\n")
    assert events[-1] == "", "stream does not end with a blank line"
    out = []
    for event in events[:-1]:
        lines = event.split("\n")
        assert all(line.startswith("data: ") for line in lines), event
        out.append("\n".join(line[6:] for line in lines))
    return out
