"""Routes of the other chat backends the mock stands in for, each in its own wire format:
Lobe Chat (``POST /api/chat``, named events), the message lifecycle (``POST /api/stream``),
``EventSource`` streams (``GET /events``, ``GET /hello``, ``GET /api/events``) and resumable
token streams (``POST /api/generate``, ``GET /api/stream/{sessionId}/{chatMessageId}``). No
auth; Lobe Chat's error body on its route, ``{"error": message}`` on the others (the encoders
and parsers are in ``formats``)."""

from __future__ import annotations

import dataclasses
import random
import urllib.parse
from typing import Any, Iterator, List, Optional, Tuple

import formats
import pipes
import runs
import scenario
from api import (
    App, BadRequest, Conflict, EmptyResponse, JsonResponse, Request, Response, Route, StreamResponse,
    UsageExceeded, object_body, route,
)
from steps import Wait, Write

__all__ = ["ROUTES", "EVENTSOURCE_RETRY_MS"]

EVENTSOURCE_RETRY_MS = 1000
"""The ``retry:`` hint (milliseconds) on ``GET /api/events`` streams."""


def lobe_chat(request: Request, app: App) -> Response:
    """``POST /api/chat``: Lobe Chat's named-event stream."""
    data = object_body(request)
    run_request, model = formats.parse_lobe_chat(data)
    run = runs.prepare(app, request, run_request._replace(stream=True), data.get("mock"), wire="lobe", model=model,
                       live=True)
    runs.publish(app, run)
    encoder = formats.LobeEncoder(run.reply.id)
    return runs.stream(run, encoder, encoder.events(run.reply))


def lifecycle(request: Request, app: App) -> Response:
    """``POST /api/stream``: message-lifecycle events under a fresh UUIDv4 ``messageId``.
    With ``chatId``, the request's user messages are stored in that thread at once (keeping
    their ``id`` and ``timestamp``; one whose id the thread has is not stored again), and the
    reply under ``messageId`` once the stream has sent ``message-complete``
    (``runs.store_reply_when_complete``)."""
    data = object_body(request)
    run_request, chat_id, model, users = formats.parse_lifecycle(data)
    run_request = run_request._replace(stream=True, tools=[], tool_choice=None)
    run = runs.prepare(app, request, run_request, data.get("mock"), wire="lifecycle", model=model,
                       live=True, text_only=True)
    message_id = app.new_id()
    run.record["message_id"] = message_id
    if chat_id is not None:
        run.record["thread_id"] = app.store.record_run(chat_id, users, create_missing=True, reserve=1,
                                                       skip_known_ids=True)
    runs.publish(app, run)
    encoder = formats.LifecycleEncoder(message_id)
    response = runs.stream(run, encoder, encoder.events(run.reply))
    if chat_id is None:
        return response
    return runs.store_reply_when_complete(app, run, response, chat_id,
                                          lambda reply: dict(pipes.reply_message(reply), id=message_id))


DEFAULT_PROMPT = "Hello!"
"""The user message of an ``EventSource`` stream whose URL has no ``?prompt=``."""

EVENTSOURCE_PAYLOADS = ("json", "openai")
"""Values of the ``payload`` query parameter of the ``EventSource`` routes: ``json`` (one
JSON object per data message, then the server closes) or ``openai`` (``chat.completion.chunk``
objects, then ``data: [DONE]``)."""


def events(request: Request, app: App, payload: str = "openai") -> Response:
    """``GET /api/events``, ``GET /events``, ``GET /hello``: a reply for ``EventSource``,
    with ``id:`` on every event and ``retry:`` on the first; ``Last-Event-ID`` resumes after
    that event, and a stream already delivered in full answers 204 so the browser stops
    reconnecting. Query parameters: ``prompt`` (the user message, default ``DEFAULT_PROMPT``),
    ``payload`` (``EVENTSOURCE_PAYLOADS``; the route's own default otherwise), and scenario
    settings."""
    query = request.query_params()
    prompt = query.pop("prompt", [None])[-1] or DEFAULT_PROMPT
    payload = query.pop("payload", [payload])[-1]
    if payload not in EVENTSOURCE_PAYLOADS:
        raise BadRequest("payload must be one of %s." % ", ".join(EVENTSOURCE_PAYLOADS), param="payload")
    after = last_event_id(request.headers.get("Last-Event-ID") or query.pop("lastEventId", [None])[-1])
    query.pop("lastEventId", None)
    layer = scenario.parse_layer({k: v[-1] for k, v in query.items()}, "query string", from_text=True)
    run_request = pipes.parse_run_request({"messages": [{"role": "user", "content": prompt}], "stream": True})
    # A first connection can stream an upstream's reply live; a resuming one needs it whole.
    run = runs.prepare(app, request, run_request, None, layers=[layer], wire="eventsource", live=after == 0,
                       text_only=payload == "json")
    runs.publish(app, run)
    inner = (formats.EventMessageEncoder() if payload == "json"
             else pipes.ChunkEncoder(run.reply.id, app.created, app.settings.model))
    encoder = formats.EventSourceEncoder(inner, EVENTSOURCE_RETRY_MS, after)
    if after and after >= encoder.total(run.reply):
        return EmptyResponse(204)
    run = run._replace(scenario=resumed(run.scenario, after))
    return runs.stream(run, encoder, encoder.events(run.reply))


def event_messages(request: Request, app: App) -> Response:
    """``GET /events``, ``GET /hello``: ``events`` with JSON object data messages by default."""
    return events(request, app, payload="json")


def generate(request: Request, app: App) -> Response:
    """``POST /api/generate``: start a generation for ``(sessionId, chatMessageId)`` in the
    token buffer and return at once (202); subscribers already waiting for that key follow it."""
    data = object_body(request)
    run_request, key = formats.parse_generate(data)
    run_request = run_request._replace(stream=True, tools=[], tool_choice=None)
    run = runs.prepare(app, request, run_request, data.get("mock"), wire="tokens", text_only=True)
    try:
        start_generation(app, key, run)
    except formats.GenerationExists:
        raise Conflict("A generation for session %r, message %r is already running." % key) from None
    except OverflowError:
        raise UsageExceeded(BUFFER_FULL) from None
    return JsonResponse(202, {"sessionId": key[0], "chatMessageId": key[1], "status": "started",
                              "stream": stream_path(key), "runId": run.run_id}, run.headers)


BUFFER_FULL = "The token buffer is full of generations still producing; wait for one to finish."

POLL_SECONDS = 0.025
"""How often a subscriber waiting for a generation looks for it (a timer on the event loop)."""


def start_generation(app: App, key: Tuple[str, str], run: runs.Run) -> formats.Generation:
    """Put ``run``'s reply in the token buffer under ``key``, starting now, and publish its
    ground truth. Raises ``formats.GenerationExists`` or ``OverflowError`` (``TokenBroker.start``)."""
    sc = run.scenario
    generation = app.tokens.start(key, run.reply.pieces, sc.ttft, sc.interval, run.run_id, sc, run.fault)
    runs.publish(app, run)
    return generation


def stream_path(key: Tuple[str, str]) -> str:
    """The ``GET`` path of ``key``'s token stream, each id percent-encoded as one path segment."""
    return "/api/stream/%s/%s" % tuple(urllib.parse.quote(k, safe="!$&'()*+,;=:@") for k in key)


def path_id(request: Request, name: str) -> str:
    """The percent-decoded path parameter ``name``, checked by ``formats.check_client_id``.
    Raises ``BadRequest``."""
    try:
        value = urllib.parse.unquote(request.params[name], errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("%s must be percent-encoded UTF-8." % name, param=name) from None
    return formats.check_client_id(value, name)


def token_stream(request: Request, app: App) -> Response:
    """``GET /api/stream/{sessionId}/{chatMessageId}``: the generation's tokens, from the
    start (or after ``Last-Event-ID``), paced by when each token is produced.

    A subscriber may come first: the stream then waits (``--token-wait`` seconds, polling the
    buffer on the event loop) for a ``POST /api/generate`` of that key; if none comes, the mock
    generates the reply itself, as if a producer had been asked with the user message
    ``"<sessionId>/<chatMessageId>"`` (so it follows from the seed and the ids; ``X-Mock-*``
    headers shape it). Such a response has ``lb-mock-seed`` but no ``lb-mock-run-id``: the run
    is not known before it starts (``GET /mock/runs`` lists it)."""
    key = (path_id(request, "sessionId"), path_id(request, "chatMessageId"))
    after = last_event_id(request.headers.get("Last-Event-ID"))
    generation = app.tokens.get(key)
    if generation is not None:
        return follow(app, generation, after)
    prompt = {"role": "user", "content": "%s/%s" % key}
    run_request = pipes.parse_run_request({"messages": [prompt], "stream": True})
    run = runs.prepare(app, request, run_request, None, wire="tokens", text_only=True)
    sc = run.scenario
    return StreamResponse(wait_then_follow(app, key, run, after), [("lb-mock-seed", str(sc.seed))],
                          sc.body, sc.content_type)


def wait_then_follow(app: App, key: Tuple[str, str], run: runs.Run, after: int) -> Iterator[Any]:
    """The plan of a subscriber that came before its generation: ``Wait`` steps until the
    generation is in the buffer or ``token_wait`` has passed (then ``run`` is started as
    that generation), then the generation's stream. A buffer full of generations still
    producing ends the stream with the in-band error. When the loop skips a wait (the server
    is stopping), the waiting ends at once, so the stream is sent at full speed."""
    tokens = app.tokens
    deadline = tokens.now() + app.settings.token_wait
    generation = tokens.get(key)
    while generation is None:
        left = deadline - tokens.now()
        if left <= 0:
            try:
                generation = start_generation(app, key, run)
            except OverflowError:
                yield Write(formats.TokenEncoder().error(403, "USAGE_EXCEEDED", BUFFER_FULL))
                return
            break
        pause = min(left, POLL_SECONDS)
        before = tokens.now()
        yield Wait(pause)
        generation = tokens.get(key)
        if generation is None and tokens.now() - before < pause / 2:
            deadline = before  # the wait was skipped: the server is stopping, so stop waiting
    yield from follow(app, generation, after).plan


def follow(app: App, generation: formats.Generation, after: int) -> StreamResponse:
    """A subscriber's stream of ``generation``, after ``after`` tokens, shaped by the
    producer's scenario and paced by when each token is produced."""
    after = min(after, len(generation.tokens))
    sc = resumed(generation.scenario, after)
    run = runs.Run(None, sc, random.Random("%s:%d" % (generation.run_id, after)), None,
                   generation.fault, generation.run_id, {},
                   [("lb-mock-seed", str(sc.seed)), ("lb-mock-run-id", generation.run_id)])
    deltas = (pipes.TextDelta(t) for t in generation.tokens[after:])
    waits = iter(app.tokens.schedule(generation, after))
    return runs.stream(run, formats.TokenEncoder(after), deltas, waits=waits)


def resumed(sc: scenario.Scenario, after: int) -> scenario.Scenario:
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


def last_event_id(value: Optional[str]) -> int:
    """The event id a reconnecting client sent (``Last-Event-ID``), or 0 for none.

    Raises ``BadRequest`` for anything but an id these streams send (1 to 9 digits)."""
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise BadRequest("Last-Event-ID must be an event id this stream sent (1, 2, ...).")
    return int(value)


ROUTES: List[Route] = [
    route("POST", "/api/chat", lobe_chat, "lobe"),
    route("POST", "/api/stream", lifecycle, "plain"),
    route("GET", "/api/events", events, "plain"),
    route("GET", "/events", event_messages, "plain"),
    route("GET", "/hello", event_messages, "plain"),
    route("POST", "/api/generate", generate, "plain"),
    route("GET", "/api/stream/{sessionId}/{chatMessageId}", token_stream, "plain"),
]
"""The other backends' endpoints: no auth; Lobe Chat's error body or ``{"error": message}``."""
