"""Run orchestration: one chat run, in any wire format, from request to a response value.

Job: resolve a run's scenario (server flags < ``X-Mock-*`` headers < extra layers < the
matching fixture's ``mock`` < the body's ``mock`` object), choose the reply (a fixture's, the
upstream's, or a built-in one), draw the fault, and build the ground-truth record; then,
after the route has stored what it stores, publish that record under the run id and build the
stream's plan. Every route that answers with a model reply goes through here, so the order is
the same everywhere and a record is never changed after it is published: a run that fails
before its reply is sent (an unknown thread under ``--strict-threads``, a full store) leaves no
record; a ``fault=http_error`` run is published with nothing stored, since that error *is* its
reply. It has its own room because that order is a rule of its own, shared by every format.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import fixtures
import pipes
import scenario
import threads
import upstream
from api import App, BadRequest, MockFault, NotFound, Request, StreamResponse

__all__ = ["Run", "prepare", "publish", "stream", "store_run", "store_reply_when_complete", "final_reply"]

log = logging.getLogger(__name__)


class Run(NamedTuple):
    """A prepared run: ``request`` (``pipes.RunRequest``), resolved ``scenario``, its seeded
    ``rng``, the ``reply`` (``pipes.Reply``, or an ``upstream.LiveReply`` still arriving),
    whether the ``fault`` fires, ``run_id`` (str), the ground-truth ``record`` (dict, published by ``publish``), the ``headers`` every
    response of the run carries (``lb-mock-seed``, ``lb-mock-run-id``) and ``waits`` (seconds
    before each chat event, from a fixture's ``delays``, or None: the scenario paces it)."""

    request: Any
    scenario: scenario.Scenario
    rng: random.Random
    reply: Any
    fault: bool
    run_id: str
    record: dict
    headers: List[Tuple[str, str]]
    waits: Optional[Tuple[float, ...]] = None


def fault_headers(sc: scenario.Scenario) -> List[Tuple[str, str]]:
    """``Retry-After`` and rate-limit headers for a 429 or 503 fault."""
    if sc.fault_status not in (429, 503):
        return []
    out = [("Retry-After", str(sc.retry_after))]
    if sc.fault_status == 429:
        out += [("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", str(sc.retry_after))]
    return out


def prepare(app: App, http_request: Request, request: pipes.RunRequest, mock: Any,
            layers: Iterable[dict] = (), wire: str = "langbase", model: Optional[str] = None,
            pipe: Optional[str] = None, live: bool = False, text_only: bool = False) -> Run:
    """Resolve the scenario, choose the reply and draw the fault; nothing is stored yet.

    The reply is the first fixture's that matches (``app.fixtures``, see ``fixtures``; its
    ``mock`` settings are a scenario layer under the body's ``mock``), else the upstream's
    (``app.upstream``, ``--upstream``: the first call raises ``upstream.UpstreamPending`` and
    the route is run again with the fetched reply in ``app.upstream_results``), else a
    built-in one per ``reply_mode`` (sample texts, ``echo``, ``lorem``). ``pipe`` is the pipe name the run
    names, for the fixtures' ``pipe`` rule. ``text_only`` says the wire format carries text
    replies only (no tool calls): a reply of tool calls is then refused before anything is
    stored or published (a fixture's: 400; the upstream's: 502, in-band if already live).

    ``live`` says the route can serve a reply while it arrives: a streamed run then starts as
    soon as the upstream answers, its ``reply`` an ``upstream.LiveReply`` (``id`` and
    ``events()``). Such a run's record is published when the reply ends
    (``publish``), and its reply stored then (``store_run``, ``store_reply_when_complete``).

    Raises:
        BadRequest: a scenario setting is invalid, the stream would last too long, or
            ``text_only`` and the matching fixture answers with tool calls.
        NotFound: ``--strict`` and no fixture matched (naming the request).
        upstream.UpstreamPending: the reply must first come from the upstream.
        upstream.UpstreamError: it could not (refused, an HTTP error, cut short, too slow).
        MockFault: ``fault=http_error`` fired, or the fixture answers with an ``error``; that
            run's record is published first.
    """
    settings = app.settings
    book = app.fixtures
    fixture = job = None
    fetched = app.upstream_results.pop(http_request.request_id, None) if app.upstream else None
    if fetched is not None and not fetched.done.is_set():
        if not (live and request.stream and http_request.method != "HEAD"):
            raise upstream.UpstreamPending(fetched, whole=True)
        job = fetched  # the upstream has answered and is streaming: serve it as it comes
    elif fetched is not None and isinstance(fetched.result, upstream.UpstreamError):
        raise fetched.result
    elif fetched is not None:
        fixture = fetched.result  # the upstream's reply, fetched for this very request: no matching again
    elif book is not None:
        facts = fixtures.Facts(wire, http_request.path, model or settings.model, pipe,
                               lambda: _turn(app, request))
        fixture = book.match(request, facts)
        if fixture is None and app.upstream:
            raise upstream.UpstreamPending(app.upstream.start(request, model or settings.model))
        if fixture is None and settings.strict_fixtures:
            raise NotFound("No fixture matched %s %s (wire %s, model %r, last user message %r) and the "
                           "server runs with --strict; add a fixture for it (GET /mock/fixtures lists them)."
                           % (http_request.method, http_request.path, wire, facts.model,
                              fixtures.last_user_text(request)[:200]))
    sc = scenario.build(
        settings.seed, settings.delay, dict(settings.mock),
        scenario.header_layer(http_request.headers.raw_items()), *layers,
        fixture.layer if fixture is not None else {}, scenario.body_layer(mock),
    )
    digest = pipes.request_digest(request)
    rng = pipes.seeded_random(sc.seed, digest, "scenario", lazy=True)
    split = scenario.splitter(sc, rng)
    if job is not None and (sc.body == "buffered" or sc.framing == "coalesce"):
        raise upstream.UpstreamPending(job, whole=True)  # they hold writes back anyway: take it whole
    if job is not None:
        fault = scenario.fault_fires(sc, rng)  # drawn now: a live reply's pieces come later
        reply: Any = upstream.LiveReply(job, request, sc.seed, digest, split, settings.max_reply_chars,
                                        finish_on_close=fault and sc.fault in ("error_frame", "disconnect"),
                                        text_only=text_only)
    else:
        if fixture is not None and fixture.scripted:
            reply = pipes.scripted_reply(request, sc.seed, digest, split, fixture.text, fixture.chunks,
                                         fixture.calls, settings.max_reply_chars)
        else:
            chooser = request
            if sc.reply_mode == "sample":
                replies = scenario.replies_for(sc, settings.replies)
            else:  # echo and lorem replies are taken as they are: no {{name}} filling
                replies = (fixtures.last_user_text(request) if sc.reply_mode == "echo"
                           else fixtures.lorem(sc.lorem_words),)
                chooser = request._replace(variables={})
            reply = pipes.choose_reply(chooser, replies, sc.seed, split, digest, max_chars=settings.max_reply_chars)
        if text_only and reply.tool_calls:
            if fetched is not None:
                raise upstream.UpstreamError(502, "BAD_GATEWAY", upstream.TOOL_CALLS_IN_TEXT)
            raise BadRequest("The fixture %r answers with tool calls, which the %s format cannot carry "
                             "(it streams text only); give it a text or chunks response, or a wire rule."
                             % (fixture.name, wire))
        fault = scenario.fault_fires(sc, rng)
    seconds = 0.0 if job is not None else scenario.planned_seconds(sc, len(reply.pieces) + 2)
    if fixture is not None and fixture.delays is not None and sc.fixture_timing == "recorded":
        seconds = sum(fixture.delays)
    if request.stream and seconds > scenario.MAX_STREAM_SECONDS:
        raise BadRequest(
            "This stream would last up to %.0f s; the limit is %.0f s. Lower delay, ttft, "
            "jitter or stall, or use a larger chunk_size." % (seconds, scenario.MAX_STREAM_SECONDS)
        )
    run_id = app.new_id()
    headers = [("lb-mock-seed", str(sc.seed)), ("lb-mock-run-id", run_id)]
    record = {
        "run_id": run_id, "format": wire, "seed": sc.seed, "stream": request.stream,
        "thread_id": None, "id": reply.id, "created": app.created, "model": model or settings.model,
        "text": None, "deltas": (), "tool_calls": [], "usage": None, "finish_reason": None,  # the reply's, below
        "fault": sc.fault if fault else None, "scenario": sc,  # as_dict() when read
        "fixture": "upstream" if job is not None else fixture.name if fixture is not None else None,
    }
    http_request.fixture = record["fixture"]
    if job is None:
        _record_reply(record, reply)
    waits = fixture.waits() if fixture is not None and sc.fixture_timing == "recorded" else None
    run = Run(request, sc, rng, reply, fault, run_id, record, headers, waits)
    if fixture is not None and fixture.error is not None:
        status, code, message = fixture.error
        record["error"] = {"status": status, "code": code, "message": message}
        publish(app, run)
        raise MockFault(status, code, message, headers, explicit_code=True)
    if fault and sc.fault == "http_error":
        if job is not None:
            job.cancel()  # the fault is the reply: nothing of the upstream's goes out
            _record_partial(record, request, (), None)
            app.runs.add(run_id, record)
        else:
            publish(app, run)
        raise MockFault(sc.fault_status, sc.error_code,
                        "Mock fault: HTTP %d (fault=http_error)." % sc.fault_status,
                        headers + fault_headers(sc), explicit_code=sc.fault_code is not None)
    return run


def _record_reply(record: dict, reply: pipes.Reply) -> None:
    """Fill the reply's fields of a run record: ``text``, ``deltas`` (a tuple, shared with the
    reply), ``tool_calls``, ``usage``, ``finish_reason``."""
    record.update(text=reply.text, deltas=reply.pieces, tool_calls=pipes.reply_message(reply)["tool_calls"],
                  usage=reply.usage.as_dict(), finish_reason=reply.finish_reason)


def _record_partial(record: dict, request: pipes.RunRequest, pieces: Tuple[str, ...],
                    error: Optional[Tuple[int, str, str]]) -> None:
    """Fill a run record for a live reply that did not finish: the text ``pieces`` that arrived,
    ``finish_reason`` null, and ``error`` (``{"status", "code", "message"}``) when given."""
    usage = pipes.Usage(pipes.prompt_token_count(request), len(pieces))
    record.update(text="".join(pieces), deltas=pieces, tool_calls=[], usage=usage.as_dict(), finish_reason=None)
    if error is not None:
        record["error"] = dict(zip(("status", "code", "message"), error))


def final_reply(run: Run) -> Optional[pipes.Reply]:
    """The run's whole ``pipes.Reply``: ``run.reply``, or for a live reply the one it ended with
    (None while it streams, or when it did not finish)."""
    reply = run.reply
    return reply.reply if isinstance(reply, upstream.LiveReply) else reply


def _turn(app: App, request: pipes.RunRequest) -> int:
    """How many ``user`` messages the conversation holds: the run's, plus its stored thread's."""
    count = sum(1 for m in request.messages if m["role"] == "user")
    if request.thread_id is not None:
        try:
            count += sum(1 for m in app.store.list_messages(request.thread_id) if m["role"] == "user")
        except threads.ThreadNotFound:
            pass
    return count


def store_run(app: App, run: Run, thread_id: Optional[str], messages: List[dict],
              create_missing: bool) -> str:
    """Store ``messages`` (then the reply) in a thread in one atomic step and note the thread
    in the run's record. Returns the thread id. Raises ``threads.ThreadNotFound`` or
    ``threads.StoreFull`` with nothing stored (``ThreadStore.record_run``).

    A live reply (``upstream.LiveReply``) is not known yet: ``messages`` are stored now (with
    room kept for the reply), and the reply when it has arrived whole, as a chat backend saves
    the assistant message once the model has finished; one that does not finish is not
    stored."""
    reply = run.reply
    if not isinstance(reply, upstream.LiveReply):
        thread_id = app.store.record_run(thread_id, messages + [pipes.reply_message(reply)], create_missing)
        run.record["thread_id"] = thread_id
        return thread_id
    thread_id = app.store.record_run(thread_id, messages, create_missing, reserve=1)
    run.record["thread_id"] = thread_id
    run_id = run.run_id  # the callback must not hold the run, which holds the reply

    def store(live: upstream.LiveReply) -> None:
        if live.reply is not None:
            _store_later(app, run_id, thread_id, pipes.reply_message(live.reply))

    reply.on_end(store)
    return thread_id


def _store_later(app: App, run_id: str, thread_id: str, message: dict) -> None:
    """Append ``message`` to thread ``thread_id`` after a run's reply is known: on the store's
    worker thread with a file store (``--db``), so the loop that runs streams never waits on
    disk. A store error (the thread was deleted meanwhile, or filled up) is logged."""

    def store() -> None:
        try:
            app.store.append_new(thread_id, [message])
        except (threads.ThreadNotFound, threads.StoreFull, threads.StoreBusy) as exc:
            log.warning("the reply of run %s was not stored in thread %r: %s", run_id, thread_id, exc)

    if app.worker is not None:
        app.worker.submit(store)
    else:
        store()


def publish(app: App, run: Run) -> None:
    """Publish the run's ground truth under its run id (``GET /mock/runs/{runId}``); call it
    once, after everything that can fail, right before the response is returned. A live
    reply's record is published when the reply ends, with what arrived (and ``error``, and a
    null ``finish_reason``, if it did not finish)."""
    reply = run.reply
    if not isinstance(reply, upstream.LiveReply):
        app.runs.add(run.run_id, run.record)
        return
    record, request = run.record, run.request  # the callback must not hold the run, which holds the reply

    def end(live: upstream.LiveReply) -> None:
        if live.reply is not None:
            _record_reply(record, live.reply)
        else:
            _record_partial(record, request, tuple(live.pieces), live.error)
        app.runs.add(record["run_id"], record)

    reply.on_end(end)


def stream(run: Run, encoder: Any, events: Iterator[pipes.Event], waits: Optional[Iterator[float]] = None,
           headers: Iterable[Tuple[str, str]] = ()) -> StreamResponse:
    """The run's stream: ``events`` shaped by its scenario (``scenario.shape`` then
    ``scenario.reframe``), encoded by ``encoder``; ``waits`` replaces the scenario's pacing
    (seconds before each event) when given, else the run's own (a fixture's ``delays``). A
    live reply keeps the upstream's pace: each event goes out as it arrives."""
    sc = run.scenario
    live = isinstance(run.reply, upstream.LiveReply)
    if live:
        waits = itertools.repeat(0.0)  # the upstream paces a live reply
    elif waits is None and run.waits is not None:
        waits = iter(run.waits)
    shaped = scenario.shape(events, encoder, sc, run.rng, run.fault, waits, live)
    return StreamResponse(scenario.reframe(shaped, sc, run.rng), list(headers) + run.headers,
                          sc.body, sc.content_type)


def store_reply_when_complete(app: App, run: Run, response: StreamResponse, thread_id: str,
                              message: Callable[[pipes.Reply], dict]) -> StreamResponse:
    """``response`` with ``message(reply)`` (the run's whole reply, ``final_reply``, as a
    message in ``threads.parse_messages`` shape with its ``id``) stored in thread
    ``thread_id`` once the stream's last step is sent, as a chat backend saves the assistant
    message after streaming completes. A stream that does not complete stores nothing: one
    that ends in an in-band error (``fault=error_frame``, a live upstream that failed), a
    dropped connection (``fault=disconnect``) or a client that hangs up (the plan is dropped
    unfinished). A store error then (the thread was deleted meanwhile, or filled up) is logged
    and the stream is not disturbed. With a file store (``app.worker``, ``--db``) the write is
    handed to the store's worker thread, whose queue keeps it before any later request."""

    def plan() -> Iterator[Any]:
        yield from response.plan
        reply = final_reply(run)
        if reply is None or run.fault and run.scenario.fault in ("error_frame", "disconnect"):
            return
        _store_later(app, run.run_id, thread_id, message(reply))

    return response._replace(plan=plan())
