"""The mock's own routes: ``GET /`` and ``GET /health`` (status; ``/`` sends a browser to the
playground), ``GET /mock/settings`` (every scenario setting), ``GET /mock/runs`` (the ground
truth of recent runs), ``/mock/fixtures`` (fixtures pushed over HTTP), ``/mock/requests`` (the
request journal) and ``POST /mock/reset``. No auth; errors in Langbase's envelope."""

from __future__ import annotations

import datetime
import time
from typing import List

import fixtures
import journal
import routes
import scenario
from api import (
    SERVICE, VERSION, App, BadRequest, EmptyResponse, JsonResponse, NotFound, Request, Response, Route,
    UsageExceeded, route,
)

__all__ = ["ROUTES"]


def wants_html(request: Request) -> bool:
    """True if the ``Accept`` header ranks ``text/html`` above ``application/json`` (RFC 9110
    12.5.1 quality values; a browser navigating), false for programs (``*/*``, none, JSON)."""
    ranks = {}
    for item in (request.headers.get("Accept") or "").split(","):
        media, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks[media.strip().lower()] = quality
    return ranks.get("text/html", 0.0) > ranks.get("application/json", 0.0)


def status(request: Request, app: App) -> Response:
    """``GET /`` and ``GET /health``: ``{status, service, version, timestamp, uptime_seconds,
    threads, open_streams, connections, generations}`` (``timestamp``: the server's clock, ISO 8601 UTC with
    seconds); ``/`` adds ``scenario`` (the server-wide settings from ``--mock``, ``{name: value}``,
    empty when none are set) and ``endpoints`` (``"METHOD /path/{param}"``), or, for a browser
    (``wants_html``), is a 303 redirect to ``/playground``."""
    if request.path == "/" and wants_html(request):
        return EmptyResponse(303, [("Location", "/playground"), ("Vary", "Accept")])
    body = {
        "status": "healthy",
        "service": SERVICE,
        "version": VERSION,
        "timestamp": datetime.datetime.fromtimestamp(int(app.clock()), datetime.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uptime_seconds": round(time.monotonic() - app.started, 3),
        "threads": len(app.store),
        **app.load(),
        "generations": len(app.tokens),
    }
    if request.path == "/":
        body["scenario"] = dict(app.settings.mock)
        body["endpoints"] = ["%s %s" % (r.method, r.path) for r in routes.ROUTES]
        return JsonResponse(200, body, [("Vary", "Accept")])
    return JsonResponse(200, body)


def mock_settings(request: Request, app: App) -> Response:
    """``GET /mock/settings``: every scenario setting, by name: ``{type, default, allowed
    (text), help, nullable (bool), choices (list of strings for an enum, else null), min, max
    (numbers; for a string the most characters; null for bool and enum)}``."""
    return JsonResponse(200, {
        name: {"type": s.kind, "default": s.default, "allowed": s.allowed(), "help": s.help,
               "nullable": s.nullable, "choices": list(s.choices) if s.kind == "enum" else None,
               "min": s.low if s.kind in ("int", "float", "str") else None,
               "max": s.high if s.kind in ("int", "float", "str") else None}
        for name, s in scenario.SETTINGS.items()
    })


def mock_runs(request: Request, app: App) -> Response:
    """``GET /mock/runs``: ``{"runs": [run ids, newest first]}``."""
    return JsonResponse(200, {"runs": app.runs.recent()})


def mock_run(request: Request, app: App) -> Response:
    """``GET /mock/runs/{runId}``: what that run's stream encoded (ground truth)."""
    run_id = request.params["runId"]
    record = app.runs.get(run_id)
    if record is None:
        raise NotFound("No run %r; the server keeps the last %d runs." % (run_id, app.runs.limit))
    return JsonResponse(200, dict(record, scenario=record["scenario"].as_dict()))


def fixtures_list(request: Request, app: App) -> Response:
    """``GET /mock/fixtures``: ``{"path": str or null, "strict": bool, "fixtures": [{"name",
    "source", "matched", "match", "response"}]}`` in matching order (pushed first); ``matched``
    counts the runs each fixture's rules held for (what ``nth`` counts)."""
    return JsonResponse(200, {"path": app.settings.fixtures, "strict": app.settings.strict_fixtures,
                              "fixtures": app.fixtures.listing()})


def fixtures_push(request: Request, app: App) -> Response:
    """``POST /mock/fixtures``: add fixtures for this server's runs, before the file's. The body
    is one fixture object, an array of them or ``{"fixtures": [...]}`` (``fixtures`` module
    format). 201 ``{"added": int, "fixtures": [summaries of those added]}``; 400 naming the
    line, column and field of the first problem (or the first byte that is not UTF-8),
    nothing added; 403 past
    ``fixtures.MAX_PUSHED`` fixtures or ``fixtures.MAX_PUSHED_BYTES``."""
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("Invalid fixture: request body is not UTF-8 (byte %d)." % exc.start) from None
    try:
        added = fixtures.parse_text(text, "request body")
        app.fixtures.push(added, len(request.body))
    except fixtures.FixtureError as exc:
        raise BadRequest("Invalid fixture: %s" % exc) from None
    except OverflowError as exc:
        raise UsageExceeded("Too many pushed fixtures: %s; DELETE /mock/fixtures first." % exc) from None
    return JsonResponse(201, {"added": len(added), "fixtures": [f.summary(0) for f in added]})


def fixtures_clear(request: Request, app: App) -> Response:
    """``DELETE /mock/fixtures``: drop the pushed fixtures (the file's stay) and restart every
    ``nth`` count: ``{"deleted": int}``."""
    return JsonResponse(200, {"deleted": app.fixtures.clear_pushed()})


def requests_list(request: Request, app: App) -> Response:
    """``GET /mock/requests``: ``{"requests": [entries, newest first]}`` (``journal.Journal``
    entry shape), filtered by the query parameters ``journal.FILTERS``; 400 for an unknown
    filter or a ``status``/``limit`` that is not a whole number."""
    query = request.query_params()
    unknown = [name for name in query if name not in journal.FILTERS]
    if unknown:
        raise BadRequest("Unknown filter %r; filters: %s." % (unknown[0][:40], ", ".join(journal.FILTERS)),
                         param=unknown[0][:40])
    try:
        entries = app.journal.select({name: values[-1] for name, values in query.items()})
    except ValueError:
        raise BadRequest("status and limit must be whole numbers (limit from 0).") from None
    return JsonResponse(200, {"requests": entries})


def requests_clear(request: Request, app: App) -> Response:
    """``DELETE /mock/requests``: empty the journal: ``{"deleted": int}``."""
    return JsonResponse(200, {"deleted": app.journal.clear()})


def reset(request: Request, app: App) -> Response:
    """``POST /mock/reset``: forget everything tests create, in one call: threads, run records,
    the journal, pushed fixtures (and every ``nth`` count), pipes, memories, traces and token
    generations. Settings and fixture files stay. ``{"reset": {store: items dropped}}``."""
    return JsonResponse(200, {"reset": {
        "threads": app.store.clear(), "runs": app.runs.clear(), "requests": app.journal.clear(),
        "fixtures": app.fixtures.clear_pushed(), "pipes": app.pipes.clear(), "memories": app.memory.clear(),
        "traces": app.traces.clear(), "generations": app.tokens.clear(),
    }})


ROUTES: List[Route] = [
    route("GET", "/", status),
    route("GET", "/health", status),
    route("GET", "/mock/settings", mock_settings),
    route("GET", "/mock/runs", mock_runs),
    route("GET", "/mock/runs/{runId}", mock_run),
    route("GET", "/mock/fixtures", fixtures_list),
    route("POST", "/mock/fixtures", fixtures_push),
    route("DELETE", "/mock/fixtures", fixtures_clear),
    route("GET", "/mock/requests", requests_list),
    route("DELETE", "/mock/requests", requests_clear),
    route("POST", "/mock/reset", reset),
]
"""The mock's own endpoints: no auth, Langbase's error envelope."""
