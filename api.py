"""The vocabulary of routes: the parsed request, response values, route records, API errors and
the application state every route works on.

Job: let a route be a plain function ``(Request, App) -> Response`` that can be called and tested
without a socket. ``http_handler`` builds ``Request`` objects from bytes and turns response
values back into bytes; ``routes`` holds the table of ``Route`` records and dispatches; nothing
here does I/O. It has its own room because both of those sides, and every route module, share
these types and nothing else.

Errors are ``ApiError`` subclasses, each with an HTTP ``status`` and a Langbase ``code``; a route's
``error_style`` decides the body's shape (Langbase's ``{"error": {"code", "status", "message",
"docs"}}``, OpenAI's, Lobe Chat's or a plain ``{"error": message}``).
"""

from __future__ import annotations

import json
import math
import re
from email.message import Message
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import parse_qs

import formats
import pipes
from steps import Write
from threads import InvalidRequest, StoreBusy, StoreFull, ThreadExists, ThreadNotFound, check_thread_id

__all__ = [
    "SERVICE", "VERSION", "Request", "JsonResponse", "StreamResponse", "EmptyResponse", "Response",
    "DeferredResponse", "Route", "route", "App", "ApiError", "BadRequest", "Unauthorized", "UsageExceeded",
    "Forbidden", "NotFound",
    "MethodNotAllowed", "Conflict", "RequestTimeout", "LengthRequired", "PayloadTooLarge",
    "HeadersTooLarge", "ServiceUnavailable", "MockFault", "domain_error", "DOMAIN_ERRORS",
    "json_body", "object_body", "path_thread_id", "json_text_response",
]

VERSION = "0.2.0"
SERVICE = "langbase-mock"


class Request:
    """One parsed HTTP request.

    Fields: ``method`` (str, upper case; ``HEAD`` is answered by the ``GET`` route), ``path``
    (str, without the query), ``query`` (str, after ``?``, undecoded), ``version``
    (``HTTP/1.0`` or ``HTTP/1.1``), ``headers`` (``email.message.Message``: case-insensitive
    ``get``/``get_all``, values as sent), ``body`` (bytes, exactly ``Content-Length``),
    ``params`` (dict of path parameters, filled by routing), ``request_id`` (str, sent back as
    ``lb-request-id``), ``client`` (str ``host:port``), ``fixture`` (the name of the fixture
    that answered the run, ``"upstream"`` for the upstream's reply, else None; set by
    ``runs.prepare`` for the request journal).
    """

    __slots__ = ("method", "path", "query", "version", "headers", "body", "params", "request_id", "client",
                 "fixture")

    def __init__(self, method: str, path: str, *, query: str = "", version: str = "HTTP/1.1",
                 headers: Optional[Message] = None, body: bytes = b"", request_id: str = "",
                 client: str = "-") -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers if headers is not None else Message()
        self.body = body
        self.params: Dict[str, str] = {}
        self.request_id = request_id
        self.client = client
        self.fixture: Optional[str] = None

    def query_params(self) -> Dict[str, List[str]]:
        """The query string decoded: name -> list of values (blank values kept)."""
        return parse_qs(self.query, keep_blank_values=True)


class JsonResponse(NamedTuple):
    """Answer with ``body`` (any JSON value) as ``application/json``, ``status`` (int) and
    extra ``headers`` ((name, value) pairs). ``close`` ends the connection afterwards."""

    status: int
    body: Any
    headers: List[Tuple[str, str]] = []
    close: bool = False


class StreamResponse(NamedTuple):
    """Answer 200 with a body sent over time: ``plan`` yields ``steps`` (``Write`` without HTTP
    framing, ``Wait``, ``Close``). ``mode`` is the body framing (``chunked``, ``close``: ended by
    closing the connection, or ``buffered``: held back and sent whole with ``Content-Length``,
    as a buffering proxy does); ``content_type`` and ``headers`` go in the head."""

    plan: Iterator
    headers: List[Tuple[str, str]] = []
    mode: str = "chunked"
    content_type: str = "text/event-stream; charset=utf-8"


class EmptyResponse(NamedTuple):
    """Answer ``status`` with no body (``Content-Length: 0``) and extra ``headers``."""

    status: int
    headers: List[Tuple[str, str]] = []


class DeferredResponse(NamedTuple):
    """Answer later, without blocking the loop: the transport calls ``poll()`` from a loop timer
    every few milliseconds until it returns a response value (``JsonResponse``,
    ``StreamResponse`` or ``EmptyResponse``), which it then sends; ``cancel()`` is called
    instead if the connection closes or the server stops first. For work done on another
    thread (``upstream``): ``poll`` only reads what that thread finished."""

    poll: Callable[[], Optional["Response"]]
    cancel: Callable[[], None]


Response = Union[JsonResponse, StreamResponse, EmptyResponse, DeferredResponse]


def json_text_response(text: str) -> StreamResponse:
    """A 200 ``application/json`` answer whose body is ``text``, JSON already encoded (UTF-8
    on the wire), sent whole with a ``Content-Length``: a buffered ``StreamResponse`` of one
    write. For large replies built from kept or shared JSON text, which ``JsonResponse`` would
    encode value by value."""
    return StreamResponse(iter([Write(text.encode("utf-8"))]), mode="buffered", content_type="application/json")


class Route(NamedTuple):
    """One endpoint: ``method``, ``path`` (a template such as ``/v1/threads/{threadId}``;
    each ``{name}`` matches one non-empty path segment and arrives in ``Request.params``),
    ``pattern`` (the compiled template), ``function(request, app) -> Response``,
    ``error_style`` (``langbase``, ``openai``, ``lobe`` or ``plain``: see ``ApiError.body``)
    and ``auth`` (true: the ``Authorization`` bearer rules of ``--api-key`` apply)."""

    method: str
    path: str
    pattern: "re.Pattern[str]"
    function: Callable[["Request", "App"], Response]
    error_style: str
    auth: bool


def route(method: str, path: str, function: Callable[["Request", "App"], Response],
          error_style: str = "langbase", auth: bool = False) -> Route:
    """Build a ``Route`` from a path template (see ``Route``)."""
    regex = re.sub(r"\\\{([A-Za-z_]\w*)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
    return Route(method, path, re.compile(regex), function, error_style, auth)


class App:
    """The state routes work on, owned by the server.

    Fields: ``settings`` (``main.Settings``), ``store`` (``threads.ThreadStore``), ``runs``
    (``pipes.RunLog``), ``tokens`` (``formats.TokenBroker``), ``clock`` (wall-clock seconds,
    float), ``new_id`` (UUID string factory), ``created`` (int seconds: every chunk's
    ``created``, so replays are byte-identical), ``started`` (monotonic seconds at start) and
    ``load`` (callable returning ``{"open_streams": int, "connections": int}``: streams being
    sent and connections open, from the loop). Attached by the server: ``pipes``, ``traces``,
    ``memory``, ``fixtures``, ``journal``, ``upstream`` (None without ``--upstream``),
    ``upstream_results`` and ``worker`` (an executor that runs routes, with ``--db``; else None).
    """

    def __init__(self, settings: Any, store: Any, runs: Any, tokens: Any, clock: Callable[[], float],
                 new_id: Callable[[], str], started: float, load: Callable[[], Dict[str, int]]) -> None:
        self.settings = settings
        self.store = store
        self.runs = runs
        self.tokens = tokens
        self.clock = clock
        self.new_id = new_id
        self.created = int(clock())
        self.started = started
        self.load = load
        # Parts the server attaches when it builds its state (main.Server); None where a
        # test's App does without them.
        self.pipes: Any = None  # stores.PipeStore
        self.traces: Any = None  # stores.TraceLog
        self.memory: Any = None  # memory.MemoryStore
        self.fixtures: Any = None  # fixtures.FixtureSet
        self.journal: Any = None  # journal.Journal
        self.upstream: Any = None  # upstream.Upstream (--upstream)
        self.upstream_results: Dict[str, Any] = {}  # request id -> the upstream.Job answering it
        self.worker: Any = None  # concurrent.futures executor for routes (--db)


# --- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as JSON in the route's own shape.

    Class attributes ``status`` (int HTTP status) and ``code`` (Langbase error code string);
    ``message`` says what went wrong and what to do; ``headers`` are extra response headers
    ((name, value) pairs); ``close`` asks for the connection to be closed after the response
    (when the request's framing is lost); ``param`` names the offending field (OpenAI's
    ``param``).
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
            explicit = self.code if isinstance(self, MockFault) and self.explicit_code else None
            return formats.openai_error(self.status, self.message, self.param, explicit)
        if style == "lobe":
            return formats.lobe_error(self.status, self.code, self.message)
        if style == "plain":
            return {"error": self.message}
        return pipes.error_envelope(self.status, self.code, self.message)


class BadRequest(ApiError):
    """400 ``BAD_REQUEST``: malformed JSON, wrong types, invalid messages, a malformed head."""

    status, code = 400, "BAD_REQUEST"


class Unauthorized(ApiError):
    """401 ``UNAUTHORIZED``: a missing or wrong ``Authorization: Bearer`` key."""

    status, code = 401, "UNAUTHORIZED"


class UsageExceeded(ApiError):
    """403 ``USAGE_EXCEEDED``: a store bound was reached."""

    status, code = 403, "USAGE_EXCEEDED"


class Forbidden(ApiError):
    """403 ``FORBIDDEN``: a cross-site request a browser sent without asking first."""

    status, code = 403, "FORBIDDEN"


class NotFound(ApiError):
    """404 ``NOT_FOUND``: unknown route or unknown thread."""

    status, code = 404, "NOT_FOUND"


class MethodNotAllowed(ApiError):
    """405 ``METHOD_NOT_ALLOWED``; carries the ``Allow`` header."""

    status, code = 405, "METHOD_NOT_ALLOWED"


class RequestTimeout(ApiError):
    """408 ``REQUEST_TIMEOUT``: the request head or body did not arrive within its deadline."""

    status, code = 408, "REQUEST_TIMEOUT"


class Conflict(ApiError):
    """409 ``CONFLICT``: a thread or generation with that id exists."""

    status, code = 409, "CONFLICT"


class LengthRequired(ApiError):
    """411 ``LENGTH_REQUIRED``: a chunked request body (send ``Content-Length`` instead)."""

    status, code = 411, "LENGTH_REQUIRED"


class PayloadTooLarge(ApiError):
    """413 ``PAYLOAD_TOO_LARGE``: the body is over ``max_body_bytes``."""

    status, code = 413, "PAYLOAD_TOO_LARGE"


class HeadersTooLarge(ApiError):
    """431 ``REQUEST_HEADER_FIELDS_TOO_LARGE``: the request head is over its limit."""

    status, code = 431, "REQUEST_HEADER_FIELDS_TOO_LARGE"


class ServiceUnavailable(ApiError):
    """503 ``SERVICE_UNAVAILABLE``: the server is at its connection cap, or its ``--db`` file
    stayed locked by another process."""

    status, code = 503, "SERVICE_UNAVAILABLE"


class MockFault(ApiError):
    """The error a scenario's ``fault=http_error`` asks for: any ``status`` and ``code``;
    ``explicit_code`` (set by ``fault_code``) shows the code in OpenAI's body too."""

    def __init__(self, status: int, code: str, message: str, headers: Iterable[Tuple[str, str]],
                 explicit_code: bool = False) -> None:
        super().__init__(message, headers=headers)
        self.status, self.code = status, code
        self.explicit_code = explicit_code


DOMAIN_ERRORS = (InvalidRequest, ThreadNotFound, ThreadExists, StoreFull, StoreBusy)
"""The ``threads`` errors routes let through; ``domain_error`` maps each to its API error."""


def domain_error(exc: Exception) -> ApiError:
    """Map a ``threads`` domain error to its API error (the one table of that mapping).

    Raises ``TypeError`` for anything that is not one of ``DOMAIN_ERRORS``."""
    if isinstance(exc, InvalidRequest):
        return BadRequest(exc.message, param=exc.param)
    if isinstance(exc, ThreadNotFound):
        return NotFound("Thread %r not found." % exc.thread_id)
    if isinstance(exc, ThreadExists):
        return Conflict("A thread with id %r already exists." % exc.thread_id)
    if isinstance(exc, StoreFull):
        return UsageExceeded(str(exc))
    if isinstance(exc, StoreBusy):
        return ServiceUnavailable(str(exc), headers=[("Retry-After", "1")])
    raise TypeError("not a domain error: %r" % (exc,))


# --- request bodies -------------------------------------------------------------------------


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a request body."""


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON" % name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("the number %s is too large for a 64-bit float" % text[:20])
    return value


def _too_deep(value: Any, limit: int) -> bool:
    """True if ``value`` nests arrays and objects deeper than ``limit`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if type(item) is dict:
            stack.extend((v, depth + 1) for v in item.values() if type(v) in (dict, list))
        elif type(item) is list:
            stack.extend((v, depth + 1) for v in item if type(v) in (dict, list))
    return False


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


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
"""Reads request bodies: NaN, Infinity and numbers that overflow a float are not JSON to it."""


def json_body(request: Request) -> Any:
    """The body as JSON (``{}`` when empty). Raises ``BadRequest`` for bytes that are not
    UTF-8 or not JSON (``NaN``, ``Infinity`` and numbers such as ``1e999`` that overflow a
    float included), nested deeper than ``MAX_JSON_DEPTH``, or holding a ``\\uD800``-style
    escape of half a surrogate pair, which no response could carry back as UTF-8."""
    body = request.body
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("Request body is not valid UTF-8 (byte %d)." % exc.start) from None
    try:
        # json.loads only for its message about a byte order mark: with keyword arguments it
        # would build a decoder per call.
        value = _DECODER.decode(text) if text[:1] != "\ufeff" else json.loads(text)
    except ValueError as exc:
        raise BadRequest("Request body is not valid JSON: %s." % exc) from None
    except RecursionError:  # nested past what the parser itself can follow
        raise BadRequest("Request body nests arrays and objects more than %d deep." % MAX_JSON_DEPTH) from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH):
        raise BadRequest("Request body nests arrays and objects more than %d deep." % MAX_JSON_DEPTH)
    if "\\u" in text:  # only an escape can make a lone surrogate, which UTF-8 cannot carry
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("Request body holds a lone UTF-16 surrogate escape (such as \\ud800); "
                             "send whole characters or pairs.") from None
    return value


def object_body(request: Request) -> dict:
    """The body as a JSON object. Raises ``BadRequest`` for anything else."""
    value = json_body(request)
    if not isinstance(value, dict):
        raise BadRequest("Request body must be a JSON object, not %s." % _json_type(value))
    return value


def path_thread_id(value: str) -> str:
    """A thread id from the path; one that cannot exist is a ``ThreadNotFound``."""
    try:
        return check_thread_id(value)
    except InvalidRequest:
        raise ThreadNotFound(value) from None
