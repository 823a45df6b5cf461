"""The other wire formats chat frontends are written against, each one small encoder over the
chat events of ``pipes`` (``Start``, ``TextDelta``, ``ToolCallDelta``, ``Finish``).

Job: render the same reply, with the same scenario shaping and faults, as
- OpenAI Chat Completions (``chat.completion.chunk`` SSE, ``stream_options.include_usage``,
  OpenAI's error shape),
- Lobe Chat's stream protocol (named ``text``/``tool_calls``/``stop``/``usage``/``error`` events,
  each with an ``id:``),
- message-lifecycle events (``message-start``, ``message-chunk``, ``message-complete``, ``error``),
- a browser ``EventSource`` stream (JSON object data messages, or OpenAI chunks, with ``id:``
  and ``retry:``, resumable),
- resumable token streams (``data: {"token": ...}`` … ``data: __END__``) fed from a bounded
  in-process buffer of generations (``TokenBroker``) that many subscribers can read.

Every encoder has the interface ``scenario.shape`` uses: ``events(reply)`` (the events it
renders), ``encode(event) -> bytes`` (one LF-framed SSE event, or several), ``error(status, code,
message) -> bytes`` (the in-band error event) and ``done`` (the end sentinel event, or None).
It has its own room so that a new format is one encoder here plus a route in ``http_handler``.

Sans-I/O: no sockets, no sleeping; clocks come in as arguments. Must not import
``http.server`` or ``http_handler``.
"""

from __future__ import annotations

import collections
import datetime
import json
import threading
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from pipes import (
    ChunkEncoder,
    Event,
    Finish,
    Reply,
    RunRequest,
    Start,
    TextDelta,
    ToolCallDelta,
    parse_run_request,
    reply_events,
)
from sse import dumps_compact, encode_event
from stores import MAX_MODEL_CHARS
from threads import ROLES, InvalidRequest, check_thread_id, parse_messages

__all__ = [
    "OPENAI_ERROR_TYPES",
    "openai_error",
    "lobe_error",
    "OpenAIChunkEncoder",
    "LobeEncoder",
    "LifecycleEncoder",
    "EventMessageEncoder",
    "EventSourceEncoder",
    "TokenEncoder",
    "Generation",
    "TokenBroker",
    "GenerationExists",
    "OPENAI_ROLES",
    "parse_chat_completion",
    "parse_lobe_chat",
    "parse_lifecycle",
    "parse_generate",
    "check_client_id",
    "timestamp_seconds",
]

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    411: "invalid_request_error",
    413: "invalid_request_error",
    422: "unprocessable_entity_error",
    429: "requests",
}
"""OpenAI error ``type`` by HTTP status, as OpenAI sends them (a 401 is an
``invalid_request_error`` with code ``invalid_api_key``; a rate limit's type names the limit,
``requests``); any 5xx is ``server_error``."""


_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def openai_error(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``. ``code`` is
    OpenAI's for 401 (``invalid_api_key``) and 429 (``rate_limit_exceeded``), the lower-case
    form of an explicit mock ``fault_code``, else null, as OpenAI sends for most errors."""
    kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": code.lower() if code else _OPENAI_CODES.get(status)}}


_LOBE_ERROR_TYPES = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "ContentNotFound",
    405: "MethodNotAllowed", 429: "TooManyRequests", 500: "InternalServerError",
    502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout",
}


def lobe_error(status: int, code: str, message: str) -> dict:
    """Lobe Chat's error body: ``{"body": {"code", "message", "status"}, "errorType"}``, where
    ``errorType`` is Lobe's name for the HTTP status (``BadRequest``, ``TooManyRequests``, …)."""
    return {"body": {"code": code, "message": message, "status": status},
            "errorType": _LOBE_ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequest")}


class OpenAIChunkEncoder(ChunkEncoder):
    """OpenAI Chat Completions stream (``POST /v1/chat/completions``, ``stream: true``).

    The same ``chat.completion.chunk`` frames as Langbase's, except for usage: none by
    default; with ``include_usage`` (``stream_options.include_usage``) every chunk carries
    ``"usage": null`` and one more chunk with ``"choices": []`` and the usage follows the
    ``finish_reason`` chunk, before ``data: [DONE]``. The in-band error uses OpenAI's shape.
    """

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._include_usage = include_usage
        super().__init__(completion_id, created, model)

    def _template_key(self) -> Any:
        return self._include_usage

    def _chunk(self, delta: dict, finish_reason: Optional[str]) -> dict:
        chunk = super()._chunk(delta, finish_reason)
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def encode(self, event: Event) -> bytes:
        if type(event) is not Finish:
            return super().encode(event)
        frame = encode_event(dumps_compact(self._chunk({}, event.finish_reason)))
        if self._include_usage:
            last = dict(self._head)
            last["choices"] = []
            last["usage"] = event.usage.as_dict()
            frame += encode_event(dumps_compact(last))
        return frame

    def error(self, status: int, code: str, message: str) -> bytes:
        # The same body an HTTP error of this status has (OpenAI's own codes, not Langbase's).
        return encode_event(dumps_compact(openai_error(status, message)))


class LobeEncoder:
    """Lobe Chat's stream protocol (``POST /api/chat``): ``id: <completion id>``,
    ``event: <type>``, ``data: <JSON>`` per event, where type and data are ``text`` (the JSON
    string of the delta), ``tool_calls`` (``[{"function": {"arguments", "name"}, "id", "index",
    "type": "function"}]``), ``stop`` (the finish reason), ``usage`` (``{"inputTextTokens",
    "outputTextTokens", "totalInputTokens", "totalOutputTokens", "totalTokens"}``) and ``error``
    (``{"body", "message", "type"}``). No start event and no end sentinel.
    """

    done = None

    def __init__(self, completion_id: str) -> None:
        self._id = completion_id
        self._call_id: Optional[str] = None
        self._call_name: Optional[str] = None

    def events(self, reply: Reply) -> Iterator[Event]:
        """The reply's events without ``Start`` (Lobe has no start event)."""
        return (e for e in reply_events(reply) if type(e) is not Start)

    def _event(self, kind: str, data: Any) -> bytes:
        return encode_event(dumps_compact(data), event=kind, id=self._id)

    def encode(self, event: Event) -> bytes:
        if type(event) is TextDelta:
            return self._event("text", event.content)
        if type(event) is ToolCallDelta:
            if event.id is not None:
                self._call_id, self._call_name = event.id, event.name
            return self._event("tool_calls", [{
                "function": {"arguments": event.arguments,
                             "name": event.name if event.id is not None else None},
                "id": self._call_id, "index": event.index, "type": "function"}])
        if type(event) is Finish:
            usage = event.usage
            return self._event("stop", event.finish_reason) + self._event("usage", {
                "inputTextTokens": usage.prompt_tokens, "outputTextTokens": usage.completion_tokens,
                "totalInputTokens": usage.prompt_tokens, "totalOutputTokens": usage.completion_tokens,
                "totalTokens": usage.prompt_tokens + usage.completion_tokens})
        raise TypeError("Lobe Chat has no event for %r" % (event,))

    def error(self, status: int, code: str, message: str) -> bytes:
        return self._event("error", {"body": {"code": code, "message": message, "status": status},
                                     "message": message, "type": "ProviderBizError"})


class LifecycleEncoder:
    """Message-lifecycle events (``POST /api/stream``), each a named SSE event with JSON data:
    ``message-start`` ``{"messageId"}``, ``message-chunk`` ``{"messageId", "content", "done":
    false}``, ``message-complete`` ``{"messageId", "fullContent"}``, ``error`` ``{"message"}``.
    Text replies only."""

    done = None

    def __init__(self, message_id: str) -> None:
        self._message_id = message_id
        self._text: List[str] = []

    def events(self, reply: Reply) -> Iterator[Event]:
        return reply_events(reply)

    def encode(self, event: Event) -> bytes:
        if type(event) is TextDelta:
            self._text.append(event.content)
            data: Dict[str, Any] = {"messageId": self._message_id, "content": event.content, "done": False}
            return encode_event(dumps_compact(data), event="message-chunk")
        if type(event) is Start:
            return encode_event(dumps_compact({"messageId": self._message_id}), event="message-start")
        if type(event) is Finish:
            data = {"messageId": self._message_id, "fullContent": "".join(self._text)}
            return encode_event(dumps_compact(data), event="message-complete")
        raise TypeError("the message lifecycle has no event for %r" % (event,))

    def error(self, status: int, code: str, message: str) -> bytes:
        return encode_event(dumps_compact({"message": message, "code": code, "status": status}),
                            event="error")


class EventMessageEncoder:
    """Data messages as a JSON object each, for ``EventSource`` clients that ``JSON.parse``
    every ``event.data`` (``GET /events``, ``GET /hello``): ``{"event": "token", "data":
    "<text piece>"}`` per piece, then ``{"event": "finish", "data": "<finish_reason>", "usage":
    {"prompt_tokens", "completion_tokens", "total_tokens"}}``; no end sentinel (the server
    closes the stream). The in-band error is ``{"event": "error", "data": "<message>", "code",
    "status"}``. Text replies only."""

    done = None

    def events(self, reply: Reply) -> Iterator[Event]:
        """The reply's events without ``Start`` (the messages carry text from the first)."""
        return (e for e in reply_events(reply) if type(e) is not Start)

    def encode(self, event: Event) -> bytes:
        if type(event) is TextDelta:
            return encode_event(dumps_compact({"event": "token", "data": event.content}))
        if type(event) is Finish:
            return encode_event(dumps_compact({"event": "finish", "data": event.finish_reason,
                                               "usage": event.usage.as_dict()}))
        raise TypeError("EventSource data messages have no event for %r" % (event,))

    def error(self, status: int, code: str, message: str) -> bytes:
        return encode_event(dumps_compact({"event": "error", "data": message, "code": code, "status": status}))


class EventSourceEncoder:
    """A browser ``EventSource`` stream (``GET /events``, ``/hello``, ``/api/events``): the
    events of a ``payload`` encoder (``EventMessageEncoder``, or ``pipes.ChunkEncoder`` for
    OpenAI chunks ending in ``data: [DONE]``), each with an ``id:`` (1, 2, 3, …, the payload's
    end sentinel included) and the first one sent with ``retry:`` (milliseconds). The in-band
    error event has no id.

    ``after`` is the ``Last-Event-ID`` a reconnecting browser sent: ``events`` then skips the
    events up to it, so the stream resumes where it broke off. ``total`` is how many ids a
    full stream has: a browser that already has them all gets 204, which tells
    ``EventSource`` to stop reconnecting (WHATWG HTML, "Server-sent events").
    """

    def __init__(self, payload: Any, retry_ms: int, after: int) -> None:
        self._payload = payload
        self._retry_ms = retry_ms
        self._next_id = after + 1
        self._after = after
        self._first = True

    def events(self, reply: Reply) -> Iterator[Event]:
        events = self._payload.events(reply)
        for _ in range(self._after):
            next(events, None)
        return events

    def total(self, reply: Reply) -> int:
        """Ids in a full stream of ``reply``: its events and the end sentinel, if any."""
        return sum(1 for _ in self._payload.events(reply)) + (self._payload.done is not None)

    def _framed(self, frame: bytes) -> bytes:
        head = b"id: %d\n" % self._next_id
        if self._first:
            head += b"retry: %d\n" % self._retry_ms
            self._first = False
        self._next_id += 1
        return head + frame

    def encode(self, event: Event) -> bytes:
        return self._framed(self._payload.encode(event))

    def error(self, status: int, code: str, message: str) -> bytes:
        return self._payload.error(status, code, message)

    @property
    def done(self) -> Optional[bytes]:
        done = self._payload.done
        return None if done is None else self._framed(done)


class TokenEncoder:
    """Resumable token streams (``GET /api/stream/{sessionId}/{chatMessageId}``): one event
    per token, ``id: <n>`` (1, 2, …) and ``data: {"token": "..."}``; the end is
    ``data: __END__``; a failure is ``data: {"error": "..."}``. ``after`` skips tokens up to a
    ``Last-Event-ID``."""

    def __init__(self, after: int = 0) -> None:
        self._next_id = after + 1

    done = encode_event("__END__")

    def encode(self, event: Event) -> bytes:
        if type(event) is not TextDelta:
            raise TypeError("a token stream carries only text: %r" % (event,))
        frame = encode_event(dumps_compact({"token": event.content}), id=str(self._next_id))
        self._next_id += 1
        return frame

    def error(self, status: int, code: str, message: str) -> bytes:
        return encode_event(dumps_compact({"error": message}))


# --- request bodies ----------------------------------------------------------------------------

OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
"""Message roles the OpenAI Chat Completions API accepts."""


def _require_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def _optional_string(body: dict, key: str) -> Optional[str]:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidRequest("%s must be a non-empty string" % key, key)
    return value


def _optional_model(body: dict) -> Optional[str]:
    """``body["model"]``: None, or a non-empty string of at most ``stores.MAX_MODEL_CHARS``
    characters (it is repeated in every chunk, so every route has the same bound)."""
    value = _optional_string(body, "model")
    if value is not None and len(value) > MAX_MODEL_CHARS:
        raise InvalidRequest("model must be at most %d characters" % MAX_MODEL_CHARS, "model")
    return value


def parse_chat_completion(body: Any) -> Tuple[RunRequest, str, bool]:
    """Validate an OpenAI ``POST /v1/chat/completions`` body: ``model`` (required string),
    ``messages`` (required, non-empty; roles ``OPENAI_ROLES``), ``stream``,
    ``stream_options.include_usage`` (only with ``stream: true``), ``tools``, ``tool_choice``;
    other keys ignored. Returns ``(request, model, include_usage)``.

    Raises:
        InvalidRequest: naming the first bad field (OpenAI's ``param``).
    """
    body = _require_object(body)
    model = _optional_model(body)
    if model is None:
        raise InvalidRequest("you must provide a model parameter", "model")
    if not body.get("messages"):
        raise InvalidRequest("messages must be a non-empty array of message objects", "messages")
    request = parse_run_request(
        {k: body[k] for k in ("messages", "stream", "tools", "tool_choice") if k in body},
        roles=OPENAI_ROLES,
    )
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
            raise InvalidRequest("stream_options must be {\"include_usage\": boolean}", "stream_options")
        if not request.stream:
            raise InvalidRequest("stream_options is only allowed when stream is true", "stream_options")
        include_usage = options.get("include_usage", False)
    return request, model, include_usage


def parse_lobe_chat(body: Any) -> Tuple[RunRequest, Optional[str]]:
    """Validate a Lobe Chat ``POST /api/chat`` body ``{messages, model?, stream?, tools?}``
    (roles ``OPENAI_ROLES``). Returns ``(request, model)``. Raises ``InvalidRequest``."""
    body = _require_object(body)
    model = _optional_model(body)
    if "messages" not in body:
        raise InvalidRequest("messages is required", "messages")
    request = parse_run_request(
        {k: body[k] for k in ("messages", "stream", "tools", "tool_choice") if k in body},
        roles=OPENAI_ROLES,
    )
    return request, model


MAX_ID_CHARS = 256
"""The longest client-chosen id (a message ``id``, a ``sessionId`` or ``chatMessageId``)."""


def check_client_id(value: Any, param: str) -> str:
    """Return ``value`` if it is an acceptable client-chosen id: a non-empty string of at most
    ``MAX_ID_CHARS`` characters, with no ``/`` (so it fits one path segment) and no control
    character. Any other character is fine (``user@example.com``, ``msg 1``, ``ü``).

    Raises ``InvalidRequest`` naming ``param``."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest("%s must be a non-empty string" % param, param)
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequest("%s must be at most %d characters" % (param, MAX_ID_CHARS), param)
    if "/" in value or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise InvalidRequest("%s must not contain '/' or control characters" % param, param)
    return value


def timestamp_seconds(value: Any, param: str) -> int:
    """Unix seconds (int) of a client message ``timestamp``: an ISO 8601 string (what
    JavaScript's ``JSON.stringify(new Date())`` sends, ``2024-01-01T00:00:00.000Z``; no zone
    means UTC) or a number of milliseconds since 1970 (``Date.now()``).

    Raises ``InvalidRequest`` naming ``param``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value <= _MAX_TIMESTAMP_MS:
            return int(value // 1000)
    elif isinstance(value, str) and len(value) <= 64:
        text = value[:-1] + "+00:00" if value[-1:] in "Zz" and value else value
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            return int(moment.timestamp())
    raise InvalidRequest("%s must be an ISO 8601 date-time string or milliseconds since 1970" % param, param)


_MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def parse_lifecycle(body: Any) -> Tuple[RunRequest, Optional[str], str, List[dict]]:
    """Validate a message-lifecycle ``POST /api/stream`` body ``{messages: [{id?, role,
    content, timestamp?}], model, chatId?, systemPrompt?}``; ``systemPrompt`` becomes a first
    system message. Returns ``(request, chat_id, model, users)``: ``users`` are the user
    messages to store, as ``threads.parse_messages`` dicts plus ``id`` (the client's, or None)
    and ``created_at`` (Unix seconds from ``timestamp``, or None), with the ``timestamp`` as
    sent kept in ``metadata["timestamp"]`` (a string).

    Raises:
        InvalidRequest: naming the first bad field.
    """
    body = _require_object(body)
    model = _optional_model(body)
    if model is None:
        raise InvalidRequest("model is required (a non-empty string, e.g. \"llama2\")", "model")
    chat_id = body.get("chatId")
    if chat_id is not None:
        check_thread_id(chat_id, "chatId")
    system = _optional_string(body, "systemPrompt")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise InvalidRequest("messages must be a non-empty array of {id, role, content, timestamp}", "messages")
    messages = ([{"role": "system", "content": system}] if system else []) + body["messages"]
    request = parse_run_request({"messages": messages}, roles=ROLES)
    users = []
    for i, (sent, parsed) in enumerate(zip(body["messages"], parse_messages(body["messages"]))):
        where = "messages[%d]" % i
        parsed["id"] = None if sent.get("id") is None else check_client_id(sent["id"], where + ".id")
        parsed["created_at"] = None
        stamp = sent.get("timestamp")
        if stamp is not None:
            parsed["created_at"] = timestamp_seconds(stamp, where + ".timestamp")
            parsed["metadata"] = {"timestamp": stamp if isinstance(stamp, str) else json.dumps(stamp)}
        if parsed["role"] == "user":
            users.append(parsed)
    return request, chat_id, model, users


def parse_generate(body: Any) -> Tuple[RunRequest, Tuple[str, str]]:
    """Validate a token-stream ``POST /api/generate`` body ``{sessionId, chatMessageId,
    messages | prompt}`` (ids: ``check_client_id``). Returns ``(request, (session_id, chat_message_id))``. Raises
    ``InvalidRequest``."""
    body = _require_object(body)
    key = []
    for name in ("sessionId", "chatMessageId"):
        if body.get(name) is None:
            raise InvalidRequest("%s is required" % name, name)
        key.append(check_client_id(body[name], name))
    if "messages" in body:
        request = parse_run_request({"messages": body["messages"]}, roles=OPENAI_ROLES)
    else:
        prompt = _optional_string(body, "prompt")
        if prompt is None:
            raise InvalidRequest("send messages (an array) or prompt (a string)", "messages")
        request = parse_run_request({"messages": [{"role": "user", "content": prompt}]})
    return request, (key[0], key[1])


# --- the token buffer ------------------------------------------------------------------------


class Generation(NamedTuple):
    """One generation in the token buffer: ``tokens`` (the reply's pieces, in order),
    ``started`` (clock seconds), ``ttft`` and ``interval`` (seconds: token ``i`` is produced at
    ``started + ttft + i * interval``), ``run_id`` (its ground truth), ``scenario`` (the
    producer's ``scenario.Scenario``, which shapes every subscriber's stream) and ``fault``
    (whether its fault fires)."""

    tokens: Tuple[str, ...]
    started: float
    ttft: float
    interval: float
    run_id: str
    scenario: Any
    fault: bool

    def produced_at(self, index: int) -> float:
        """When token ``index`` exists, in clock seconds."""
        return self.started + self.ttft + index * self.interval

    def finished_at(self) -> float:
        """When the last token exists (clock seconds)."""
        return self.produced_at(max(len(self.tokens) - 1, 0))


class GenerationExists(ValueError):
    """A generation for that (sessionId, chatMessageId) is already in the buffer."""


class TokenBroker:
    """A bounded in-process buffer of generations, keyed by ``(session_id, message_id)``.

    A producer ``start``s a generation and returns at once; any number of subscribers read it
    with ``schedule``: a late subscriber gets what was already produced at once, then the rest
    as it is produced; one that resumes with a ``Last-Event-ID`` gets only what follows. A
    generation expires ``ttl`` seconds after its last token, read or not. At most ``limit``
    generations, of at most ``max_bytes`` (estimated: about 64 bytes per token plus its
    characters), are kept: a new one first pushes out expired ones, then finished ones, oldest
    first; only a buffer full of generations still producing refuses it. A finished generation
    is replaced by a new one under the same key.

    Thread-safe: each method takes one lock. ``clock`` is monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float], limit: int = 1000, ttl: float = 300.0,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self._clock = clock
        self.limit = limit
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.bytes = 0  # the estimated size of the generations kept
        self._lock = threading.Lock()
        self._items: "collections.OrderedDict[Tuple[str, str], Generation]" = collections.OrderedDict()

    @staticmethod
    def _size(generation: Generation) -> int:
        return 1024 + 64 * len(generation.tokens) + sum(map(len, generation.tokens))

    def _drop(self, key: Tuple[str, str]) -> None:
        self.bytes -= self._size(self._items.pop(key))

    def _expire(self, now: float) -> None:
        for key in [k for k, g in self._items.items() if g.finished_at() + self.ttl < now]:
            self._drop(key)

    def start(self, key: Tuple[str, str], tokens: Tuple[str, ...], ttft: float, interval: float,
              run_id: str, scenario: Any, fault: bool) -> Generation:
        """Put a new generation in the buffer, starting now (replacing a finished one under
        the same key).

        Raises:
            GenerationExists: a generation under that key is still producing.
            OverflowError: the buffer is full of generations still producing.
        """
        with self._lock:
            now = self._clock()
            self._expire(now)
            old = self._items.get(key)
            if old is not None:
                if old.finished_at() > now:
                    raise GenerationExists(key)
                self._drop(key)
            generation = Generation(tuple(tokens), now, ttft, interval, run_id, scenario, fault)
            size = self._size(generation)
            for other in [k for k, g in self._items.items() if g.finished_at() <= now]:
                if len(self._items) < self.limit and self.bytes + size <= self.max_bytes:
                    break
                self._drop(other)  # finished, oldest first: its subscribers hold their tokens
            if len(self._items) >= self.limit or (self._items and self.bytes + size > self.max_bytes):
                raise OverflowError("the token buffer is full of %d generations still producing"
                                    % len(self._items))
            self._items[key] = generation
            self.bytes += size
            return generation

    def now(self) -> float:
        """The broker's clock (monotonic seconds)."""
        return self._clock()

    def get(self, key: Tuple[str, str]) -> Optional[Generation]:
        """The live generation for ``key``, or None (unknown or expired). Looks at that one
        generation only (subscribers waiting for theirs ask often); ``start`` clears out
        every expired one."""
        with self._lock:
            generation = self._items.get(key)
            if generation is not None and generation.finished_at() + self.ttl < self._clock():
                self._drop(key)
                return None
            return generation

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._items)

    def clear(self) -> int:
        """Forget every generation (``POST /mock/reset``); subscribers already following one
        keep its tokens. Returns how many were dropped."""
        with self._lock:
            count = len(self._items)
            self._items.clear()
            self.bytes = 0
            return count

    def schedule(self, generation: Generation, after: int) -> List[float]:
        """Seconds to wait before each token from index ``after`` on, for a subscriber that
        starts now: 0 for tokens already produced, then the time until each is produced."""
        now = self._clock()
        waits = []
        cursor = now
        for index in range(after, len(generation.tokens)):
            due = generation.produced_at(index)
            waits.append(max(0.0, due - cursor))
            cursor = max(cursor, due)
        return waits

