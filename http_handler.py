"""HTTP: routing, request parsing and validation, errors, CORS and auth for the mock server.

Job: turn one HTTP/1.1 request into one response, and nothing else. This is the only module that
knows about status codes, headers and request bodies. It reads the request (body bounded by
``max_body_bytes``), validates it, calls ``threads`` and ``pipes``, and either answers with JSON
or sends the stream's headers and hands the socket plus the stream's plan (wrapped in HTTP
chunked framing) to the pacer, then returns at once.

Errors are ``ApiError`` subclasses, each with a ``status`` and a Langbase ``code``, rendered in
one place as the Langbase error envelope ``{"error": {"code", "status", "message", "docs"}}``
(Langbase API, "Error responses"). Domain errors from ``threads`` are mapped in one table.

It reads its configuration from the server object (``server.settings``, ``server.store``,
``server.pacer``, ``server.clock``, ``server.new_id``, ``server.started``); it never imports
``main``.
"""

from __future__ import annotations

import dataclasses
import http
import json
import random
import logging
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import formats
import pipes
import scenario
from sse import dumps_compact
from threads import (
    InvalidRequest,
    StoreFull,
    ThreadExists,
    ThreadNotFound,
    check_thread_id,
    new_uuid4,
    parse_messages,
    parse_metadata,
)

__all__ = [
    "VERSION",
    "SERVICE",
    "ApiError",
    "BadRequest",
    "Unauthorized",
    "NotFound",
    "MethodNotAllowed",
    "Conflict",
    "LengthRequired",
    "PayloadTooLarge",
    "UsageExceeded",
    "resolve",
    "chunked",
    "Handler",
]

VERSION = "0.1.0"
SERVICE = "langbase-mock"

log = logging.getLogger(__name__)
access_log = logging.getLogger("access")

CORS_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = ", ".join(
    ["Content-Type", "Authorization", "LB-LLM-Key"]
    + ["X-Mock-" + "-".join(w.capitalize() for w in name.split("_")) for name in scenario.SETTINGS]
)
CORS_EXPOSE_HEADERS = "lb-thread-id, lb-request-id, lb-mock-seed, lb-mock-run-id"


# --- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as JSON in the Langbase envelope.

    Class attributes ``status`` (int HTTP status) and ``code`` (Langbase error code string);
    ``message`` says what went wrong and what to do; ``headers`` are extra response headers
    (name, value) pairs; ``close`` asks for the connection to be closed after the response
    (when the request body could not be read, so the connection's framing is lost).
    """

    status = 500
    code = "INTERNAL_SERVER_ERROR"

    def __init__(
        self, message: str, *, headers: Iterable[Tuple[str, str]] = (), close: bool = False,
        param: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = list(headers)
        self.close = close
        self.param = param

    def body(self, style: str = "langbase") -> dict:
        """The error body in a route's own shape: ``langbase`` (``{"error": {"code", "status",
        "message", "docs"}}``, ``pipes.error_envelope``), ``openai`` (``{"error": {"message",
        "type", "param", "code"}}``), ``lobe`` (``{"body", "errorType"}``) or ``plain``
        (``{"error": "<message>"}``)."""
        if style == "openai":
            return formats.openai_error(self.status, self.message, self.param,
                                        self.code if isinstance(self, MockFault) and self.explicit_code else None)
        if style == "lobe":
            return formats.lobe_error(self.status, self.code, self.message)
        if style == "plain":
            return {"error": self.message}
        return pipes.error_envelope(self.status, self.code, self.message)


class BadRequest(ApiError):
    """400 ``BAD_REQUEST``: malformed JSON, wrong types, invalid messages."""

    status, code = 400, "BAD_REQUEST"


class Unauthorized(ApiError):
    """401 ``UNAUTHORIZED``: a missing or wrong ``Authorization: Bearer`` key."""

    status, code = 401, "UNAUTHORIZED"


class UsageExceeded(ApiError):
    """403 ``USAGE_EXCEEDED``: a store bound was reached."""

    status, code = 403, "USAGE_EXCEEDED"


class NotFound(ApiError):
    """404 ``NOT_FOUND``: unknown route or unknown thread."""

    status, code = 404, "NOT_FOUND"


class MethodNotAllowed(ApiError):
    """405 ``METHOD_NOT_ALLOWED``; carries the ``Allow`` header."""

    status, code = 405, "METHOD_NOT_ALLOWED"


class Conflict(ApiError):
    """409 ``CONFLICT``: a thread with that id exists."""

    status, code = 409, "CONFLICT"


class LengthRequired(ApiError):
    """411 ``LENGTH_REQUIRED``: a request body without ``Content-Length``."""

    status, code = 411, "LENGTH_REQUIRED"


class PayloadTooLarge(ApiError):
    """413 ``PAYLOAD_TOO_LARGE``: the body is over ``max_body_bytes``."""

    status, code = 413, "PAYLOAD_TOO_LARGE"


class MockFault(ApiError):
    """The error a scenario's ``fault=http_error`` asks for: any status and code."""

    def __init__(self, status: int, code: str, message: str, headers: Iterable[Tuple[str, str]],
                 explicit_code: bool = False) -> None:
        super().__init__(message, headers=headers)
        self.status, self.code = status, code
        self.explicit_code = explicit_code  # set by fault_code, so OpenAI's body shows it too


def _domain_error(exc: Exception) -> ApiError:
    """Map a ``threads`` domain error to its API error (the one table of that mapping)."""
    if isinstance(exc, InvalidRequest):
        return BadRequest(exc.message, param=exc.param)
    if isinstance(exc, ThreadNotFound):
        return NotFound("Thread %r not found." % exc.thread_id)
    if isinstance(exc, ThreadExists):
        return Conflict("A thread with id %r already exists." % exc.thread_id)
    if isinstance(exc, StoreFull):
        return UsageExceeded(str(exc))
    raise TypeError("not a domain error: %r" % (exc,))


_DOMAIN_ERRORS = (InvalidRequest, ThreadNotFound, ThreadExists, StoreFull)


# --- routing --------------------------------------------------------------------------------

_THREAD = r"(?P<thread_id>[^/]+)"
ROUTES: List[Tuple[str, "re.Pattern[str]", str]] = [
    (method, re.compile(pattern), name)
    for method, pattern, name in [
        ("GET", r"/", "status"),
        ("GET", r"/health", "status"),
        ("POST", r"/v1/pipes/run", "pipes_run"),
        ("POST", r"/v1/threads", "threads_create"),
        ("GET", r"/v1/threads/" + _THREAD, "threads_get"),
        ("POST", r"/v1/threads/" + _THREAD, "threads_update"),
        ("DELETE", r"/v1/threads/" + _THREAD, "threads_delete"),
        ("GET", r"/v1/threads/" + _THREAD + r"/messages", "messages_list"),
        ("POST", r"/v1/threads/" + _THREAD + r"/messages", "messages_append"),
        ("POST", r"/v1/chat/completions", "chat_completions"),
        ("GET", r"/v1/models", "models"),
        ("GET", r"/v1/models/(?P<model>[^/]+)", "model"),
        ("POST", r"/api/chat", "lobe_chat"),
        ("POST", r"/api/stream", "lifecycle"),
        ("GET", r"/api/events", "events"),
        ("POST", r"/api/generate", "generate"),
        ("GET", r"/api/stream/(?P<session_id>[^/]+)/(?P<message_id>[^/]+)", "token_stream"),
        ("GET", r"/mock/settings", "mock_settings"),
        ("GET", r"/mock/runs", "mock_runs"),
        ("GET", r"/mock/runs/(?P<run_id>[^/]+)", "mock_run"),
    ]
]
"""The route table: ``(method, path pattern, handler name)``; handler ``h`` is ``Handler.route_h``."""


def resolve(method: str, path: str) -> Tuple[str, Dict[str, str]]:
    """Find the route for ``method`` and ``path`` (no query string).

    Returns ``(handler name, path parameters)``.

    Raises:
        NotFound: no route has this path.
        MethodNotAllowed: the path exists for other methods (``Allow`` header lists them).
    """
    allowed = []
    for route_method, pattern, name in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if route_method == method:
                return name, match.groupdict()
            allowed.append(route_method)
    if allowed:
        allow = ", ".join(sorted(set(allowed)) + ["OPTIONS"])
        raise MethodNotAllowed(
            "Method %s is not allowed on %s; use %s." % (method, path, allow),
            headers=[("Allow", allow)],
        )
    raise NotFound("No route for %s %s; see GET / for the endpoints." % (method, path))


# --- HTTP body framing (sans-I/O plan transformation) --------------------------------------


def chunked(plan: Iterable[pipes.Step]) -> Iterator[pipes.Step]:
    """Wrap each ``Write`` of a plan in one HTTP/1.1 chunk and end with the ``0`` chunk.

    ``Write(b"abc")`` becomes ``Write(b"3\\r\\nabc\\r\\n")``; ``Wait`` steps pass through; after
    the last step comes ``Write(b"0\\r\\n\\r\\n")`` (RFC 9112, section 7.1). Empty writes are
    dropped, since an empty chunk would end the body. A ``Close`` step passes through and ends
    the plan: the body is then cut off without its terminator.
    """
    write = pipes.Write
    for step in plan:
        kind = type(step)
        if kind is write:
            if step.data:
                yield write(b"%x\r\n%s\r\n" % (len(step.data), step.data))
        else:
            yield step
            if kind is pipes.Close:
                return
    yield write(b"0\r\n\r\n")


def http_body(
    plan: Iterable[pipes.Step], head: Callable[[List[Tuple[str, str]]], bytes], mode: str
) -> Iterator[pipes.Step]:
    """Frame a stream's body as HTTP/1.1 and put the response head in front.

    ``head(extra_headers)`` returns the status line and headers (bytes, ending with the blank
    line). ``mode``: ``chunked`` (``Transfer-Encoding: chunked``, see ``chunked``), ``close``
    (the body ends when the connection closes), or ``buffered`` (what a buffering proxy does:
    nothing until the end, then head, ``Content-Length`` and the whole body in one write after
    all the waits; a ``Close`` then means nothing is sent at all).
    """
    if mode == "buffered":
        parts, waited = [], 0.0
        for step in plan:
            kind = type(step)
            if kind is pipes.Write:
                parts.append(step.data)
            elif kind is pipes.Wait:
                waited += step.seconds
            else:
                yield pipes.Wait(waited)
                yield step
                return
        data = b"".join(parts)
        yield pipes.Wait(waited)
        yield pipes.Write(head([("Content-Length", str(len(data)))]) + data)
    elif mode == "chunked":
        yield pipes.Write(head([("Transfer-Encoding", "chunked")]))
        yield from chunked(plan)
    else:
        yield pipes.Write(head([]))
        yield from plan


# --- the handler ----------------------------------------------------------------------------

_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,18}")
_BEARER_RE = re.compile(r"Bearer ([^\s]+)")
_UNSET_TOKENS = ("undefined", "null", "None")


class Handler(BaseHTTPRequestHandler):
    """One connection's requests (HTTP/1.1 keep-alive), answered per the Langbase API.

    Set on the server object: ``settings`` (see ``main.Settings``), ``park(sock, address)``,
    ``store``
    (``threads.ThreadStore``), ``pacer`` (``pacer.Pacer``), ``clock`` (seconds, float),
    ``new_id`` (UUID string factory) and ``started`` (monotonic seconds at start).

    Once a stream is handed to the pacer, or an idle keep-alive connection is parked, the
    socket is no longer the handler's: ``detached`` is then true and the server must not close
    it.
    """

    protocol_version = "HTTP/1.1"
    server_version = "%s/%s" % (SERVICE, VERSION)
    sys_version = ""
    disable_nagle_algorithm = True
    detached = False
    requests_seen = 0
    error_style = "langbase"

    # -- plumbing ----------------------------------------------------------------------------

    def setup(self) -> None:
        self.timeout = self.server.settings.request_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        # Timeouts of idle keep-alive connections and malformed request lines land here.
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if access_log.isEnabledFor(logging.INFO):
            status = code.value if isinstance(code, http.HTTPStatus) else code
            access_log.info('%s "%s" %s', self.address_string(), self.requestline, status)

    def version_string(self) -> str:
        return self.server_version

    def address_string(self) -> str:
        return "%s:%s" % self.client_address[:2]

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """JSON replacement for the stdlib's HTML error page (request-line and header errors)."""
        try:
            name = http.HTTPStatus(code).name
        except ValueError:
            name = "ERROR"
        error = ApiError(message or explain or name.replace("_", " ").capitalize())
        error.status, error.code = code, name
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # an unparsable request line: still send headers
        self._send_api_error(error)

    def handle_one_request(self) -> None:
        """Answer one request, after the pacer's due frames (``Pacer.yield_to_streams``).

        On a keep-alive connection with no next request waiting yet, park the connection with
        the server instead of blocking a handler thread on it; it comes back to a handler
        thread when its next request arrives.
        """
        if self.requests_seen and not self._request_waiting():
            self.server.park(self.connection, self.client_address)
            self.detached = True
            self.close_connection = True
            return
        self.requests_seen += 1
        self.server.pacer.yield_to_streams()
        super().handle_one_request()

    def _request_waiting(self) -> bool:
        """True if bytes of a next request are buffered or readable now (never blocks)."""
        self.connection.setblocking(False)
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return True  # let the normal path meet the error
        finally:
            self.connection.settimeout(self.timeout)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def do_OPTIONS(self) -> None:
        """CORS preflight: 204 with the allowed methods and headers, for any path."""
        try:
            self._read_body()
        except ApiError as exc:
            self._send_api_error(exc)
            return
        self.send_response(204)
        self._send_common_headers()
        self.send_header("Access-Control-Allow-Methods", CORS_ALLOW_METHODS)
        self.send_header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    # -- request flow: read body → auth → route → handler ------------------------------------

    def _handle(self) -> None:
        self.request_id = new_uuid4()
        path = urlsplit(self.path).path
        self.error_style = error_style(path)
        try:
            body = self._read_body()
            if path.startswith("/v1/") or path == "/v1":
                self._check_auth()
            name, params = resolve(self.command, path)
            getattr(self, "route_" + name)(body, **params)
        except ApiError as exc:
            self._send_api_error(exc)
        except _DOMAIN_ERRORS as exc:
            self._send_api_error(_domain_error(exc))
        except (ConnectionError, TimeoutError):
            raise
        except Exception:
            log.exception("unexpected error answering %s", self.requestline)
            self.close_connection = True
            self._send_api_error(
                ApiError("The mock server failed unexpectedly; see its log for the traceback.")
            )

    def _read_body(self) -> bytes:
        """Read exactly ``Content-Length`` bytes (bounded), so keep-alive framing stays intact."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise LengthRequired(
                "Chunked request bodies are not supported; send the body with a Content-Length.",
                close=True,
            )
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return b""  # RFC 9112 6.3: no Content-Length and no Transfer-Encoding means no body
        if len(set(values)) != 1 or not _CONTENT_LENGTH_RE.fullmatch(values[0].strip()):
            raise BadRequest(
                "Invalid Content-Length header %r; send one decimal byte count."
                % ",".join(values)[:40],
                close=True,
            )
        length = int(values[0])
        limit = self.server.settings.max_body_bytes
        if length > limit:
            raise PayloadTooLarge(
                "Request body is %d bytes; the limit is %d (see --max-body-bytes)." % (length, limit),
                close=True,
            )
        body = self.rfile.read(length)
        if len(body) < length:
            raise BadRequest("The request body ended before Content-Length bytes.", close=True)
        return body

    def _json_body(self, body: bytes) -> Any:
        if not body.strip():
            return {}
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("Request body is not valid UTF-8 (byte %d)." % exc.start) from None
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise BadRequest("Request body is not valid JSON: %s." % exc) from None

    def _object_body(self, body: bytes) -> dict:
        value = self._json_body(body)
        if not isinstance(value, dict):
            raise BadRequest("Request body must be a JSON object, not %s." % _json_type(value))
        return value

    def _check_auth(self) -> None:
        header = self.headers.get("Authorization")
        key = self.server.settings.api_key
        if header is None:
            if key is None:
                return
            raise Unauthorized("Missing Authorization header; send 'Authorization: Bearer <key>'.")
        match = _BEARER_RE.fullmatch(header.strip())
        if not match:
            raise Unauthorized("Malformed Authorization header; expected 'Bearer <key>'.")
        token = match.group(1)
        if token in _UNSET_TOKENS:
            raise Unauthorized(
                "Authorization carries the token %r: your client's API key is not set." % token
            )
        if key is not None and token != key:
            raise Unauthorized("Invalid API key.")

    # -- responses ---------------------------------------------------------------------------

    def _common_headers(self) -> List[Tuple[str, str]]:
        """CORS headers (``Access-Control-Allow-Origin`` only for an allowed origin, never an
        unlisted ``Origin`` echoed back) and ``lb-request-id``."""
        out = []
        origins = self.server.settings.cors_origins
        if origins == ("*",):
            out.append(("Access-Control-Allow-Origin", "*"))
        else:
            headers = getattr(self, "headers", None)
            origin = headers.get("Origin") if headers is not None else None
            if origin in origins:
                out.append(("Access-Control-Allow-Origin", origin))
            out.append(("Vary", "Origin"))
        out.append(("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS))
        request_id = getattr(self, "request_id", None)
        if request_id:
            out.append(("lb-request-id", request_id))
            if self.error_style == "openai":
                out.append(("x-request-id", request_id))
        return out

    def _send_common_headers(self) -> None:
        for name, value in self._common_headers():
            self.send_header(name, value)

    def _send_json(self, status: int, obj: Any, headers: Iterable[Tuple[str, str]] = ()) -> None:
        data = dumps_compact(obj).encode("utf-8")
        self.send_response(status)
        self._send_common_headers()
        self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_api_error(self, error: ApiError) -> None:
        if error.close:
            self.close_connection = True
        headers = list(error.headers)
        if self.error_style == "openai" and isinstance(error, MockFault):
            # The same request draws the same fault again, so an SDK retry cannot succeed.
            headers.append(("x-should-retry", "false"))
        self._send_json(error.status, error.body(self.error_style), headers)

    def _send_stream(
        self,
        plan: Iterable[pipes.Step],
        headers: Iterable[Tuple[str, str]],
        mode: str = "chunked",
        content_type: str = "text/event-stream; charset=utf-8",
    ) -> None:
        """Hand the socket and the stream's whole plan, response head included, to the pacer.

        ``mode`` is the HTTP body framing (see ``http_body``); an HTTP/1.0 client always gets
        a close-delimited body, since it has no chunked encoding.
        """
        fixed = [("Content-Type", content_type), ("Cache-Control", "no-cache"),
                 ("X-Accel-Buffering", "no")] + list(headers) + [("Connection", "close")]
        self.log_request(200)

        def head(extra: List[Tuple[str, str]]) -> bytes:
            lines = ["HTTP/1.1 200 OK", "Server: " + self.version_string(),
                     "Date: " + self.date_time_string()]
            lines += ["%s: %s" % kv for kv in self._common_headers() + fixed + extra]
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        if self.request_version == "HTTP/1.0":
            mode = "close"
        self.close_connection = True
        self.detached = True
        self.server.pacer.submit(self.connection, http_body(plan, head, mode))

    # -- routes ------------------------------------------------------------------------------

    def route_status(self, body: bytes) -> None:
        """``GET /`` and ``GET /health``: service, version, uptime, threads, open streams."""
        server = self.server
        status = {
            "status": "healthy",
            "service": SERVICE,
            "version": VERSION,
            "uptime_seconds": round(time.monotonic() - server.started, 3),
            "threads": len(server.store),
            "open_streams": server.pacer.open_streams,
            "generations": len(server.tokens),
        }
        if urlsplit(self.path).path == "/":
            status["endpoints"] = ["%s %s" % (m, p.pattern) for m, p, _ in ROUTES]
        self._send_json(200, status)

    # -- one run, in any wire format -----------------------------------------------------------

    def _prepare_run(self, request: pipes.RunRequest, mock: Any, layers: Iterable[dict] = (),
                     wire: str = "langbase", model: Optional[str] = None) -> "_Run":
        """Resolve the scenario (server flags < ``X-Mock-*`` headers < ``layers`` < the body's
        ``mock``), choose the reply, draw the fault, and record the run's ground truth.

        Raises ``MockFault`` for ``fault=http_error`` (recorded, nothing stored) and
        ``BadRequest`` for a stream planned to last too long."""
        server = self.server
        settings = server.settings
        sc = scenario.build(
            settings.seed, settings.delay, dict(settings.mock),
            scenario.header_layer(self.headers.items()), *layers, scenario.body_layer(mock),
        )
        digest = pipes.request_digest(request)
        rng = pipes.seeded_random(sc.seed, digest, "scenario")
        replies = scenario.replies_for(sc, settings.replies)
        reply = pipes.choose_reply(request, replies, sc.seed, scenario.splitter(sc, rng), digest)
        fault = scenario.fault_fires(sc, rng)
        seconds = scenario.planned_seconds(sc, len(reply.pieces) + 2)
        if request.stream and seconds > scenario.MAX_STREAM_SECONDS:
            raise BadRequest(
                "This stream would last up to %.0f s; the limit is %.0f s. Lower delay, ttft, "
                "jitter or stall, or use a larger chunk_size." % (seconds, scenario.MAX_STREAM_SECONDS)
            )
        run_id = server.new_id()
        headers = [("lb-mock-seed", str(sc.seed)), ("lb-mock-run-id", run_id)]
        record = {
            "run_id": run_id, "format": wire, "seed": sc.seed, "stream": request.stream,
            "thread_id": None, "id": reply.id, "created": server.created,
            "model": model or settings.model, "text": reply.text, "deltas": list(reply.pieces),
            "tool_calls": pipes.reply_message(reply)["tool_calls"],
            "usage": reply.usage.as_dict(), "finish_reason": reply.finish_reason,
            "fault": sc.fault if fault else None, "scenario": sc,  # as_dict() when read
        }
        server.runs.add(run_id, record)
        if fault and sc.fault == "http_error":
            raise MockFault(sc.fault_status, sc.error_code,
                            "Mock fault: HTTP %d (fault=http_error)." % sc.fault_status,
                            headers + _fault_headers(sc), explicit_code=sc.fault_code is not None)
        return _Run(request, sc, rng, reply, fault, run_id, record, headers)

    def _stream_run(self, run: "_Run", encoder: Any, events: Iterator[pipes.Event],
                    waits: Optional[Iterator[float]] = None,
                    headers: Iterable[Tuple[str, str]] = ()) -> None:
        """Shape ``events`` with the run's scenario, encode them with ``encoder``, and send."""
        sc = run.scenario
        shaped = scenario.shape(events, encoder, sc, run.rng, run.fault, waits)
        self._send_stream(scenario.reframe(shaped, sc, run.rng), list(headers) + run.headers,
                          sc.body, sc.content_type)

    def _store_run(self, run: "_Run", thread_id: Optional[str], create_missing: bool) -> str:
        thread_id = self.server.store.record_run(
            thread_id, run.request.messages + [pipes.reply_message(run.reply)], create_missing)
        run.record["thread_id"] = thread_id
        return thread_id

    # -- routes: Langbase --------------------------------------------------------------------

    def route_pipes_run(self, body: bytes) -> None:
        """``POST /v1/pipes/run``: a reply as JSON or as an SSE stream, shaped by the scenario,
        stored in a thread, and recorded as ground truth under its run id."""
        data = self._object_body(body)
        run = self._prepare_run(pipes.parse_run_request(data), data.get("mock"))
        thread_id = self._store_run(run, run.request.thread_id, not self.server.settings.strict_threads)
        headers = [("lb-thread-id", thread_id)]
        encoder = pipes.ChunkEncoder(run.reply.id, self.server.created, self.server.settings.model)
        if run.request.stream:
            self._stream_run(run, encoder, pipes.reply_events(run.reply), headers=headers)
        else:
            self._send_json(200, pipes.completion_body(run.reply, encoder), headers + run.headers)

    # -- routes: OpenAI Chat Completions ----------------------------------------------------

    def route_chat_completions(self, body: bytes) -> None:
        """``POST /v1/chat/completions``: OpenAI's ``chat.completion`` or its chunk stream."""
        data = self._object_body(body)
        request, model, include_usage = formats.parse_chat_completion(data)
        run = self._prepare_run(request, data.get("mock"), wire="openai", model=model)
        encoder = formats.OpenAIChunkEncoder(run.reply.id, self.server.created, model, include_usage)
        if request.stream:
            self._stream_run(run, encoder, pipes.reply_events(run.reply))
        else:
            self._send_json(200, encoder.completion(run.reply), run.headers)

    def _model_object(self) -> dict:
        return {"id": self.server.settings.model, "object": "model",
                "created": self.server.created, "owned_by": SERVICE}

    def route_models(self, body: bytes) -> None:
        """``GET /v1/models``: ``{"object": "list", "data": [model objects]}`` with the mock's
        model (``{"id", "object": "model", "created", "owned_by"}``)."""
        self._send_json(200, {"object": "list", "data": [self._model_object()]})

    def route_model(self, body: bytes, model: str) -> None:
        """``GET /v1/models/{model}``: the model object, or 404 for another name."""
        if model != self.server.settings.model:
            raise NotFound("The model %r does not exist; this mock serves %r (see --model)."
                           % (model, self.server.settings.model))
        self._send_json(200, self._model_object())

    # -- routes: Lobe Chat, message lifecycle, EventSource, token streams --------------------

    def route_lobe_chat(self, body: bytes) -> None:
        """``POST /api/chat``: Lobe Chat's named-event stream."""
        data = self._object_body(body)
        request, model = formats.parse_lobe_chat(data)
        request = request._replace(stream=True)
        run = self._prepare_run(request, data.get("mock"), wire="lobe", model=model)
        encoder = formats.LobeEncoder(run.reply.id)
        self._stream_run(run, encoder, encoder.events(run.reply))

    def route_lifecycle(self, body: bytes) -> None:
        """``POST /api/stream``: message-lifecycle events; with ``chatId`` the user messages
        and the whole reply are stored in that thread."""
        data = self._object_body(body)
        request, chat_id, model = formats.parse_lifecycle(data)
        request = request._replace(stream=True, tools=[], tool_choice=None)
        run = self._prepare_run(request, data.get("mock"), wire="lifecycle", model=model)
        if chat_id is not None:
            users = [m for m in request.messages if m["role"] == "user"]
            run.record["thread_id"] = self.server.store.record_run(
                chat_id, users + [pipes.reply_message(run.reply)], create_missing=True)
        encoder = formats.LifecycleEncoder("msg_" + run.reply.id[len("chatcmpl-"):])
        self._stream_run(run, encoder, encoder.events(run.reply))

    def route_events(self, body: bytes) -> None:
        """``GET /api/events?prompt=…``: OpenAI chunks for ``EventSource``, with ``id:`` on
        every event and ``retry:``; ``Last-Event-ID`` resumes after that event, and a stream
        already delivered in full answers 204 so the browser stops reconnecting. Other query
        parameters are scenario settings."""
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        prompt = query.pop("prompt", [None])[-1]
        if not prompt:
            raise BadRequest("Add ?prompt=<text> to the URL.", param="prompt")
        after = _last_event_id(self.headers.get("Last-Event-ID") or query.pop("lastEventId", [None])[-1])
        query.pop("lastEventId", None)
        layer = scenario.parse_layer({k: v[-1] for k, v in query.items()}, "query string", from_text=True)
        request = pipes.parse_run_request({"messages": [{"role": "user", "content": prompt}], "stream": True})
        run = self._prepare_run(request, None, layers=[layer], wire="eventsource")
        encoder = formats.EventSourceEncoder(run.reply.id, self.server.created, self.server.settings.model,
                                             EVENTSOURCE_RETRY_MS, after)
        if after >= encoder.total(run.reply):
            self.send_response(204)
            self._send_common_headers()
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        run = run._replace(scenario=_resumed(run.scenario, after))
        self._stream_run(run, encoder, encoder.events(run.reply))

    def route_generate(self, body: bytes) -> None:
        """``POST /api/generate``: start a generation for ``(sessionId, chatMessageId)`` in the
        token buffer and return at once (202)."""
        data = self._object_body(body)
        request, key = formats.parse_generate(data)
        request = request._replace(stream=True, tools=[], tool_choice=None)
        run = self._prepare_run(request, data.get("mock"), wire="tokens")
        sc = run.scenario
        try:
            self.server.tokens.start(key, run.reply.pieces, sc.ttft, sc.interval, run.run_id, sc, run.fault)
        except formats.GenerationExists:
            raise Conflict("A generation for session %r, message %r is already running." % key) from None
        except OverflowError:
            raise UsageExceeded("The token buffer is full (%d generations); wait for old ones to "
                                "expire." % self.server.tokens.limit) from None
        self._send_json(202, {"sessionId": key[0], "chatMessageId": key[1], "status": "started",
                              "stream": "/api/stream/%s/%s" % key, "runId": run.run_id}, run.headers)

    def route_token_stream(self, body: bytes, session_id: str, message_id: str) -> None:
        """``GET /api/stream/{sessionId}/{chatMessageId}``: the generation's tokens, from the
        start (or after ``Last-Event-ID``), paced by when each token is produced."""
        tokens = self.server.tokens
        generation = tokens.get((session_id, message_id))
        if generation is None:
            raise NotFound("No generation for session %r, message %r (never started, or expired "
                           "%d s after it finished)." % (session_id, message_id, tokens.ttl))
        after = min(_last_event_id(self.headers.get("Last-Event-ID")), len(generation.tokens))
        sc = _resumed(generation.scenario, after)
        run = _Run(None, sc, random.Random("%s:%d" % (generation.run_id, after)), None,
                   generation.fault, generation.run_id, {},
                   [("lb-mock-seed", str(sc.seed)), ("lb-mock-run-id", generation.run_id)])
        events = (pipes.TextDelta(t) for t in generation.tokens[after:])
        self._stream_run(run, formats.TokenEncoder(after), events,
                         waits=iter(tokens.schedule(generation, after)))

    def route_mock_settings(self, body: bytes) -> None:
        """``GET /mock/settings``: every scenario setting with its type, default and allowed values."""
        self._send_json(200, {
            name: {"type": s.kind, "default": s.default, "allowed": s.allowed(), "help": s.help}
            for name, s in scenario.SETTINGS.items()
        })

    def route_mock_runs(self, body: bytes) -> None:
        """``GET /mock/runs``: ``{"runs": [run ids, newest first]}``."""
        self._send_json(200, {"runs": self.server.runs.recent()})

    def route_mock_run(self, body: bytes, run_id: str) -> None:
        """``GET /mock/runs/{runId}``: what that run's stream encoded (ground truth)."""
        record = self.server.runs.get(run_id)
        if record is None:
            raise NotFound("No run %r; the server keeps the last %d runs." % (run_id, self.server.runs.limit))
        self._send_json(200, dict(record, scenario=record["scenario"].as_dict()))

    def route_threads_create(self, body: bytes) -> None:
        """``POST /v1/threads``: ``{threadId?, metadata?, messages?}`` → thread object."""
        data = self._object_body(body)
        thread_id = data.get("threadId")
        if thread_id is not None:
            check_thread_id(thread_id)
        metadata = parse_metadata(data["metadata"]) if data.get("metadata") is not None else {}
        messages = parse_messages(data["messages"], thread=True) if data.get("messages") is not None else []
        self._send_json(200, self.server.store.create(thread_id, metadata, messages))

    def route_threads_get(self, body: bytes, thread_id: str) -> None:
        """``GET /v1/threads/{threadId}`` → thread object."""
        self._send_json(200, self.server.store.get(_path_thread_id(thread_id)))

    def route_threads_update(self, body: bytes, thread_id: str) -> None:
        """``POST /v1/threads/{threadId}`` with ``{metadata}`` → updated thread object."""
        data = self._object_body(body)
        if "metadata" not in data:
            raise BadRequest("metadata is required (an object of string values).")
        metadata = parse_metadata(data["metadata"])
        self._send_json(200, self.server.store.update(_path_thread_id(thread_id), metadata))

    def route_threads_delete(self, body: bytes, thread_id: str) -> None:
        """``DELETE /v1/threads/{threadId}`` → ``{"success": true}``."""
        self.server.store.delete(_path_thread_id(thread_id))
        self._send_json(200, {"success": True})

    def route_messages_append(self, body: bytes, thread_id: str) -> None:
        """``POST /v1/threads/{threadId}/messages`` with a bare array or ``{messages}``."""
        # An empty body appends nothing: the Python SDK sends no body for an empty list.
        data = self._json_body(body) if body.strip() else []
        if isinstance(data, dict):
            if "messages" not in data:
                raise BadRequest("Send a JSON array of messages, or an object {\"messages\": [...]}.")
            data = data["messages"]
        messages = parse_messages(data, thread=True)
        self._send_json(200, self.server.store.append(_path_thread_id(thread_id), messages))

    def route_messages_list(self, body: bytes, thread_id: str) -> None:
        """``GET /v1/threads/{threadId}/messages`` → message objects, oldest first."""
        self._send_json(200, self.server.store.list_messages(_path_thread_id(thread_id)))


def _fault_headers(sc: scenario.Scenario) -> List[Tuple[str, str]]:
    """``Retry-After`` and rate-limit headers for a 429 or 503 fault."""
    if sc.fault_status not in (429, 503):
        return []
    out = [("Retry-After", str(sc.retry_after))]
    if sc.fault_status == 429:
        out += [("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", str(sc.retry_after))]
    return out


class _Run(NamedTuple):
    """A prepared run: ``request``, resolved ``scenario``, its seeded ``rng``, the ``reply``,
    whether the ``fault`` fires, ``run_id``, the ground-truth ``record`` and the ``headers``
    every response of the run carries (``lb-mock-seed``, ``lb-mock-run-id``)."""

    request: Any
    scenario: scenario.Scenario
    rng: random.Random
    reply: Any
    fault: bool
    run_id: str
    record: dict
    headers: List[Tuple[str, str]]


EVENTSOURCE_RETRY_MS = 1000
"""The ``retry:`` hint (milliseconds) on ``GET /api/events`` streams."""


def _resumed(sc: scenario.Scenario, after: int) -> scenario.Scenario:
    """The scenario for a stream resumed after ``after`` events. A fault point counted from the
    stream's start stays where it was. A connection fault (``disconnect``, ``stall``,
    ``corrupt``) already behind the resumed stream does not happen again, or a reconnecting
    client would meet it forever; an ``error_frame`` is a failure of the reply itself, so a
    client resuming past it gets the error at once."""
    if not after:
        return sc
    if sc.fault in ("disconnect", "stall", "corrupt") and after >= sc.fault_after:
        return dataclasses.replace(sc, fault="none", ttft=0.0)
    return dataclasses.replace(sc, fault_after=max(0, sc.fault_after - after), ttft=0.0)


def _last_event_id(value: Optional[str]) -> int:
    """The event id a reconnecting client sent (``Last-Event-ID``), or 0 for none.

    Raises ``BadRequest`` for anything but an id these streams send (1 to 9 digits)."""
    if not value:
        return 0
    if not value.isdigit() or len(value) > 9:
        raise BadRequest("Last-Event-ID must be an event id this stream sent (1, 2, ...).")
    return int(value)


def error_style(path: str) -> str:
    """Which error body shape a path answers with (see ``ApiError.body``)."""
    if path in ("/v1/chat/completions", "/v1/models") or path.startswith("/v1/models/"):
        return "openai"
    if path == "/api/chat":
        return "lobe"
    if path.startswith("/api/"):
        return "plain"
    return "langbase"


def _path_thread_id(value: str) -> str:
    try:
        return check_thread_id(value)
    except InvalidRequest:
        raise ThreadNotFound(value) from None


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON" % name)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
