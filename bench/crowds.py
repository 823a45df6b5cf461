#!/usr/bin/env python3
"""Answer time of a normal request behind crowds of slow, silent or half-sent connections.

Starts the server (``python3 main.py --port 0`` from ``--root``, this checkout by default), then
for each crowd: opens it, waits ``--settle`` seconds, and times two normal requests on fresh
connections: ``GET /health`` (until the whole answer is in) and a streamed ``POST /v1/pipes/run``
(until the first body byte). Then it closes the crowd and checks the server still answers.
Prints a Markdown table and the command that made it. Loopback only; every wait is bounded.

    python3 bench/crowds.py
    python3 bench/crowds.py --root /path/to/another/checkout --crowds silent-64,silent-1000
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_BODY = b'{"stream":true,"messages":[{"role":"user","content":"Hi"}]}'


def _connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


class Crowd:
    """Opens ``count`` connections that each do ``kind`` and keeps them open until ``close``."""

    def __init__(self, port: int, kind: str, count: int) -> None:
        self.port, self.kind, self.count = port, kind, count
        self.socks: List[socket.socket] = []
        self._stop = threading.Event()
        self._trickler: Optional[threading.Thread] = None

    def open(self) -> None:
        for _ in range(self.count):
            try:
                sock = _connect(self.port, 5.0)
            except OSError:
                break
            self.socks.append(sock)
            if self.kind == "half-head":
                sock.sendall(b"POST /v1/pipes/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            elif self.kind == "half-body":
                sock.sendall(b"POST /v1/pipes/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"mess")
            elif self.kind == "idle-keep-alive":
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                _read_response(sock)
        if self.kind in ("trickle", "slow-upload"):
            self._trickler = threading.Thread(target=self._trickle, daemon=True)
            self._trickler.start()

    def _trickle(self) -> None:
        # trickle: one byte of a never-ending head every 3 s per connection;
        # slow-upload: a whole head, then one body byte every 100 ms.
        if self.kind == "slow-upload":
            for sock in self.socks:
                sock.sendall(b"POST /v1/threads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        interval = 3.0 if self.kind == "trickle" else 0.1
        head = b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * 100000
        i = 0
        while not self._stop.wait(interval):
            for sock in self.socks:
                try:
                    sock.send(head[i:i + 1])
                except OSError:
                    pass
            i += 1

    def close(self) -> None:
        self._stop.set()
        if self._trickler is not None:
            self._trickler.join(5)
        for sock in self.socks:
            sock.close()


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    if m:
        while len(body) < int(m.group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return head


class WrongAnswer(Exception):
    """The server answered, but not 200: the measurement is void, not slow (the status line)."""


def time_health(port: int, timeout: float) -> Optional[float]:
    """Seconds until a whole ``GET /health`` answer arrives, or None past ``timeout``. Raises
    ``WrongAnswer`` for an answer that is not 200."""
    start = time.monotonic()
    try:
        with _connect(port, timeout) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = _read_response(sock)
            if not head.startswith(b"HTTP/1.1 200"):
                raise WrongAnswer(head.split(b"\r\n", 1)[0].decode("latin-1"))
            return time.monotonic() - start
    except OSError:
        return None


def time_stream(port: int, timeout: float) -> Optional[float]:
    """Seconds until the first body byte of a streamed run arrives, or None past ``timeout``.
    Raises ``WrongAnswer`` for an answer that is not 200."""
    start = time.monotonic()
    try:
        with _connect(port, timeout) as sock:
            sock.sendall(b"POST /v1/pipes/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(RUN_BODY), RUN_BODY))
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise WrongAnswer(data.split(b"\r\n", 1)[0].decode("latin-1"))
            if not data.partition(b"\r\n\r\n")[2]:
                if not sock.recv(65536):
                    return None
            return time.monotonic() - start
    except OSError:
        return None


CROWDS: Dict[str, Tuple[str, int]] = {
    "none": ("none", 0),
    "silent-4": ("silent", 4),
    "silent-8": ("silent", 8),
    "silent-64": ("silent", 64),
    "silent-1000": ("silent", 1000),
    "silent-10000": ("silent", 10000),
    "trickle-4": ("trickle", 4),
    "half-head-1000": ("half-head", 1000),
    "half-body-200": ("half-body", 200),
    "idle-keep-alive-1000": ("idle-keep-alive", 1000),
    "idle-keep-alive-10000": ("idle-keep-alive", 10000),
    "slow-upload-1": ("slow-upload", 1),
}


def start_server(root: str, extra: List[str]) -> Tuple[subprocess.Popen, int]:
    cmd = [sys.executable, os.path.join(root, "main.py"), "--port", "0", "--log-level", "warning"] + extra
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on http://[^:]+:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit("crowds: the server did not start: %r" % line)
    return proc, int(m.group(1))


def fmt(seconds: Optional[float], timeout: float) -> str:
    return "no answer in %g s" % timeout if seconds is None else "%.1f ms" % (seconds * 1000)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=REPO_ROOT, help="checkout whose main.py to run (default: this one)")
    p.add_argument("--crowds", default=",".join(CROWDS), help="comma-separated, from: " + ", ".join(CROWDS))
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for each normal request")
    p.add_argument("--settle", type=float, default=0.5, help="seconds between opening a crowd and timing")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument for main.py (repeatable)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.crowds.split(",") if n.strip()]
    unknown = [n for n in names if n not in CROWDS]
    if unknown:
        p.error("unknown crowd(s): %s" % ", ".join(unknown))
    rows = []
    for name in names:
        kind, count = CROWDS[name]
        proc, port = start_server(args.root, args.server_arg)
        crowd = Crowd(port, kind, count)
        try:
            crowd.open()
            time.sleep(args.settle)
            health = time_health(port, args.timeout)
            stream = time_stream(port, args.timeout)
            opened = len(crowd.socks)
        finally:
            crowd.close()
        after = time_health(port, args.timeout)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        rows.append((name, opened, fmt(health, args.timeout), fmt(stream, args.timeout),
                     "yes" if after is not None else "no"))
        print("crowds: %s done" % name, file=sys.stderr, flush=True)
    print("| crowd | connections open | GET /health answered | stream first byte | serving after |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print("| %s | %d | %s | %s | %s |" % row)
    print("\ncommand: python3 bench/crowds.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
