"""A seeded, time-bounded fuzzer over real sockets: valid raw requests for every kind of route,
mutated (truncated, bytes flipped, ``Content-Length`` huge, negative or doubled, bodies nested
deep, lone surrogates, non-finite and huge numbers, UTF-16 and Latin-1 bodies, stray headers,
broken chunked framing), sent one per connection. Every answer must be below 500 (but 501 for an
unknown method and 505 for an unknown HTTP version, as RFC 9110 has it), no connection
may hang, and the server must still answer ``GET /health`` and not have crashed.

Bounds: ``LB_MOCK_FUZZ_SECONDS`` seconds (default 8) or ``LB_MOCK_FUZZ_CASES`` cases (default
2000), whichever ends first; each case has a 5 s socket timeout. ``LB_MOCK_FUZZ_SEED`` (default 13)
picks the cases, so a failure names a seed and case number that reproduce it::

    LB_MOCK_FUZZ_SECONDS=60 LB_MOCK_FUZZ_SEED=7 python3 -m unittest tests.test_fuzz -v
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
import unittest
from typing import Callable, List, Tuple

from tests.support import RunningServer, call

SECONDS = float(os.environ.get("LB_MOCK_FUZZ_SECONDS", "8"))
CASES = int(os.environ.get("LB_MOCK_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("LB_MOCK_FUZZ_SEED", "13"))

HI = [{"role": "user", "content": "Hi"}]
BODIES: List[Tuple[str, str, object]] = [
    ("POST", "/v1/pipes/run", {"messages": HI, "stream": True, "variables": {"a": "b"}, "mock": {"chunking": "char"}}),
    ("POST", "/v1/pipes/run", {"messages": HI, "threadId": "t1", "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
            "a": {"type": "integer"}}}}}]}),
    ("POST", "/v1/agent/run", {"model": "openai:gpt-4o-mini", "input": "Hi", "stream": True}),
    ("POST", "/v1/threads", {"threadId": "t2", "metadata": {"k": "v"}, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "x"}], "attachments": [{"a": 1}]}]}),
    ("POST", "/v1/threads/t1/messages", HI),
    ("POST", "/v1/threads/t1", {"metadata": {"k": "v"}}),
    ("POST", "/v1/chat/completions", {"model": "m", "messages": HI, "stream": True,
                                      "stream_options": {"include_usage": True}, "temperature": 0.5}),
    ("POST", "/api/chat", {"model": "m", "messages": HI, "stream": True}),
    ("POST", "/api/stream", {"model": "llama2", "messages": HI, "chatId": "t3"}),
    ("POST", "/api/generate", {"sessionId": "s", "chatMessageId": "c", "prompt": "Hi"}),
    ("POST", "/v1/pipes", {"name": "p", "model": "openai:gpt-4o", "messages": HI}),
    ("POST", "/v1/memory", {"name": "m", "chunk_size": 2048}),
    ("POST", "/v1/memory/retrieve", {"query": "q", "memory": [{"name": "m", "filters": ["a", "Eq", "b"]}], "topK": 3}),
    ("POST", "/v1/chunker", {"content": "Some text. " * 20, "chunkMaxLength": 1024}),
    ("POST", "/v1/embed", {"chunks": ["a", "b"]}),
    ("POST", "/v1/tools/crawl", {"url": ["https://example.com"], "maxPages": 1}),
    ("POST", "/v1/images", {"prompt": "p", "model": "openai:gpt-image-1", "n": 1}),
    ("POST", "/v1/traces", {"workflow": {"id": "w", "steps": []}}),
]
GETS = ["/health", "/", "/mock/settings", "/mock/runs", "/v1/threads/t1/messages", "/v1/models",
        "/api/events?prompt=Hi&chunking=char", "/events", "/api/stream/s/c", "/v1/memory/m/documents",
        "/openapi.json"]
HEADERS = [("X-Mock-Chunking", "char"), ("X-Mock-Seed", "5"), ("X-Mock-Reply-Text", "UTF-8''Gr%C3%BC%C3%9Fe"),
           ("Last-Event-ID", "3"), ("Origin", "http://evil.test"), ("Authorization", "Bearer k"),
           ("X-Mock-Framing", "byte"), ("X-Mock-Line-Ending", "crlf"), ("Content-Type", "text/plain")]
ODD_VALUES = ["\ud800", "\udfff", 1e308, 10 ** 400, -10 ** 400, None, True, [], {}, "", "x" * 5000, -1, 0.5,
              "\u0000", "\u202e", "\U0001f600"]

STATUS_RE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def raw_request(method: str, path: str, body: bytes, headers: List[Tuple[str, str]]) -> bytes:
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    lines += ["%s: %s" % kv for kv in headers]
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def mutate_json(rng: random.Random, value: object, depth: int = 0) -> object:
    """``value`` with one part replaced by an odd value, or nested deep."""
    if isinstance(value, dict) and value and depth < 4:
        key = rng.choice(list(value))
        return dict(value, **{key: mutate_json(rng, value[key], depth + 1)})
    if isinstance(value, list) and value and depth < 4:
        i = rng.randrange(len(value))
        return value[:i] + [mutate_json(rng, value[i], depth + 1)] + value[i + 1:]
    choice = rng.random()
    if choice < 0.15:
        levels = rng.choice([30, 64, 65, 200, 3000])
        return json.loads("[" * levels + "]" * levels) if levels < 900 else {"deep": levels}
    return rng.choice(ODD_VALUES)


def encode_body(rng: random.Random, value: object) -> bytes:
    if isinstance(value, dict) and value.get("deep"):
        return b"[" * value["deep"] + b"]" * value["deep"]
    text = json.dumps(value, allow_nan=True)
    if rng.random() < 0.2:
        text = text.replace("1e+308", rng.choice(["1e999", "NaN", "-Infinity", "1" * 500]))
    how = rng.random()
    if how < 0.08:
        return text.encode("utf-16")
    if how < 0.16:
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if how < 0.24:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if how < 0.30:
        return text.encode("utf-8").replace(b"Hi", b"H\xe9\xff")
    return text.encode("utf-8")


def case(rng: random.Random) -> bytes:
    """One fuzzed request's bytes."""
    headers = rng.sample(HEADERS, rng.randrange(3))
    if rng.random() < 0.75:
        method, path, body = rng.choice(BODIES)
        if rng.random() < 0.6:
            body = mutate_json(rng, body)
        data = encode_body(rng, body)
        headers.insert(0, ("Content-Type", "application/json"))
        raw = raw_request(method, path, data, headers)
    else:
        raw = raw_request("GET", rng.choice(GETS), b"", headers)
    mutations: List[Callable[[bytes], bytes]] = [
        lambda r: r[:rng.randrange(len(r))],
        lambda r: bytes(b if rng.random() > 0.02 else rng.randrange(256) for b in r),
        lambda r: re.sub(rb"Content-Length: \d+", rng.choice(
            [b"Content-Length: 99999999999999999999", b"Content-Length: -1", b"Content-Length: 1e3",
             b"Content-Length: 5\r\nContent-Length: 6", b"Content-Length: \xb2", b"Content-Length: 0"]), r),
        lambda r: r.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n" + rng.choice(
            [b"fffffffffffffffffff\r\n", b"-5\r\n", b"3\r\nabc\r\n0\r\n\r\n", b"zz\r\n"]), 1),
        lambda r: r.replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\n\t", b"\r\n \r\n"]), 2),
        lambda r: r.replace(b"HTTP/1.1", rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""]), 1),
        lambda r: r.replace(b"Host: 127.0.0.1", rng.choice([b"Host: localhost:1", b"Host: [::1]", b"X: \xff\xfe"]), 1),
        lambda r: r,
    ]
    for _ in range(rng.choice([0, 1, 1, 2])):
        raw = rng.choice(mutations)(raw)
    return raw


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, end the sending side, read until the server closes (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first (a 4xx that ends the connection)
        parts = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
        raise AssertionError("the connection was still open after 5 s; got %r" % b"".join(parts)[:200])


class FuzzTest(unittest.TestCase):
    def test_mutated_requests_get_no_5xx_and_no_hang(self):
        rng = random.Random(SEED)
        with RunningServer(head_timeout=1.0, body_timeout=1.0, keep_alive_timeout=1.0, token_wait=0.05,
                           memory_processing_seconds=0, max_body_bytes=256 * 1024) as s:
            call(s.port, "POST", "/v1/threads", {"threadId": "t1"})
            started, n = time.monotonic(), 0
            while n < CASES and time.monotonic() - started < SECONDS:
                data = case(rng)
                n += 1
                answer = exchange(s.port, data)
                statuses = [int(code) for code in STATUS_RE.findall(answer)]
                # 501 (a method it does not know) and 505 (an HTTP version it does not speak) are
                # the protocol's own answers; any other 5xx is a bug.
                self.assertFalse([c for c in statuses if c >= 500 and c not in (501, 505)],
                                 "seed %d case %d: %r\n-> %r" % (SEED, n, data[:600], answer[:600]))
                if n % 100 == 0:
                    self.assertEqual(call(s.port, "GET", "/health").status, 200, "seed %d case %d" % (SEED, n))
            self.assertEqual(call(s.port, "GET", "/health").status, 200)
            self.assertFalse(s.server.pacer.crashed)
            self.assertGreater(n, 50)


if __name__ == "__main__":
    unittest.main()
