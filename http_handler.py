"""HTTP/1.1 transport: bytes from a connection in, whole requests to the routes, responses out.

Job: for each connection the loop (``pacer``) accepts, collect bytes in a bounded buffer until a
whole request is there (head through the blank line, then exactly ``Content-Length`` bytes of
body), under a deadline for the head, one for the body and one for an idle keep-alive
connection; check the head's framing strictly; parse it with the standard library
(``BaseHTTPRequestHandler.parse_request`` over the buffered bytes); hand the ``api.Request`` to
``routes.dispatch``; and turn the response value into bytes: a JSON body, an empty one, or a
stream's plan framed as an HTTP body (chunked, close-delimited or buffered) with the response
head in front (a ``DeferredResponse`` is polled from a loop timer until it has one of those).
The connection stays open for the next request when the client allows it, after streams too
(chunked bodies end on their own). This is the only module that knows HTTP's syntax; what a
request means is ``routes``' business.

Strict framing (RFC 9112): a header line without a colon, whitespace before the colon, a folded
line, a control character, conflicting or malformed ``Content-Length``, or any
``Transfer-Encoding`` is answered 400 (411 for a chunked body) with ``Connection: close``: the
connection's framing is lost, so its remaining bytes are never read as another request.
"""

from __future__ import annotations

import email.utils
import io
import logging
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import routes
from routes import hosts
import scenario
from api import (
    SERVICE, VERSION, ApiError, App, BadRequest, DeferredResponse, EmptyResponse, HeadersTooLarge, JsonResponse,
    LengthRequired, PayloadTooLarge, Request, RequestTimeout, ServiceUnavailable, StreamResponse,
)
from sse import dumps_compact
from steps import Step, Wait, Write
from threads import new_uuid4

__all__ = ["HttpConnection", "Limits", "chunk", "LAST_CHUNK", "buffered_body", "refusal", "MAX_HEAD_BYTES"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("access")

MAX_HEAD_BYTES = 64 * 1024
"""Largest request head (request line and headers) accepted; beyond it 431."""

SERVER = "%s/%s" % (SERVICE, VERSION)
CORS_ALLOW_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = ", ".join(
    ["Content-Type", "Authorization", "LB-LLM-Key", "LB-WEB-SEARCH-KEY", "LB-CRAWL-KEY", "Cache-Control",
     "Last-Event-ID"]
    + ["X-Mock-" + "-".join(w.capitalize() for w in name.split("_")) for name in scenario.SETTINGS]
)
CORS_EXPOSE_HEADERS = "lb-thread-id, lb-request-id, lb-mock-seed, lb-mock-run-id"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""Methods the server knows; any other is a 501."""

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_LEADING_BLANK_LINES = re.compile(rb"(?:\r?\n)+")
MAX_ANSWERS_PER_TURN = 16
"""Most pipelined requests one connection has answered before the loop turns to others."""
LINGER_SECONDS = 2.0
"""After an answer that closes the connection, how long unread request bytes are still read
and dropped, so that closing does not reset the connection before the client reads the answer."""
DEFER_POLL_SECONDS = 0.01
"""How often a ``DeferredResponse`` is asked whether its response is ready."""
_HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*")
_CONTENT_LENGTH = re.compile(rb"[ \t]*([0-9]{1,18})[ \t]*")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NOTHING: Iterator[Step] = iter(())  # the plan of a response whose head says it all


class Limits:
    """What one connection may cost. Fields: ``head_timeout`` (seconds from the first byte of
    a request, or from accept, until its head is complete), ``body_timeout`` (seconds from
    the end of the head until the whole body is in), ``keep_alive_timeout`` (seconds an idle
    connection is kept between requests), ``max_body_bytes`` (int)."""

    __slots__ = ("head_timeout", "body_timeout", "keep_alive_timeout", "max_body_bytes")

    def __init__(self, head_timeout: float = 10.0, body_timeout: float = 30.0,
                 keep_alive_timeout: float = 5.0, max_body_bytes: int = 1024 * 1024) -> None:
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.max_body_bytes = max_body_bytes


# --- framing a plan as an HTTP body (sans-I/O) -----------------------------------------------


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk holding ``data`` (non-empty): ``b"abc"`` becomes
    ``b"3\\r\\nabc\\r\\n"`` (RFC 9112, section 7.1). The loop frames each send of a chunked
    stream with it, so a stream's writes between two waits travel as one chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
"""The end of a chunked body (last chunk, no trailer fields)."""


def buffered_body(plan: Iterable[Step], head: bytes) -> Iterator[Step]:
    """What a buffering proxy makes of a stream: nothing until the end, then ``head`` (status
    line and headers without the closing blank line), ``Content-Length`` and the whole body in
    one write after all the waits. A ``Close`` step means nothing is sent at all."""
    parts, waited = [], 0.0
    for step in plan:
        kind = type(step)
        if kind is Write:
            parts.append(step.data)
        elif kind is Wait:
            waited += step.seconds
        else:
            yield Wait(waited)
            yield step
            return
    data = b"".join(parts)
    yield Wait(waited)
    yield Write(head + b"Content-Length: %d\r\n\r\n" % len(data) + data)


# --- parsing a head ---------------------------------------------------------------------------


class _HeadParser(BaseHTTPRequestHandler):
    """The standard library's request-line and header parsing, run over bytes already in hand
    (``parse_request``); its errors are kept in ``error`` instead of being written."""

    protocol_version = "HTTP/1.1"  # so that parse_request honours keep-alive

    def __init__(self, head: bytes) -> None:  # no socket: skip StreamRequestHandler's setup
        line, _, rest = head.partition(b"\n")
        self.raw_requestline = line + b"\n"
        self.rfile = io.BytesIO(rest)
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.error: Optional[Tuple[int, str]] = None

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        self.error = (code, message or explain or "Bad request")

    def handle_expect_100(self) -> bool:
        return True  # the interim response is sent only if the body is not already here


def _check_framing(lines: List[bytes], max_body: int) -> int:
    """Check header lines strictly; return the body's length.

    Raises ``BadRequest``, ``LengthRequired`` or ``PayloadTooLarge`` (all closing the
    connection)."""
    lengths = []
    for line in lines:
        if not _HEADER_LINE.fullmatch(line):
            if line[:1] in (b" ", b"\t"):
                why = "a folded header line (obsolete line folding is not accepted)"
            elif b":" not in line:
                why = "a header line without a colon"
            elif re.match(rb"[^:]*[ \t]:", line):
                why = "whitespace before a header's colon"
            else:
                why = "a header name or value with characters HTTP does not allow"
            raise BadRequest("Malformed request head: %s: %r." % (why, line[:60].decode("latin-1")), close=True)
        name = line[:line.index(b":")].lower()
        if name == b"content-length":
            match = _CONTENT_LENGTH.fullmatch(line, len(name) + 1)
            if not match:
                raise BadRequest("Invalid Content-Length header %r; send one decimal byte count."
                                 % line[len(name) + 1:].strip()[:40].decode("latin-1"), close=True)
            lengths.append(int(match.group(1)))
        elif name == b"transfer-encoding":
            if b"chunked" in line.lower():
                raise LengthRequired("Chunked request bodies are not supported; send the body with a "
                                     "Content-Length.", close=True)
            raise BadRequest("Transfer-Encoding is not supported; send the body with a Content-Length.",
                             close=True)
    if len(set(lengths)) > 1:
        raise BadRequest("Conflicting Content-Length headers; send exactly one.", close=True)
    length = lengths[0] if lengths else 0  # RFC 9112 6.3: no Content-Length, no body
    if length > max_body:
        raise PayloadTooLarge("Request body is %d bytes; the limit is %d (see --max-body-bytes)."
                              % (length, max_body), close=True)
    return length


class _Head:
    """A parsed head waiting for its body: ``request`` (``api.Request`` without body),
    ``length`` (body bytes), ``keep_alive`` (bool), ``expect_continue`` (bool)."""

    __slots__ = ("request", "length", "keep_alive", "expect_continue", "requestline")

    def __init__(self, request: Request, length: int, keep_alive: bool, expect_continue: bool,
                 requestline: str) -> None:
        self.request = request
        self.length = length
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.requestline = requestline


def _path_and_query(target: str) -> Tuple[str, str]:
    """``(path, query)`` of a request target: an absolute-form target (RFC 9112 3.2.2,
    ``http://host/path?query``) without its scheme and authority, and any fragment dropped."""
    if target[:7].lower() == "http://" or target[:8].lower() == "https://":
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    path, _, query = target.partition("?")
    return path.partition("#")[0], query


def _check_host_field(values: List[str], version: str) -> None:
    """RFC 9112 3.2: an HTTP/1.1 request carries exactly one ``Host`` line, and a value that is
    a host and optional port (``routes.hosts.HOST_RE``; empty is allowed). Raises
    ``BadRequest`` (closing the connection) otherwise. Whether the name is one this server
    answers to is a later question (``routes.hosts.check_host``)."""
    if len(values) > 1:
        raise BadRequest("The request has %d Host headers; send exactly one." % len(values), close=True)
    if not values:
        if version != "HTTP/1.0":  # 1.1, or a later 1.x answered as 1.1
            raise BadRequest("An HTTP/1.1 request needs a Host header (the server's host and port).", close=True)
        return
    value = values[0].strip()
    if value and not hosts.HOST_RE.fullmatch(value):
        raise BadRequest("The Host header is not a host name or address with an optional port.", close=True)


def parse_head(head: bytes, max_body: int, client: str = "-") -> _Head:
    """Parse a request head (request line, header lines and the blank line that ends them).

    Returns a ``_Head``. Raises ``ApiError`` (400, 411, 413, 431, 501 or 505) for a head that must
    not be answered as a request; every such error closes the connection."""
    text_lines = head.split(b"\n")
    if _CONTROL.search(text_lines[0].rstrip(b"\r")):
        raise BadRequest("Malformed request line: it holds a control character.", close=True)
    lines = [line[:-1] if line.endswith(b"\r") else line for line in text_lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    length = _check_framing(lines, max_body)
    parser = _HeadParser(head)
    try:
        parsed = parser.parse_request()
    except ValueError:  # the email parser decoding a multipart boundary*=undefined''x (a UnicodeError)
        raise BadRequest("Malformed request head: a header parameter in a charset that cannot be decoded.",
                         close=True) from None
    code, message = parser.error or (400, "Bad request")
    if code == 505 or parsed and (parser.request_version == "HTTP/0.9"
                                  or not parser.request_version.startswith("HTTP/1.")):
        # RFC 9110 15.6.6: a well-formed version this server does not speak (HTTP/2.0 as text).
        words = parser.raw_requestline.split()
        version = words[-1].decode("latin-1")[5:15] if len(words) >= 3 else "0.9"  # "GET /": HTTP/0.9
        error = ApiError("HTTP version %s is not supported; send HTTP/1.1 (or HTTP/1.0)." % version, close=True)
        error.status, error.code = 505, "HTTP_VERSION_NOT_SUPPORTED"
        raise error
    if not parsed:
        error_class = HeadersTooLarge if code == 431 else BadRequest
        raise error_class("Malformed request: %s." % message.rstrip("."), close=True)
    method = parser.command
    if method not in METHODS:
        error = ApiError("Method %s is not implemented; use GET, HEAD, POST, DELETE or OPTIONS." % method[:20],
                         close=True)
        error.status, error.code = 501, "NOT_IMPLEMENTED"
        raise error
    path, query = _path_and_query(parser.path)
    if not path.startswith("/") and not (path == "*" and method == "OPTIONS"):
        # RFC 9112 3.2: a path (origin-form), a URL (absolute-form), or "*" for OPTIONS only.
        raise BadRequest("Malformed request target: send a path that starts with '/'.", close=True)
    headers = parser.headers
    _check_host_field(headers.get_all("Host") or (), parser.request_version)
    request = Request(method, path, query=query, version=parser.request_version, headers=headers,
                      request_id=new_uuid4(), client=client)
    expect = (headers.get("Expect") or "").lower() == "100-continue" and parser.request_version == "HTTP/1.1"
    requestline = parser.raw_requestline.decode("latin-1").rstrip("\r\n")
    tokens = [t.strip().lower() for t in ",".join(headers.get_all("Connection") or ()).split(",")]
    keep_alive = not parser.close_connection and "close" not in tokens
    return _Head(request, length, keep_alive, expect, requestline)


# --- rendering responses ----------------------------------------------------------------------


_date_cache = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


def _head_bytes(status: int, headers: Iterable[Tuple[str, str]]) -> bytes:
    """Status line, ``Server``, ``Date`` and ``headers``, each line ending CRLF, without the
    blank line. Header values must be Latin-1 and free of line breaks (all are built here)."""
    lines = ["HTTP/1.1 %d %s" % (status, _REASONS.get(status, "Unknown")), "Server: " + SERVER,
             "Date: " + _http_date()]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


_REASONS = {code: reason for code, (reason, _) in BaseHTTPRequestHandler.responses.items()}


def refusal(max_connections: int) -> bytes:
    """The whole response sent to a connection over the cap: 503 with ``Retry-After: 1``,
    ``Connection: close`` and a Langbase error body."""
    error = ServiceUnavailable("The server has %d connections open (--max-connections); retry in a "
                               "moment." % max_connections)
    body = dumps_compact(error.body()).encode("utf-8")
    head = _head_bytes(503, [("Content-Type", "application/json"), ("Retry-After", "1"),
                             ("Connection", "close"), ("Content-Length", str(len(body)))])
    return head + b"\r\n" + body


class HttpConnection:
    """The HTTP protocol of one connection (see ``pacer`` for the protocol interface).

    Args:
        conn: the ``pacer.Connection``.
        app: the ``api.App`` that routes work on.
        limits: the connection's ``Limits``.
        cors_origins: allowed origins, or ``("*",)``.
    """

    __slots__ = ("conn", "app", "limits", "cors_origins", "buf", "head", "eof", "busy", "close_after",
                 "timer", "timer_kind", "processing", "requests", "sent_continue", "reading", "scanned", "lingering",
                 "graced")

    def __init__(self, conn: Any, app: App, limits: Limits, cors_origins: Tuple[str, ...]) -> None:
        self.conn = conn
        self.app = app
        self.limits = limits
        self.cors_origins = cors_origins
        self.buf = bytearray()
        self.head: Optional[_Head] = None  # a parsed head whose body is still arriving
        self.eof = False
        self.busy = False  # a response is being sent
        self.close_after = False
        self.timer: Any = None
        self.timer_kind = ""
        self.processing = False
        self.requests = 0
        self.sent_continue = False
        self.reading = True
        self.scanned = 0  # bytes of the buffer already searched for the end of a head
        self.lingering = False  # answered and half-closed: reading only to drop what comes
        self.graced = False  # a deadline was extended once because the loop was behind
        self._set_timer("head")  # a silent connection costs one descriptor, briefly

    # -- the loop's calls ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        self.buf += data
        if self.busy:
            # Pipelined bytes wait here, bounded; beyond the bound, back-pressure.
            if len(self.buf) > MAX_HEAD_BYTES + self.limits.max_body_bytes:
                self.reading = False
                self.conn.pause_reading()
            return
        self._process()

    def eof_received(self) -> None:
        self.eof = True
        if self.lingering:
            self.conn.close("complete")
        elif not self.busy:
            self._process()

    def plan_done(self) -> None:
        self.busy = False
        if self.close_after or self.conn.loop.stopping:
            if self.eof or self.conn.loop.stopping:
                self.conn.close("complete")
            else:
                # A lingering close: FIN now, drop what the client still sends, close on its
                # FIN or after LINGER_SECONDS. Closing at once with unread bytes would send a
                # reset, which can destroy the answer before the client has read it.
                self.lingering = True
                self.buf = bytearray()
                self.conn.shutdown_write()
                if not self.reading:
                    self.reading = True
                    self.conn.resume_reading()
                self._set_timer("linger")
            return
        if not self.reading and not self.eof:
            self.reading = True
            self.conn.resume_reading()
        if not self.processing:
            self._process()

    def connection_lost(self, outcome: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- requests ----------------------------------------------------------------------------

    def _seconds(self, kind: str) -> float:
        """How long a deadline of ``kind`` lasts: ``head``, ``body``, ``idle`` or ``linger``."""
        limits = self.limits
        return {"head": limits.head_timeout, "body": limits.body_timeout,
                "idle": limits.keep_alive_timeout, "linger": LINGER_SECONDS}[kind]

    def _set_timer(self, kind: str) -> None:
        """Start the deadline of ``kind`` (unless it is already running); ``""`` stops it."""
        if self.timer_kind == kind or self.conn.closed:
            return
        if self.timer is not None:
            self.timer.cancel()
        loop = self.conn.loop
        self.timer_kind = kind
        self.timer = loop.call_at(loop.clock() + self._seconds(kind), self._timed_out) if kind else None

    def _timed_out(self) -> None:
        kind, self.timer, self.timer_kind = self.timer_kind, None, ""
        if self.conn.closed or (self.busy and kind != "linger"):
            return
        if kind != "linger" and not self.graced and self.conn.input_waiting():
            # The client did send in time; the loop, busy with others, has not read it yet.
            # That is not the client's fault: one more period, once per request.
            self.graced = True
            self._set_timer(kind)
            return
        if kind in ("idle", "linger") or (kind == "head" and not self.buf):
            self.conn.close({"idle": "idle for too long", "linger": "complete"}.get(kind, "sent nothing"))
            return
        what, seconds = kind, self._seconds(kind)
        path = self.head.request.path if self.head is not None else "/"
        log.debug("%s: request %s not complete after %g s; closing", self._client(), what, seconds)
        self._respond_error(RequestTimeout(
            "The request %s did not arrive within %g s; send the whole request promptly." % (what, seconds),
            close=True), path, None)

    def _client(self) -> str:
        address = self.conn.address
        return "%s:%s" % tuple(address[:2]) if isinstance(address, tuple) and len(address) >= 2 else "-"

    def _process(self) -> None:
        """Answer every whole request in the buffer, one at a time, until one is in progress."""
        if self.processing or self.lingering:
            return
        self.processing = True
        answered = 0
        try:
            while not self.busy and not self.conn.closed:
                if answered == MAX_ANSWERS_PER_TURN:
                    # Pipelined requests answered at once: let other connections have a turn.
                    loop = self.conn.loop
                    self.timer_kind, self.timer = "", None
                    loop.call_at(loop.clock(), self._process)
                    return
                if self.head is None and not self._take_head():
                    return
                head = self.head
                if len(self.buf) < head.length:
                    if self.eof:
                        self._respond_error(BadRequest("The request body ended before Content-Length bytes.",
                                                       close=True), head.request.path, head.request)
                        return
                    if head.expect_continue and not self.sent_continue:
                        self.sent_continue = True
                        self.conn.send(_CONTINUE)
                    self._set_timer("body")
                    return
                self.head = None
                request = head.request
                request.body = bytes(self.buf[:head.length])
                del self.buf[:head.length]
                answered += 1
                self._answer(request, head)
        finally:
            self.processing = False

    def _take_head(self) -> bool:
        """Parse the next head from the buffer into ``self.head``; False when not yet whole
        (or the connection was closed or answered with an error)."""
        buf = self.buf
        if buf[:1] in (b"\r", b"\n"):
            # RFC 9112 2.2: blank lines before a request line are ignored, also when they come
            # in reads of their own (after a body, say): they are not an empty head.
            match = _LEADING_BLANK_LINES.match(buf)
            if match:
                del buf[:match.end()]
                self.scanned = 0
        if not buf:
            if self.eof:
                self.conn.close("client closed")
            else:
                self._set_timer("idle" if self.requests else "head")
            return False
        match = _HEAD_END.search(buf, max(0, self.scanned - 3), MAX_HEAD_BYTES + 4)
        if match is None:
            self.scanned = len(buf)
            if len(buf) > MAX_HEAD_BYTES:
                self._respond_error(HeadersTooLarge(
                    "The request head is over %d bytes." % MAX_HEAD_BYTES, close=True), "/", None)
            elif self.eof:
                self._respond_error(BadRequest("The request head ended before its blank line.", close=True),
                                    "/", None)
            else:
                self._set_timer("head")
            return False
        end = match.end()
        raw = bytes(buf[:end])
        del buf[:end]
        self.scanned = 0
        self.sent_continue = False
        try:
            self.head = parse_head(raw, self.limits.max_body_bytes, self._client())
        except ApiError as exc:
            # The error in the shape of the route the target names, read as parse_head reads it
            # (parse_request first collapses a leading "//").
            target = raw.split(b" ", 2)[1].decode("latin-1") if raw.count(b" ") >= 2 else "/"
            if target.startswith("//"):
                target = "/" + target.lstrip("/")
            self._respond_error(exc, _path_and_query(target)[0], None)
            return False
        return True

    def _answer(self, request: Request, head: _Head) -> None:
        self.requests += 1
        self.graced = False
        self._set_timer("")
        if request.method == "OPTIONS":
            response: Any = EmptyResponse(204, [
                ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
                ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
                ("Access-Control-Max-Age", "86400"),
            ])
        elif self.app.worker is not None:
            # The store is a file (--db): a route may wait on the disk or on another process's
            # lock, so it runs on the store's worker thread and the loop goes on pacing.
            future = self.app.worker.submit(routes.dispatch, self.app, request)
            response = DeferredResponse(lambda: future.result() if future.done() else None, future.cancel)
        else:
            response = routes.dispatch(self.app, request)
        self._send(request, response, head.keep_alive, head.requestline)

    def _respond_error(self, error: ApiError, path: str, request: Optional[Request]) -> None:
        self.head = None
        self._set_timer("")
        self._send(request, routes.error_response(error, routes.error_style_for(path), request), False, "-")

    # -- responses ---------------------------------------------------------------------------

    def _common_headers(self, request: Optional[Request]) -> List[Tuple[str, str]]:
        """CORS headers (``Access-Control-Allow-Origin`` only for an allowed origin, never an
        unlisted ``Origin`` echoed back) and ``lb-request-id``."""
        out = []
        origins = self.cors_origins
        if origins == ("*",):
            out.append(("Access-Control-Allow-Origin", "*"))
        else:
            origin = request.headers.get("Origin") if request is not None else None
            if origin in origins:
                out.append(("Access-Control-Allow-Origin", origin))
            out.append(("Vary", "Origin"))
        out.append(("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS))
        if request is not None:
            out.append(("lb-request-id", request.request_id))
        return out

    def _send(self, request: Optional[Request], response: Any, keep_alive: bool, requestline: str) -> None:
        """Render ``response`` and give its plan to the loop (a ``DeferredResponse``: once its
        ``poll`` has the response)."""
        if type(response) is DeferredResponse:
            self.busy = True  # pipelined bytes wait, deadlines hold off, as while a plan runs
            loop = self.conn.loop

            def check() -> None:
                if self.conn.closed or loop.stopping:
                    response.cancel()
                    if not self.conn.closed:
                        self.conn.close("server stopping")
                    return
                value = response.poll()
                if value is None:
                    loop.call_at(loop.clock() + DEFER_POLL_SECONDS, check)
                else:
                    self._send(request, value, keep_alive, requestline)

            loop.call_at(loop.clock() + DEFER_POLL_SECONDS, check)
            return
        try:
            status, close, head, plan, chunked = self._render(request, response, keep_alive)
        except Exception:  # a body that cannot be encoded, say: never leave a client hanging
            log.exception("could not render the response to %s", requestline)
            error = ApiError("The mock server failed unexpectedly; see its log for the traceback.", close=True)
            status, close, head, plan, chunked = self._render(request, routes.error_response(error, "langbase"),
                                                              False)
        self.close_after = close
        self.busy = True
        if access_log.isEnabledFor(logging.INFO):
            access_log.info('%s "%s" %s', self._client(), requestline, status)
        if chunked:
            self.conn.run_plan(plan, True, head, chunk, LAST_CHUNK)
        else:
            self.conn.run_plan(plan, plan is not _NOTHING, head)

    def _render(self, request: Optional[Request], response: Any,
                keep_alive: bool) -> Tuple[int, bool, bytes, Iterator[Step], bool]:
        """``(status, close afterwards, head, plan, chunked)`` for a response value: ``head``
        goes out first, then the ``plan``'s writes, each send as one chunk if ``chunked``."""
        headers = self._common_headers(request)
        bodiless = request is not None and request.method == "HEAD"
        kind = type(response)
        if kind is StreamResponse:
            mode = response.mode
            if request is not None and request.version == "HTTP/1.0":
                mode = "close"  # HTTP/1.0 has no chunked encoding
            close = not keep_alive or mode == "close"
            headers += [("Content-Type", response.content_type), ("Cache-Control", "no-cache"),
                        ("X-Accel-Buffering", "no")]
            headers += response.headers
            if close:
                headers.append(("Connection", "close"))
            elif request is not None and request.version == "HTTP/1.0":
                headers.append(("Connection", "keep-alive"))
            head = _head_bytes(200, headers)
            if mode == "buffered" and not bodiless:
                return 200, close, b"", buffered_body(response.plan, head), False
            if mode == "chunked":
                head += b"Transfer-Encoding: chunked\r\n"
            head += b"\r\n"
            if bodiless:
                return 200, close, head, _NOTHING, False
            return 200, close, head, response.plan, mode == "chunked"
        if kind is JsonResponse:
            body = dumps_compact(response.body).encode("utf-8")
            headers.append(("Content-Type", "application/json"))
            headers += response.headers
            close = response.close or not keep_alive
        else:
            body = b""
            headers += response.headers
            close = not keep_alive
        status = response.status
        if close:
            headers.append(("Connection", "close"))
        elif request is not None and request.version == "HTTP/1.0":
            headers.append(("Connection", "keep-alive"))
        if status != 204 and status >= 200:  # RFC 9110 8.6: a 204 has no Content-Length
            headers.append(("Content-Length", str(len(body))))
        data = _head_bytes(status, headers) + b"\r\n"
        if not bodiless:
            data += body
        return status, close, data, _NOTHING, False
