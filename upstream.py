"""A live upstream: replies fetched from a real OpenAI-compatible endpoint, and recorded.

Job: for a run that no fixture answers, ask ``--upstream`` (OpenAI itself, a local Ollama's
``/v1``, or another mock) with ``POST {upstream}/chat/completions`` and ``"stream": true``, on a
worker thread with ``http.client``, and turn what it streamed into a ``fixtures.Fixture``: the
exact text of each chunk, their boundaries, the wait before each (``delays``), or the tool
calls. The run then goes through the normal path with that fixture, so the reply is served in
whichever wire format the client asked for, with threads, CORS and scenarios applied; with
``--record DIR`` the same fixture is written to a file that ``--fixtures DIR`` replays. It has
its own room because it is the only code that waits on the network, and it must never do so on
the event loop: the loop only polls a finished flag (``Job.done``) from a timer.

Failures become ``UpstreamError`` (an ``api.ApiError``, so the client gets them in its own
error shape): connection refused (502 ``BAD_GATEWAY``), an upstream HTTP error (its status
passed on, with its message), an answer that is not HTTP, a stream that ends before
``data: [DONE]`` or whose chunks are not OpenAI's (502), and an upstream slower than its
deadline (504 ``GATEWAY_TIMEOUT``). The key sent upstream comes from
the environment (``LB_MOCK_UPSTREAM_KEY``); it is never logged, written or sent back.

A streamed run on a route that serves one reply (``/v1/pipes/run``, ``/v1/agent/run``,
``/v1/chat/completions``, ``/api/chat``, ``/api/stream``, an ``EventSource`` route on its
first connection) is served live once the upstream answers 200: each text piece goes out as
it arrives (``LiveReply``), and a failure after that becomes the format's in-band error
event. The other runs (JSON answers, an ``EventSource`` resuming after ``Last-Event-ID``,
token streams shared by subscribers) start when the upstream's reply is complete, and then
its chunks go out with their original waits.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import fixtures
import pipes
from api import ApiError
from steps import Wait
from threads import InvalidRequest

__all__ = ["Upstream", "Job", "LiveReply", "UpstreamError", "UpstreamPending", "request_body", "parse_url", "MAX_JOBS",
           "MAX_REPLY_BYTES", "TOOL_CALLS_IN_TEXT"]

log = logging.getLogger(__name__)

MAX_JOBS = 32
"""Most upstream requests in flight at once; beyond it a run is answered 503."""
MAX_REPLY_BYTES = 8 * 1024 * 1024
"""Most bytes read from one upstream response."""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class UpstreamError(ApiError):
    """The upstream failed: ``status`` and ``code`` per case (see the module docstring)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class UpstreamPending(Exception):
    """Raised by ``runs.prepare`` when a run's reply must first come from the upstream:
    ``job`` is the ``Job`` fetching it. ``routes.dispatch`` answers with an
    ``api.DeferredResponse`` that runs the route again once the upstream has answered (its
    stream can then be served live), or, with ``whole`` true (a run that needs the whole
    reply), once the job is done."""

    def __init__(self, job: "Job", whole: bool = False) -> None:
        super().__init__("waiting for the upstream")
        self.job = job
        self.whole = whole


def parse_url(url: str) -> Tuple[str, str, int, str]:
    """``(scheme, host, port, base path without a trailing /)`` of an ``http``/``https`` URL.
    Raises ``ValueError`` for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the upstream must be an http:// or https:// URL, such as http://127.0.0.1:11434/v1")
    if parts.query or parts.fragment or parts.username:
        raise ValueError("the upstream URL must have no query, fragment or user name")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def request_body(request: pipes.RunRequest, model: str) -> dict:
    """The OpenAI ``chat/completions`` body sent upstream: ``model`` (a ``provider:`` prefix
    dropped), ``messages`` (role, content, and ``name``/``tool_call_id``/``tool_calls`` when
    set), ``tools`` and ``tool_choice`` when given, and ``"stream": true``."""
    messages = []
    for m in request.messages:
        out: Dict[str, Any] = {"role": m["role"], "content": m["content"]}
        for key in ("name", "tool_call_id"):
            if m.get(key):
                out[key] = m[key]
        if m.get("tool_calls"):
            out["tool_calls"] = m["tool_calls"]
        messages.append(out)
    body: Dict[str, Any] = {"model": model.split(":", 1)[1] if ":" in model else model,
                            "messages": messages, "stream": True}
    if request.tools:
        body["tools"] = request.tools
    if request.tool_choice in ("auto", "required", "none"):
        body["tool_choice"] = request.tool_choice
    elif request.tool_choice is not None:
        body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice}}
    return body


class Job:
    """One upstream exchange, run by ``run()`` on a worker thread. ``answered`` (a
    ``threading.Event``) is set once the upstream answered 200 and its stream begins;
    ``pieces`` (list of str) grows by each text piece as it arrives; ``done`` is set when
    ``result`` holds a ``fixtures.Fixture`` (the whole reply) or an ``UpstreamError``;
    ``cancel()`` asks the worker to stop reading (the client left). Other threads only read
    ``pieces`` (by index and length) and the events."""

    def __init__(self, upstream: "Upstream", body: dict, user: str, tool_result: bool) -> None:
        self.upstream = upstream
        self.body = body
        self.user = user
        self.tool_result = tool_result
        self.answered = threading.Event()
        self.done = threading.Event()
        self.cancelled = False
        self.pieces: List[str] = []
        self.result: Any = None
        self._callbacks: List[Callable[["Job"], None]] = []
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Stop at the next read; the result is dropped."""
        self.cancelled = True

    def add_done_callback(self, callback: Callable[["Job"], None]) -> None:
        """Call ``callback(self)`` once ``result`` is set: at once if it is, else on the
        job's thread when it is."""
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def run(self) -> None:
        """Fetch, parse, record; never raises (errors become ``result``)."""
        try:
            self.result = self._fetch()
            if self.upstream.record_dir and not self.cancelled:
                self.upstream.write_record(self.result)
        except UpstreamError as exc:
            self.result = exc
        except Exception as exc:  # a bug, or an upstream speaking nonsense: answer, log
            log.exception("upstream exchange failed")
            self.result = UpstreamError(502, "BAD_GATEWAY", "The upstream exchange failed: %s." % type(exc).__name__)
        finally:
            self.upstream.release()
            with self._lock:
                self.done.set()
                callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:
                    log.exception("a callback of an upstream exchange failed")

    def _fetch(self) -> fixtures.Fixture:
        up = self.upstream
        deadline = time.monotonic() + up.timeout
        where = "%s://%s:%d" % (up.scheme, up.host, up.port)
        if up.tls is not None:
            conn: http.client.HTTPConnection = _HTTPSConnection(up.host, up.port, up.timeout, up.tls)
        else:
            conn = http.client.HTTPConnection(up.host, up.port, timeout=up.timeout)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if up.key:
            headers["Authorization"] = "Bearer " + up.key
        started = time.monotonic()
        response: Optional[http.client.HTTPResponse] = None
        try:
            try:
                conn.request("POST", up.base + "/chat/completions", json.dumps(self.body).encode("utf-8"), headers)
                response = conn.getresponse()
            except (socket.timeout, TimeoutError):
                raise UpstreamError(504, "GATEWAY_TIMEOUT", "The upstream %s did not answer within %g s "
                                    "(--upstream-timeout)." % (where, up.timeout)) from None
            except OSError as exc:
                raise UpstreamError(502, "BAD_GATEWAY", "Cannot reach the upstream %s: %s."
                                    % (where, exc.strerror or exc)) from None
            except http.client.HTTPException as exc:  # a status line or headers that are not HTTP
                raise UpstreamError(502, "BAD_GATEWAY", "The upstream %s did not answer in HTTP/1.x (%s)."
                                    % (where, type(exc).__name__)) from None
            if response.status != 200:
                raise self._http_error(response)
            self.answered.set()
            return self._read_stream(response, deadline, started, where)
        finally:
            if response is not None:  # with Connection: close the response holds the socket
                response.close()
            conn.close()

    def _http_error(self, response: http.client.HTTPResponse) -> UpstreamError:
        raw = response.read(65536)
        message = ""
        try:
            error = json.loads(raw).get("error")
            message = error.get("message") if isinstance(error, dict) else str(error or "")
        except (ValueError, AttributeError):
            message = raw[:200].decode("utf-8", "replace")
        status = response.status if 400 <= response.status <= 599 else 502
        code = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                429: "RATE_LIMITED", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}.get(
                    status, "BAD_GATEWAY" if status >= 500 else "BAD_REQUEST")
        return UpstreamError(status, code, "The upstream answered HTTP %d: %s" % (response.status, message[:500]))

    def _read_stream(self, response: http.client.HTTPResponse, deadline: float, started: float,
                     where: str) -> fixtures.Fixture:
        pieces = self.pieces
        delays: List[float] = []
        calls: Dict[int, Dict[str, str]] = {}
        last = started
        data: List[str] = []
        total = 0
        chunks = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.cancelled:
                raise UpstreamError(504, "GATEWAY_TIMEOUT", "The upstream %s did not finish its reply within "
                                    "%g s (--upstream-timeout)." % (where, self.upstream.timeout))
            if response.fp is not None and getattr(response.fp, "raw", None) is not None:
                try:
                    response.fp.raw._sock.settimeout(left)  # one read may not outlast the deadline
                except AttributeError:
                    pass
            try:
                line = response.readline(65537)
            except (socket.timeout, TimeoutError):
                continue
            except (http.client.IncompleteRead, OSError):
                line = b""
            total += len(line)
            if total > MAX_REPLY_BYTES:
                raise UpstreamError(502, "BAD_GATEWAY", "The upstream reply is over %d bytes." % MAX_REPLY_BYTES)
            if not line:
                raise UpstreamError(502, "BAD_GATEWAY", "The upstream %s closed the stream after %d chunks, "
                                    "before data: [DONE]." % (where, chunks))
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith("data:"):
                data.append(text[5:][1:] if text[5:6] == " " else text[5:])
                continue
            if text or not data:
                continue  # other fields, comments, blank lines between events
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                break
            chunks += 1
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise UpstreamError(502, "BAD_GATEWAY", "The upstream sent an event that is not JSON.") from None
            if isinstance(chunk, dict) and "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise UpstreamError(502, "BAD_GATEWAY", "The upstream sent an error mid-stream: %s" % message)
            choices = chunk.get("choices") if isinstance(chunk, dict) else None
            delta = (choices[0].get("delta") if isinstance(choices, list) and choices
                     and isinstance(choices[0], dict) else None)
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                now = time.monotonic()
                pieces.append(content)
                delays.append(round(now - last, 3))
                last = now
            for index, call_id, name, arguments in _call_deltas(delta.get("tool_calls")):
                slot = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = call_id or slot["id"]
                slot["name"] = name or slot["name"]
                slot["arguments"] += arguments
        return self._fixture(pieces, delays, calls)

    def _fixture(self, pieces: List[str], delays: List[float], calls: Dict[int, Dict[str, str]]) -> fixtures.Fixture:
        match: Dict[str, Any] = {"user": self.user, "tool_result": self.tool_result}
        if calls:
            response: Dict[str, Any] = {"tool_calls": [
                {"id": c["id"] or None, "name": c["name"], "arguments": c["arguments"] or "{}"}
                for _, c in sorted(calls.items())]}
            for call in response["tool_calls"]:
                if call["id"] is None:
                    del call["id"]
        elif pieces:
            response = {"chunks": pieces, "delays": [min(d, fixtures.MAX_DELAY_SECONDS) for d in delays]}
        else:
            response = {"text": ""}
        item = {"name": "upstream", "match": match, "response": response}
        try:
            return fixtures.parse_text(json.dumps(item), "request body")[0]._replace(source="upstream")
        except fixtures.FixtureError as exc:
            raise UpstreamError(502, "BAD_GATEWAY", "The upstream reply cannot be served: %s" % exc.reason) from None


def _call_deltas(value: Any) -> List[Tuple[int, str, str, str]]:
    """``(index, id, name, arguments piece)`` of each item of a chunk's ``delta.tool_calls``
    (OpenAI's streamed tool call pieces; absent fields as ``""``). Raises ``UpstreamError``
    (502) for anything else: not an array of objects, an ``index`` that is not a whole number
    from 0, a ``function`` that is not an object, or a field that is not a string."""
    if value is None:
        return []
    bad = UpstreamError(502, "BAD_GATEWAY", "The upstream sent delta.tool_calls that are not OpenAI "
                        "tool call pieces ({index, id?, function: {name?, arguments?}}).")
    if not isinstance(value, list):
        raise bad
    out = []
    for call in value:
        fn = call.get("function") if isinstance(call, dict) else None
        index = call.get("index", 0) if isinstance(call, dict) else None
        if (not isinstance(index, int) or isinstance(index, bool) or index < 0
                or not isinstance(fn if fn is not None else {}, dict)):
            raise bad
        fields = (call.get("id"), (fn or {}).get("name"), (fn or {}).get("arguments"))
        if not all(field is None or isinstance(field, str) for field in fields):
            raise bad
        out.append((index,) + tuple(field or "" for field in fields))
    return out


POLL_SECONDS = 0.005
"""How often a live stream looks for the upstream's next piece (seconds): the most it adds to
a piece's way from the upstream to the client."""

CLOSED_EARLY = (499, "CLIENT_CLOSED_REQUEST", "The stream was closed (the client left, or a fault cut it) "
                "before the upstream finished; the upstream exchange was cancelled.")
"""``LiveReply.error`` when the stream ended before the upstream did."""

STOPPING = (503, "SERVICE_UNAVAILABLE", "The mock server is stopping; the upstream's reply was cut short.")
"""``LiveReply.error`` (and its in-band error event) when the server stops mid-stream."""


TOOL_CALLS_IN_TEXT = ("The upstream answered with tool calls, which this wire format cannot carry "
                      "(it streams text only).")
"""``UpstreamError`` message (502) for a reply of tool calls on a text-only route
(``runs.prepare(..., text_only=True)``)."""


class LiveReply:
    """A reply the upstream is still streaming, served while it arrives: a streamed run on a
    route that takes one (``runs.prepare(..., live=True)``) once the upstream answered 200.

    ``id`` is the completion id (``pipes.completion_id``, the one the whole reply and a replay
    of its recording have), so chunks are named before the text is known. ``events()`` yields
    ``pipes`` chat events as the job's text pieces arrive (``Start("")``, then a ``TextDelta``
    per piece), a ``steps.Wait(POLL_SECONDS)`` whenever nothing new is in, and once the
    upstream is done the rest of the whole reply (``pipes.scripted_reply`` of the job's
    fixture: its tool calls, then ``Finish`` with usage), so the stream has the bytes that a
    replay of the recording has. A reply of tool calls streams once it is whole (the scenario
    cuts their arguments, as on replay). An upstream failure ends the events with
    ``pipes.Failed``: the client gets its format's in-band error event.

    When the reply ends, ``reply`` is the whole ``pipes.Reply`` (None if it did not finish),
    ``error`` is ``(status, code, message)`` or None, ``pieces`` the text pieces that arrived;
    then each ``on_end`` callback is called once with this object. When the server stops
    (``Upstream.stop``) a reply still waiting ends with ``STOPPING``. A stream closed before the
    upstream finished (the client left, or the response was dropped unsent) cancels the job
    and ends with ``CLOSED_EARLY``; with ``finish_on_close`` (the run's fault cuts the stream
    on purpose) the job goes on, and the reply ends when the upstream is done, on the job's
    thread, as it would have on replay. Callbacks must not hold the run that holds this
    object, so that a dropped response frees (and so ends) it at once. With ``text_only`` (a
    format that carries text only) a reply of tool calls ends with a 502 (``TOOL_CALLS_IN_TEXT``).
    """

    def __init__(self, job: Job, request: pipes.RunRequest, seed: int, digest: str,
                 split: Callable[[str], List[str]], max_chars: int, finish_on_close: bool = False,
                 text_only: bool = False) -> None:
        self.job = job
        self.id = pipes.completion_id(seed, digest)
        self.reply: Optional[pipes.Reply] = None
        self.error: Optional[Tuple[int, str, str]] = None
        self.pieces: List[str] = job.pieces
        self._request, self._seed, self._digest, self._split, self._max_chars = request, seed, digest, split, max_chars
        self._finish_on_close = finish_on_close
        self._text_only = text_only
        self._callbacks: List[Callable[["LiveReply"], None]] = []
        self._ended = False

    def on_end(self, callback: Callable[["LiveReply"], None]) -> None:
        """Call ``callback(self)`` once the reply has ended (whole, failed or cut short)."""
        self._callbacks.append(callback)

    def _end(self, reply: Optional[pipes.Reply], error: Optional[Tuple[int, str, str]]) -> None:
        if self._ended:
            return
        self._ended = True
        self.reply, self.error = reply, error
        for callback in self._callbacks:
            callback(self)

    def _end_with_result(self, job: Job) -> None:
        """End with the finished job's reply (or its error)."""
        result = job.result
        if isinstance(result, UpstreamError):
            self._end(None, (result.status, result.code, str(result)))
            return
        if self._text_only and result.calls:
            self._end(None, (502, "BAD_GATEWAY", TOOL_CALLS_IN_TEXT))
            return
        try:
            reply = pipes.scripted_reply(self._request, self._seed, self._digest, self._split, result.text,
                                         result.chunks, result.calls, self._max_chars)
        except InvalidRequest as exc:
            self._end(None, (502, "BAD_GATEWAY", "The upstream reply cannot be served: %s" % exc))
            return
        self._end(reply, None)

    def _closed_early(self) -> None:
        if self._ended:
            return
        if self._finish_on_close:
            self.job.add_done_callback(self._end_with_result)
        else:
            self.job.cancel()
            self._end(None, CLOSED_EARLY)

    def __del__(self) -> None:
        self._closed_early()  # a response dropped before its stream began (the client left)

    def events(self) -> Iterator[Any]:
        """The chat events as they arrive (see the class docstring)."""
        job, pieces = self.job, self.job.pieces
        poll = Wait(POLL_SECONDS)
        sent = 0
        try:
            while True:
                if sent < len(pieces):
                    if sent == 0:
                        yield pipes.Start("")
                    yield pipes.TextDelta(pieces[sent])
                    sent += 1
                elif job.done.is_set():
                    if sent == len(pieces):  # nothing is added once done is set
                        break
                elif job.upstream.stopping.is_set():  # the loop skips waits now: end at once
                    job.cancel()
                    self._end(None, STOPPING)
                    yield pipes.Failed(*STOPPING)
                    return
                else:
                    yield poll
            self._end_with_result(job)
            if self.reply is None:
                yield pipes.Failed(*self.error)
                return
            for event in pipes.reply_events(self.reply):
                if sent == 0 or type(event) in (pipes.ToolCallDelta, pipes.Finish):
                    yield event  # after streamed text, only what was not sent yet
        finally:
            self._closed_early()


class _HTTPSConnection(http.client.HTTPConnection):
    """What ``http.client.HTTPSConnection(host, port, timeout=..., context=tls)`` does: TCP,
    then the TLS handshake, which checks the certificate against ``host`` (also sent for SNI).
    Our own because the server program imports ``http.client`` without ``ssl`` (see main.py),
    which leaves that module without its ``HTTPSConnection``."""

    default_port = 443

    def __init__(self, host: str, port: int, timeout: float, tls: Any) -> None:
        super().__init__(host, port, timeout=timeout)
        self._tls = tls

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


def _tls_context() -> Any:
    """The ``ssl.SSLContext`` for an https upstream: ``ssl.create_default_context()``, which
    verifies the certificate and the host name against the system's CAs (or ``SSL_CERT_FILE``
    / ``SSL_CERT_DIR``). ``ssl`` is imported here, not at the top: it loads OpenSSL, about
    4 MB of memory that a server without an https upstream does not need."""
    import ssl
    return ssl.create_default_context()


class Upstream:
    """The ``--upstream`` endpoint: ``url`` (base, e.g. ``http://127.0.0.1:11434/v1``), ``key``
    (sent as bearer key, or None), ``timeout`` (seconds for a whole exchange), ``record_dir``
    (where ``--record`` writes one fixture file per exchange, or None). ``start(...)`` begins
    a ``Job`` on a new worker thread, at most ``MAX_JOBS`` at once. ``tls`` is the
    ``_tls_context()`` every exchange with an https upstream uses (made once, here), or None."""

    def __init__(self, url: str, key: Optional[str] = None, timeout: float = 60.0,
                 record_dir: Optional[str] = None) -> None:
        self.scheme, self.host, self.port, self.base = parse_url(url)
        self.tls = _tls_context() if self.scheme == "https" else None
        self.key = key
        self.timeout = timeout
        self.record_dir = record_dir
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_JOBS)
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return "Upstream(%s://%s:%d%s)" % (self.scheme, self.host, self.port, self.base)

    def start(self, request: pipes.RunRequest, model: str) -> Job:
        """Begin fetching the reply for ``request``. Raises ``UpstreamError`` 503 when
        ``MAX_JOBS`` exchanges are in flight."""
        if not self._slots.acquire(blocking=False):
            raise UpstreamError(503, "SERVICE_UNAVAILABLE", "%d upstream requests are in flight; try again."
                                % MAX_JOBS)
        last_role = request.messages[-1]["role"] if request.messages else None
        job = Job(self, request_body(request, model), fixtures.last_user_text(request), last_role == "tool")
        threading.Thread(target=job.run, name="upstream", daemon=True).start()
        return job

    def stop(self) -> None:
        """The server is stopping: a live reply still waiting for the upstream ends at once
        with an in-band 503 (``STOPPING``), so shutdown is not held up by a model."""
        self.stopping.set()

    def release(self) -> None:
        self._slots.release()

    def write_record(self, fixture: fixtures.Fixture) -> str:
        """Write ``fixture`` as ``{"fixtures": [...]}`` to a new file in ``record_dir`` (named
        after the time, a counter and the user message); returns its path. Holds only the
        match (the last user message, whether a tool result came) and the reply: no header,
        no key, no other part of the request."""
        with self._lock:
            number = next(self._count)
        stem = _SAFE_NAME.sub("-", fixture.match.get("user", ""))[:40].strip("-") or "reply"
        name = "%s-%04d-%s.json" % (time.strftime("%Y%m%d-%H%M%S"), number, stem)
        path = os.path.join(self.record_dir, name)
        item = {"name": name[:-5], "match": fixture.match, "response": fixture.response}
        text = json.dumps({"fixtures": [item]}, ensure_ascii=False, indent=2) + "\n"
        os.makedirs(self.record_dir, exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)  # a reload never sees half a file
        log.info("recorded an upstream exchange in %s", path)
        return path
